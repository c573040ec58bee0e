"""Where data sets come from, where they are found locally, and verified downloads.

Data sets are the named :class:`~molshape.data.registry.DataSpec` entries of
:data:`~molshape.data.registry.DATASETS` (parts, alternative sources, checksums).

Verification, per source, strongest first:

1. a published ``sha256`` (the shared ZINC / expression / MNIST copies);
2. a published ``md5`` (torchvision's checksums for MNIST, Fashion-MNIST, SVHN, CelebA);
3. trust on first use: for the upstream ZINC files no checksum is published, so the
   first download is checked for content (its row count must be 249,456 or 249,455), its sha256 is
   written to a ``<file>.sha256`` sidecar, and every later use is verified against that
   sidecar. This catches corruption and later tampering, not a bad first download.

Lookup order of :func:`resolve_data_file`: an explicit ``--data`` path, then
``$MOLSHAPE_DATA_DIR``, then the download cache (``<cache_dir>/downloads``).
``MOLSHAPE_DOWNLOAD_URL_<NAME>`` (or ``url=``) overrides where :func:`download` fetches
from; for a data set with several parts it is a base URL the file names are appended to.

Example:
    >>> path = download("mnist")          # doctest: +SKIP
    >>> resolve_data_file("zinc250k")     # doctest: +SKIP
    PosixPath('/home/me/.cache/molshape/downloads/250k_rndm_zinc_drugs_clean.smi')
"""

from __future__ import annotations

import logging
import os
import re
import socket
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from molshape.core.atomic import write_text
from molshape.core.hashing import file_hash
from molshape.data.registry import DataSpec, Source, get_spec
from molshape.core.runtime import cache_dir
from molshape.data.records import read_records

log = logging.getLogger(__name__)

DATA_DIR_ENV = "MOLSHAPE_DATA_DIR"
URL_ENV_PREFIX = "MOLSHAPE_DOWNLOAD_URL_"
TIMEOUT_S = 60
_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download could not be completed (network, HTTP status, or no source)."""


class ChecksumError(ValueError):
    """A file's content does not match what the registry expects."""


# ----------------------------------------------------------------------------- hashing

def sidecar(path: Path) -> Path:
    """The trust-on-first-use record of ``path``: ``<path>.sha256``."""
    return path.with_name(path.name + ".sha256")


def verify_file(path: Path, source: Source, count_rows: Callable[[Path], int] | None = None) -> str:
    """Check ``path`` against ``source``; return how it was verified.

    Returns:
        ``"sha256"``, ``"md5"``, ``"sha256 (recorded on first use)"``, or ``"unverified"``
        (no checksum, no sidecar and no row count to check).

    Raises:
        ChecksumError: the file does not match.
    """
    if source.sha256:
        _expect(path, "sha256", source.sha256)
        return "sha256"
    if source.md5:
        _expect(path, "md5", source.md5)
        return "md5"
    record = sidecar(path)
    if record.is_file():
        _expect(path, "sha256", record.read_text().split()[0], f" (recorded in {record.name} on first download)")
        return "sha256 (recorded on first use)"
    if source.rows is not None and count_rows is not None:
        n = count_rows(path)
        accepted = source.rows if isinstance(source.rows, tuple) else (source.rows,)
        if n not in accepted:
            expected = " or ".join(f"{r:,}" for r in accepted)
            raise ChecksumError(f"{path}: {n:,} rows, expected {expected}; not the {source.file} data set")
        return f"rows ({n:,})"
    return "unverified"


def _expect(path: Path, algorithm: str, expected: str, where: str = "") -> None:
    got = file_hash(path, algorithm)
    if got != expected:
        raise ChecksumError(f"{path}: {algorithm} {got} does not match the expected {expected}{where}; "
                            "the file is corrupt or a different version")


def _count_rows(path: Path) -> int:
    return len(read_records(path))


# ----------------------------------------------------------------------------- lookup

def _folder(spec: DataSpec, root: Path) -> Path:
    return root / spec.folder if spec.folder else root


