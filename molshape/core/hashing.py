"""The one file-hash helper: hex digests of files (data sets, checkpoints, image folders)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

_BLOCK = 1 << 20
_memo: dict[tuple, str] = {}


def file_hash(path: str | os.PathLike | Sequence[str | os.PathLike], algorithm: str = "sha256") -> str:
    """Hex digest of a file, or of several files read one after the other.

    Memoised per (paths, sizes, mtimes) within the process, so checking a data set twice reads it once.
    """
    paths = [Path(path)] if isinstance(path, (str, os.PathLike)) else [Path(p) for p in path]
    key = (algorithm, *((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths))
    if key not in _memo:
        h = hashlib.new(algorithm)
        for p in paths:
            with open(p, "rb") as f:
                while block := f.read(_BLOCK):
                    h.update(block)
        _memo[key] = h.hexdigest()
    return _memo[key]
