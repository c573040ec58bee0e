"""A streamed output file that a killed run continues: ``<path>.partial`` and its progress file.

Chunks are appended in chunk order to ``<path>.partial`` (fsynced per chunk, see
:class:`~molshape.core.atomic.PartialFile`). After each one, ``<path>.partial.json`` is replaced
atomically with the run's settings, the number of chunks written, the partial file's size
after them and the caller's running totals. A run with ``resume`` and the same settings
continues after the last recorded chunk (a chunk cut short by a kill is cut off); one with
other settings is refused. The complete file is renamed to ``path`` and the progress file
removed.

Example:
    >>> start = check_resume(path, {"n": 10}, resume=True)  # doctest: +SKIP
    >>> out = ChunkedOutput(path, {"n": 10}, start)          # doctest: +SKIP
    >>> out.append("CCO\\n", {"valid": 1}); out.close(ok=True)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from molshape.core.atomic import PartialFile, write_json

#: the progress file beside ``<path>.partial``
SUFFIX = ".partial.json"
#: the progress file's format
FORMAT = 1


class ResumeError(ValueError):
    """A partial output that cannot be continued (another run's, or damaged): a usage error.

    Attributes:
        option: the option at fault (``--resume``).
    """

    def __init__(self, message: str, option: str = "--resume") -> None:
        super().__init__(message)
        self.option = option


@dataclass
class Progress:
    """Where a run starts: chunks already written, the partial file's size after them, the
    running totals then; ``dropped``: finished chunks of an earlier run that this one starts over."""

    chunks: int = 0
    size: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    dropped: int = 0


def progress_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + SUFFIX)


def partial_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".partial")


def check_resume(path: str | Path, run: dict[str, Any], resume: bool) -> Progress:
    """Where a run writing ``path`` with settings ``run`` starts (nothing is written).

    Raises:
        ResumeError: with ``resume``, the partial file holds a run with other settings, or is
            shorter than its progress file says.
    """
    partial, saved_at = partial_path(path), progress_path(path)
    if not (partial.is_file() and saved_at.is_file()):
        return Progress()
    try:
        saved = json.loads(saved_at.read_text())
        chunks, size = int(saved["chunks"]), int(saved["size"])
    except (ValueError, KeyError, TypeError):
        if resume:
            raise ResumeError(f"{saved_at} is not a progress file molshape can read; run without --resume "
                              "to start over") from None
        return Progress()
    if not resume:
        return Progress(dropped=chunks)
    old = saved.get("run", {})
    differ = [k for k in run if old.get(k) != run[k]]
    if differ:
        k = differ[0]
        raise ResumeError(f"{partial} holds another run ({k} {old.get(k)!r} there, {run[k]!r} here); "
                          "run without --resume to start over, or write to another file")
    if partial.stat().st_size < size:
        raise ResumeError(f"{partial} is shorter than its progress file says ({partial.stat().st_size:,} bytes, "
                          f"{size:,} expected); run without --resume to start over")
    return Progress(chunks, size, dict(saved.get("state", {})))


class ChunkedOutput:
    """``<path>.partial`` written chunk by chunk, with the progress file that ``resume`` reads."""

    def __init__(self, path: str | Path, run: dict[str, Any], start: Progress | None = None) -> None:
        start = start or Progress()
        self.file = PartialFile(path, keep=start.size)
        self.run = run
        self.chunks = start.chunks
        self.partial = self.file.partial
        self.progress = progress_path(path)
        self._save(start.state)

    def append(self, text: str, state: dict[str, Any]) -> None:
        """Append one chunk's ``text`` (durable), then record it with the totals ``state``."""
        self.file.write_text(text)
        self.chunks += 1
        self._save(state)

    def _save(self, state: dict[str, Any]) -> None:
        write_json(self.progress, {"format": FORMAT, "run": self.run, "chunks": self.chunks,
                                   "size": self.file.size, "state": state})

    def close(self, ok: bool, keep: bool = False) -> None:
        """``ok``: rename the complete file into place. Else ``keep`` (an interrupted run) leaves
        both files for ``resume``; otherwise (an error) both are removed."""
        if ok:
            self.file.commit()
        elif not keep:
            self.file.discard()
        else:
            self.file.close()
            return
        with contextlib.suppress(FileNotFoundError):
            self.progress.unlink()
