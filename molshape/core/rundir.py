"""Run folders (``molshape train``, ``molshape optimize``): one writer at a time, never overwritten.

* :class:`RunLock` holds an exclusive ``flock`` on ``<folder>/.lock`` for the whole run, so a
  second run into the same folder refuses at once. The kernel drops the lock when the process
  ends, however it ends, so a ``kill -9`` leaves no stale lock behind.
* :func:`leftovers` lists what a previous run left in a folder; a fresh run refuses a folder
  that has any (``--resume`` continues it, ``--force`` starts over).
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from molshape.core.atomic import TEMP_SUFFIX, check_regular
from molshape.core.errors import OutputRefused

LOCK_NAME = ".lock"


class RunLocked(RuntimeError):
    """Another process holds the folder's lock."""


class RunLock:
    """Exclusive, non-blocking lock on a run folder (created when missing).

    Example:
        >>> with RunLock(out):          # doctest: +SKIP
        ...     train(...)
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunLocked` naming the holder's pid."""
        self._check_ours()
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RunLocked(f"another run is writing to {self.folder} ({self._holder()}); wait for it to "
                                "finish or choose another --out") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def _check_ours(self) -> None:
        """Refuse a ``.lock`` that molshape did not write (a device, or a file holding other
        text): taking the lock rewrites it with our pid."""
        if check_regular(self.path) is None:
            return
        try:
            text = self.path.read_bytes()[:64].strip()
        except OSError:
            return  # unreadable: opening it below says why
        if text and not text.isdigit():
            raise OutputRefused(f"{self.path} is not a molshape lock file (it holds other text); move it away "
                                "or choose another --out")

    def _holder(self) -> str:
        try:
            pid = self.path.read_text().strip()
        except OSError:
            pid = ""
        return f"pid {pid}" if pid else "its lock is held"

    def release(self) -> None:
        """Drop the lock (the lock file stays: removing it would race with a new holder)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def leftovers(folder: str | os.PathLike) -> list[str]:
    """Names in ``folder`` other than its lock and temp files of killed writes (sorted)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.name != LOCK_NAME and not (p.name.startswith(".") and TEMP_SUFFIX in p.name))