def _find(spec: DataSpec, part: str, root: Path) -> tuple[Path, Source] | None:
    """First existing source file of ``part`` under ``root`` (or its data-set folder)."""
    for base in (_folder(spec, root), root):
        for source in spec.parts[part]:
            if (base / source.file).is_file():
                return base / source.file, source
    return None


def download_dir() -> Path:
    """``<cache_dir>/downloads``: where :func:`download` stores files by default."""
    return cache_dir() / "downloads"


def locate(name: str, part: str | None = None, data: Path | None = None) -> tuple[Path, Source | None, str] | None:
    """Find a data file without verifying it: ``(path, source or None, where)`` or None.

    ``where`` is ``--data``, ``$MOLSHAPE_DATA_DIR`` or ``cache``. A ``--data`` file that is
    not a registered file name has source None (the user's own copy).
    """
    spec = get_spec(name)
    part = _part(spec, part)
    if data is not None:
        data = Path(data).expanduser()
        if data.is_dir():
            hit = _find(spec, part, data)
            return (*hit, "--data") if hit else None
        if not data.is_file():
            return None
        match = next((s for s in spec.parts[part] if s.file == data.name), None)
        return data, match, "--data"
    roots = [(Path(os.environ[DATA_DIR_ENV]).expanduser(), f"${DATA_DIR_ENV}")] if os.environ.get(DATA_DIR_ENV) else []
    roots.append((download_dir(), "cache"))
    for root, where in roots:
        hit = _find(spec, part, root)
        if hit:
            return (*hit, where)
    return None


def _part(spec: DataSpec, part: str | None) -> str:
    if part is None:
        return next(iter(spec.parts))
    if part not in spec.parts:
        by_file = {s.file: p for p, alts in spec.parts.items() for s in alts}
        if part in by_file:
            return by_file[part]
        raise KeyError(f"data set {spec.name!r} has no part {part!r}; parts: {', '.join(spec.parts)}")
    return part


def resolve_data_file(name: str, data: Path | None = None, part: str | None = None) -> Path:
    """Path of a data set's file, verified.

    Args:
        name: registry name (``zinc250k``, ``expr``, ``mnist`` ...).
        data: explicit file (or folder) given with ``--data``; missing -> error, no fallback.
        part: for multi-part sets, the part (``t10k-images-idx3-ubyte``) or its file name;
            None means the first part (the only one for single-file sets).

    Raises:
        FileNotFoundError: not found anywhere; the message says how to get it.
        ChecksumError: found, but its checksum does not match the registry.
    """
    spec = get_spec(name)
    found = locate(name, part, data)
    if found is None:
        if data is not None:
            raise FileNotFoundError(f"--data {data}: no such file, or a folder without "
                                    f"{' / '.join(s.file for s in spec.parts[_part(spec, part)])}")
        files = " or ".join(s.file for s in spec.parts[_part(spec, part)])
        how = "" if spec.generated else f"run `molshape data download {name}`, "
        raise FileNotFoundError(f"data set {name!r} not found: {how}pass --data PATH, or set "
                                f"{DATA_DIR_ENV} to a folder holding {files}")
    path, source, where = found
    if source is not None:
        # row counting only for copies we manage; an explicit --data file is the user's choice
        status = verify_file(path, source, None if where == "--data" else _count_rows)
        _record_first_use(path, status)
        log.debug("%s: %s from %s (%s)", name, path, where, status)
    return path


def _record_first_use(path: Path, status: str) -> None:
    """Trust on first use: a file that passed only the row check gets its sha256 recorded."""
    if status.startswith("rows"):
        write_text(sidecar(path), f"{file_hash(path)}  {path.name}\n")
        log.warning("%s has no published checksum; its sha256 was recorded in %s and will be "
                    "checked on every later use", path.name, sidecar(path))


# ----------------------------------------------------------------------------- download

def _override(name: str, url: str | None) -> str | None:
    env = URL_ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", name.upper())
    return url or os.environ.get(env) or None


