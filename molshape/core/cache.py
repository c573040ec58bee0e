"""Cache entries (parsed data sets, ex-post GMMs, FCD statistics): rebuilt, never fatal.

A cache entry is a :func:`~molshape.core.checkpoint.save_checkpoint` dict under
:func:`~molshape.core.runtime.cache_dir`. One that cannot be read (truncated by a full disk,
overwritten, from another version) is removed with one warning naming it, and the caller
rebuilds it; one that cannot be written is skipped with a warning, and the command goes on.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from molshape.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)


def load_entry(path: str | os.PathLike, keys: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The cached dict at ``path``, or None when there is none or it is corrupt (then it is removed).

    Args:
        keys: keys the entry must hold; one without them counts as corrupt.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        entry = load_checkpoint(path)
        missing = [k for k in keys if k not in entry]
        if missing:
            raise CheckpointError(path, f"it lacks {', '.join(missing)}")
        return entry
    except (CheckpointError, OSError) as e:
        reason = e.reason if isinstance(e, CheckpointError) else (e.strerror or str(e))
        log.warning("cache file %s is corrupt (%s); removed it, it is rebuilt", path, reason)
        try:
            path.unlink()
        except OSError as gone:
            log.warning("could not remove cache file %s (%s); remove it by hand", path, gone.strerror or gone)
        return None


def save_entry(obj: dict[str, Any], path: str | os.PathLike) -> bool:
    """Write a cache entry atomically; False (with a warning) when the cache cannot be written."""
    try:
        save_checkpoint(obj, path)
        return True
    except OSError as e:
        log.warning("could not write cache file %s (%s); going on without it", path, e.strerror or e)
        return False
