"""Checkpoints: one plain dict per file, written atomically, read with ``weights_only=True``.

A checkpoint holds only tensors and plain Python values (dicts, lists, str, int, float,
bool, None) so that :func:`load_checkpoint` never unpickles arbitrary objects. Files that
are not such a dict (empty, truncated, random bytes, text, a pickled list, a pickle that
would run code) raise :class:`CheckpointError` with a short reason; torch's own message is
never passed on, as it may advise ``weights_only=False``, which molshape never uses.

Checkpoints may carry :data:`FORMAT_KEY` (absent in files from before it existed, which
count as format 1); :func:`load_checkpoint` refuses a format newer than this molshape reads.
This module knows files only: what a checkpoint holds is the business of the package that
wrote it (a grammar model's is :class:`molshape.gvae.checkpoint.ModelCheckpoint`).
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from molshape.core.atomic import atomic_write
from molshape.core.errors import MolshapeError

#: key and current value of the checkpoint format version
FORMAT_KEY = "format_version"
FORMAT_VERSION = 1


class CheckpointError(MolshapeError):
    """A file is not a (usable) molshape checkpoint.

    Attributes:
        path: the file.
        reason: a short reason, one sentence without the path.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"checkpoint {self.path}: {reason}")


def save_checkpoint(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``obj`` to ``path`` atomically (temp file in the same folder, fsync, rename).

    A run killed mid-write leaves the previous checkpoint intact.
    """
    with atomic_write(path, "wb") as f:
        try:
            torch.save(obj, f)
        except RuntimeError as e:
            # torch's zip writer turns a failed write (a full disk) into "unexpected pos ..."; the
            # OSError it swallowed says what happened, and atomic_write then names the file
            cause = _os_error_in(e)
            if cause is None:
                raise
            raise cause from None
    return Path(path)


def _os_error_in(e: BaseException) -> OSError | None:
    """The first ``OSError`` in ``e``'s chain of causes and contexts."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is not a checkpoint dict, or has a format this molshape
            cannot read (with the reason).
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(path, "is a directory, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(path, "the file is empty")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise for a file we refuse
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(path, _unpickling_reason(e)) from None
    except OSError:
        raise
    except Exception as e:  # torch's legacy reader fails on garbage with many types (KeyError, IndexError, ...)
        raise CheckpointError(path, f"not a torch checkpoint, or truncated ({type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(path, f"holds a {type(obj).__name__}, not a molshape checkpoint (a dict)")
    _check_format(obj.get(FORMAT_KEY, 1), path)  # files from before the key existed are format 1
    return obj


def _check_format(version: Any, path: Path) -> None:
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(path, f"has an invalid {FORMAT_KEY} {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(path, f"has format {version}, newer than this molshape reads ({FORMAT_VERSION}); "
                                    "upgrade molshape")


def _unpickling_reason(e: pickle.UnpicklingError) -> str:
    # torch's message advises weights_only=False; say what happened without that advice
    if "unsupported global" in str(e).lower():
        return "holds objects other than tensors and plain values, which molshape never loads"
    return "not a torch checkpoint (not a pickle molshape can read safely), or truncated"
