"""Run folders (``molshape train``, ``molshape optimize``): one writer at a time, never overwritten.

* :class:`RunLock` holds an exclusive ``flock`` on ``<folder>/.lock`` for the whole run, so a
  second run into the same folder refuses at once. A run that ends removes the file; the kernel
  drops the lock of a killed process, so even after ``kill -9`` a stale file locks nothing.
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


def runs_dir() -> Path:
    """Where commands put their run folders when no output is named: ``./runs``, or
    ``$MOLSHAPE_RUNS_DIR``. Not created here: only a command that writes creates it."""
    return Path(os.environ.get("MOLSHAPE_RUNS_DIR") or "runs").expanduser()


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
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise RunLocked(f"another run is writing to {self.folder} ({self._holder()}); wait for it to "
                                    "finish or choose another --out") from None
                raise
            if self._still_linked(fd):
                break
            os.close(fd)  # a finishing holder removed this file after we opened it: lock the new one
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

    def _still_linked(self, fd: int) -> bool:
        """Whether ``fd`` is still the file at :attr:`path` (a holder removes it when it finishes)."""
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            return False

    def release(self) -> None:
        """Remove the lock file, then drop the lock. Removing it while still locked is safe: a
        process that opened the old file sees it unlinked after locking it and retries."""
        if self._fd is not None:
            try:
                self.path.unlink(missing_ok=True)
            except OSError:  # a read-only folder keeps its lock file; the lock itself still drops
                pass
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
