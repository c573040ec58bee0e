"""Atomic file output: the one way molshape writes a file.

Every output goes to a temp file in the destination folder (``.<name>.<random>.tmp``), is
flushed and fsynced, and then renamed over the destination. A reader, a crash or a full
disk therefore sees either the old file or the complete new one, never a half-written
file, and a failed write removes its temp file. Temp files left by a ``kill -9`` are
removed by :func:`remove_stale_temps` (training does so under its run lock).

Only regular files are written: a destination that is a device, FIFO, socket or folder is
refused (:class:`~molshape.core.errors.OutputRefused`), so ``-o /dev/null`` never replaces the
device node. A replaced file keeps its permission bits (and, for root, its owner).

Example:
    >>> with atomic_write(path) as f:          # doctest: +SKIP
    ...     f.write("all or nothing\\n")
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import json
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from molshape.core.errors import OutputRefused

#: temp files are named ``.<target name>.<random>.tmp`` (or ``...tmp.<suffix>``, see :func:`atomic_path`)
TEMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


def check_regular(path: str | os.PathLike) -> os.stat_result | None:
    """The status of an existing destination, ``None`` when there is none yet.

    Raises:
        OutputRefused: ``path`` (or what its symbolic link points to) exists and is not a
            regular file: writing there would replace a device node, a pipe or a folder.
    """
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return None  # no permission to look: the write itself will say why
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise OutputRefused(f"{path} is {kind}; molshape writes only regular files, so name a file path instead")
    return st


def _named(e: OSError, path: Path) -> OSError:
    """``e`` with ``path`` as its file name (the user named the destination, not the temp file)."""
    if e.errno is None:
        return e
    return e.__class__(e.errno, e.strerror or os.strerror(e.errno), str(path))


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", *, encoding: str = "utf-8",
                 newline: str | None = None) -> Iterator[IO[Any]]:
    """Open a temp file beside ``path``; on success fsync it and rename it to ``path``.

    Args:
        path: the destination; its folder is created when missing.
        mode: ``"w"`` (text) or ``"wb"`` (binary).
        encoding: text encoding (text mode only).
        newline: as for :func:`open` (``""`` for the csv module).

    Raises:
        OSError: naming ``path`` (full disk, read-only folder, ...); the temp file is removed
            and an existing ``path`` is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    check_regular(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as e:
        raise _named(e, path) from e
    with _replacing(Path(tmp), path):
        text = "b" not in mode
        with os.fdopen(fd, mode, **({"encoding": encoding, "newline": newline} if text else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temp path beside ``path`` (same suffix) for writers that take a file name (matplotlib,
    RDKit images); on success it is fsynced and renamed to ``path``, on failure removed."""
    path = Path(path)
    check_regular(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # the real suffix last: writers such as matplotlib and PIL infer the format from it
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"{TEMP_SUFFIX}{path.suffix}", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise _named(e, path) from e
    tmp_path = Path(tmp)
    with _replacing(tmp_path, path):
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())


@contextlib.contextmanager
def _replacing(tmp: Path, path: Path) -> Iterator[None]:
    """Around the writes to ``tmp``: then make it an ordinary file and rename it to ``path``
    (and fsync the folder); on any failure remove ``tmp`` (an ``OSError`` then names ``path``)."""
    try:
        yield
        _take_mode(tmp, check_regular(path))
        os.replace(tmp, path)
    except OSError as e:
        _unlink_quietly(tmp)
        raise _named(e, path) from e
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(path.parent)


def _take_mode(tmp: Path, old: os.stat_result | None) -> None:
    """Give ``tmp`` the permissions of the file it replaces (a 0600 file stays 0600), or an
    ordinary file's for a new one (mkstemp makes 0600)."""
    os.chmod(tmp, stat.S_IMODE(old.st_mode) if old is not None else 0o666 & ~_umask())
    if old is not None and os.geteuid() == 0 and (old.st_uid, old.st_gid) != (0, 0):
        with contextlib.suppress(OSError):  # root writing a user's file: it stays theirs
            os.chown(tmp, old.st_uid, old.st_gid)


def _unlink_quietly(path: str | os.PathLike) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: some file systems refuse a directory fsync)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically replace ``path`` with ``text`` (UTF-8)."""
    with atomic_write(path) as f:
        f.write(text)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically replace ``path`` with ``data``."""
    with atomic_write(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any, **dump_kwargs: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (``dump_kwargs`` go to :func:`json.dumps`)."""
    return write_text(path, json.dumps(obj, indent=2, **dump_kwargs) + "\n")


def write_csv(path: str | os.PathLike, rows: list[dict[str, Any]], fields: list[str] | None = None) -> Path:
    """Atomically write ``rows`` as CSV; the columns are ``fields`` or the union of the keys."""
    if fields is None:
        fields = []
        for row in rows:
            fields += [k for k in row if k not in fields]
    with atomic_write(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def save_figure(fig: Any, path: str | os.PathLike, close: bool = False, **savefig_kwargs: Any) -> Path:
    """Atomically save a matplotlib figure (the format comes from ``path``'s suffix); with
    ``close``, the figure is laid out first and closed afterwards, whatever happens."""
    path = Path(path)
    fmt = savefig_kwargs.pop("format", path.suffix.lstrip(".") or "png")
    try:
        if close:
            fig.tight_layout()
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format=fmt, **savefig_kwargs)
    finally:
        # a figure made through pyplot is also held by pyplot until closed; a
        # matplotlib.figure.Figure is not, and pyplot is never imported for it
        plt = sys.modules.get("matplotlib.pyplot")
        if close and plt is not None:
            plt.close(fig)
    return path


def append_csv_row(path: str | os.PathLike, row: dict[str, Any]) -> Path:
    """Append ``row`` to a CSV (new columns widen the header), rewriting it atomically.

    A lock file beside it (``.<name>.lock``) serialises concurrent appenders, so two runs
    finishing at once both keep their row.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent / f".{path.name}.lock"):
        rows: list[dict[str, Any]] = []
        fields: list[str] = []
        if path.is_file():
            with path.open(newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                fields = list(reader.fieldnames or [])
                rows = list(reader)
        fields += [k for k in row if k not in fields]
        write_csv(path, [*rows, row], fields)
    return path


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (waits for other holders)."""
    check_regular(lock_path)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    except OSError as e:
        raise _named(e, lock_path) from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class PartialFile:
    """Streamed output: lines go to ``<path>.partial`` (flushed and fsynced per chunk) and the
    file is renamed to ``path`` only when complete.

    A run killed half-way leaves every finished chunk in ``<path>.partial`` and an existing
    ``path`` untouched; a run that fails with an error removes the partial file. ``keep``
    bytes (the :attr:`size` after some chunk of an earlier run) continues that run's partial
    file: anything after them, a chunk cut short, is cut off.
    """

    def __init__(self, path: str | os.PathLike, keep: int = 0) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        check_regular(self.path)
        check_regular(self.partial)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f: IO[bytes] = open(self.partial, "r+b" if keep else "wb")
            if keep:
                self._f.truncate(keep)
                self._f.seek(keep)
        except OSError as e:
            raise _named(e, self.partial) from e

    @property
    def size(self) -> int:
        """Bytes written so far (all of them durable after :meth:`write_chunk`)."""
        return self._f.tell()

    def write_chunk(self, lines: list[str]) -> None:
        """Append lines (without newlines) and make them durable."""
        self.write_text("".join(line + "\n" for line in lines))

    def write_text(self, text: str) -> None:
        """Append ``text`` and make it durable."""
        try:
            self._f.write(text.encode("utf-8"))
            self._f.flush()
            os.fsync(self._f.fileno())
        except OSError as e:
            raise _named(e, self.partial) from e

    def commit(self) -> Path:
        """Close and rename to the final path."""
        try:
            self._f.close()
            _take_mode(self.partial, check_regular(self.path))
            os.replace(self.partial, self.path)
        except OSError as e:
            raise _named(e, self.path) from e
        _fsync_dir(self.path.parent)
        return self.path

    def close(self) -> None:
        """Close, keeping the partial file (an interrupted run)."""
        with contextlib.suppress(OSError):
            self._f.close()

    def discard(self) -> None:
        """Close and remove the partial file (after an error)."""
        with contextlib.suppress(OSError):
            self._f.close()
        _unlink_quietly(self.partial)


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove temp files :func:`atomic_write` (or a checkpoint write) left in ``folder`` when killed.

    Only call this while no other process writes to ``folder`` (e.g. under a run lock).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in [*folder.glob(f".*{TEMP_SUFFIX}"), *folder.glob(f".*{TEMP_SUFFIX}.*")]:
        if p.is_file():
            _unlink_quietly(p)
            removed.append(p)
    return removed


def check_writable(path: str | os.PathLike) -> None:
    """Fail now, before any work, when ``path`` cannot be written (missing permission,
    read-only or pseudo file system such as /proc or /sys, a directory in the way).

    Raises :class:`~molshape.core.errors.OutputRefused` for a destination that is a device,
    FIFO or socket. Leaves nothing behind: folders it had to create for the test are removed again, so a
    command that fails later does not leave empty output folders. Raises :class:`OSError`
    naming ``path``.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
    check_regular(path)
    created = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        os.close(fd)
        _unlink_quietly(tmp)
    except OSError as e:
        raise _named(e, path) from e
    finally:
        for folder in created:  # innermost first
            try:
                folder.rmdir()
            except OSError:
                break