def download(name: str, url: str | None = None, dest: Path | None = None, *,
             parts: list[str] | None = None, progress: bool = True) -> Path:
    """Fetch a data set into ``dest`` (default :func:`download_dir`), verify it, and cache it.

    A part already present and verified in ``dest`` is not fetched again. Each file is
    streamed to a temp file beside its target, verified, then renamed into place.

    Args:
        name: registry name.
        url: source override (also ``$MOLSHAPE_DOWNLOAD_URL_<NAME>``); for a multi-part
            set a base URL to which each file name is appended. ``file://`` works.
        dest: target folder.
        parts: subset of parts to fetch (default all).
        progress: show a tqdm bar per file.

    Returns:
        The file for a single-file set, else the folder holding the parts.

    Raises:
        DownloadError: no source could be fetched (offline, HTTP error); one sentence
            that says how to use a local copy instead.
        ChecksumError: the fetched file did not verify (it is removed).
    """
    spec = get_spec(name)
    url = _override(name, url)
    root = Path(dest) if dest is not None else download_dir()
    folder = _folder(spec, root)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [_download_part(spec, p, url, folder, progress) for p in (parts or list(spec.parts))]
    return paths[0] if spec.single else folder


def _candidates(spec: DataSpec, part: str, url: str | None) -> list[tuple[str, Source]]:
    alternatives = spec.parts[part]
    if url is None:
        return [(s.url, s) for s in alternatives if s.url]
    if not spec.single:
        source = alternatives[0]
        return [(url.rstrip("/") + "/" + source.file, source)]
    # a single-file override is checked as the source whose file name it ends with, else the first
    tail = url.rstrip("/").rsplit("/", 1)[-1]
    return [(url, next((s for s in alternatives if s.file == tail), alternatives[0]))]


def _download_part(spec: DataSpec, part: str, url: str | None, folder: Path, progress: bool) -> Path:
    candidates = _candidates(spec, part, url)
    if not candidates:
        raise DownloadError(f"data set {spec.name!r} has no download source: "
                            f"{spec.note or 'pass --data PATH or --url URL'}")
    for _, source in candidates:  # cache hit: any verified copy of this part
        target = folder / source.file
        if target.is_file():
            try:
                _record_first_use(target, verify_file(target, source, _count_rows))
                log.info("%s: using cached %s", spec.name, target)
                return target
            except ChecksumError as e:
                log.warning("%s; fetching it again", e)
    failures: list[str] = []
    for u, source in candidates:
        try:
            return _fetch(u, folder / source.file, source, progress)
        except DownloadError as e:
            failures.append(f"{u} ({e})")
    local = " / ".join(s.file for s in spec.parts[part])
    raise DownloadError(f"could not download {spec.name} from {'; '.join(failures)}: if this machine is "
                        f"offline, pass --data PATH to a local copy or set {DATA_DIR_ENV} to a folder holding {local}")


def _fetch(url: str, target: Path, source: Source, progress: bool) -> Path:
    """Stream ``url`` to a temp file beside ``target``, verify, rename. Network -> DownloadError."""
    from tqdm import tqdm

    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                    total = int(response.headers.get("Content-Length") or 0) or None
                    with tqdm(total=total, unit="B", unit_scale=True, desc=target.name,
                              disable=not progress, leave=False) as bar:
                        while chunk := response.read(_CHUNK):
                            out.write(chunk)
                            bar.update(len(chunk))
            except urllib.error.HTTPError as e:
                raise DownloadError(f"HTTP {e.code} {e.reason}") from e
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as e:
                raise DownloadError(str(getattr(e, "reason", e))) from e
        try:
            status = verify_file(tmp, source, _count_rows)
        except ChecksumError as e:
            raise ChecksumError(f"downloaded {url} but it failed verification and was removed: {e}") from e
        with open(tmp, "rb+") as f:  # durable before it replaces anything
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp made it private; a data file is not a secret
        os.replace(tmp, target)
        _record_first_use(target, status)
        log.info("downloaded %s -> %s (%s verified)", url, target, status)
        return target
    finally:
        if tmp.exists():
            tmp.unlink()
