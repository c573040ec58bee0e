"""Where data sets come from, where they are found locally, and verified downloads.

A data set is a named :class:`DataSpec` in :data:`DATASETS`. It has one or more parts
(MNIST has four IDX files; ZINC250k has one), and each part has alternative
:class:`Source` s: mirrors or formats, each with its own file name and checksum.

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

import hashlib
import logging
import os
import re
import socket
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from molshape.runtime import cache_dir

log = logging.getLogger(__name__)

DATA_DIR_ENV = "MOLSHAPE_DATA_DIR"
URL_ENV_PREFIX = "MOLSHAPE_DOWNLOAD_URL_"
TIMEOUT_S = 60
_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download could not be completed (network, HTTP status, or no source)."""


class ChecksumError(ValueError):
    """A file's content does not match what the registry expects."""


@dataclass(frozen=True)
class Source:
    """One way to obtain a file.

    Attributes:
        file: file name in the download cache and in ``$MOLSHAPE_DATA_DIR``.
        url: where to fetch it; None for copies that are only ever local.
        sha256: published sha256 of the file, if known.
        md5: published md5 (torchvision's checksums), used when no sha256 is known.
        rows: accepted number(s) of records; the content check for trust on first use.
    """

    file: str
    url: str | None = None
    sha256: str | None = None
    md5: str | None = None
    rows: int | tuple[int, ...] | None = None


@dataclass(frozen=True)
class DataSpec:
    """A registered data set.

    Attributes:
        name: registry key (``zinc250k``, ``mnist`` ...).
        description: one line for ``molshape data info``.
        parts: part name -> alternative sources, preferred first.
        folder: for multi-part sets, the folder that holds the parts (``mnist/...``).
        grammar: the grammar whose strings the set holds, if any.
        generated: True when molshape can build the set itself (no download needed).
        note: extra advice shown when the set cannot be downloaded.
    """

    name: str
    description: str
    parts: dict[str, tuple[Source, ...]]
    folder: str | None = None
    grammar: str | None = None
    generated: bool = False
    note: str = ""

    @property
    def single(self) -> bool:
        return len(self.parts) == 1

    def sources(self) -> list[Source]:
        return [s for alternatives in self.parts.values() for s in alternatives]


def _idx_set(name: str, base: str, md5s: dict[str, str], description: str,
             sha256s: dict[str, str] | None = None) -> DataSpec:
    parts = {stem: (Source(f"{stem}.gz", base + f"{stem}.gz", sha256=(sha256s or {}).get(stem), md5=md5),)
             for stem, md5 in md5s.items()}
    return DataSpec(name, description, parts, folder=name)


_GDRIVE = "https://drive.google.com/uc?export=download&id="
#: the shared copy has 249,456 molecules; several projects report 249,455 for their copy of
#: the upstream files, so the first-use content check accepts both
_ZINC_ROWS = (249_456, 249_455)

DATASETS: dict[str, DataSpec] = {
    "zinc250k": DataSpec(
        "zinc250k", "ZINC250k drug-like molecules (GVAE / chemical-VAE), one SMILES a line",
        {"smiles": (
            Source("250k_rndm_zinc_drugs_clean.smi",
                   "https://raw.githubusercontent.com/mkusner/grammarVAE/master/data/250k_rndm_zinc_drugs_clean.smi",
                   rows=_ZINC_ROWS),
            Source("250k_rndm_zinc_drugs_clean_3.csv",
                   "https://raw.githubusercontent.com/aspuru-guzik-group/chemical_vae/master/models/"
                   "zinc_properties/250k_rndm_zinc_drugs_clean_3.csv",
                   rows=_ZINC_ROWS),
            Source("zinc250k.smi.gz",
                   sha256="50b6b95dbdd4547344602c352b6e770daf8bda801fcd670fc487334d04a1ab36"),
        )},
        grammar="smiles"),
    "expr": DataSpec(
        "expr", "GVAE arithmetic expressions (<= 15 productions), tokens space-separated",
        {"expressions": (
            Source("equation2_15_dataset.txt.gz",
                   sha256="c98f492fa1e5c15f63cb32b62372d5ed35ae469d634262ae4b0b0fe5cdf690b3", rows=100_000),
            Source("equation2_15_dataset.txt", rows=100_000),
        )},
        grammar="expr", generated=True,
        note="GVAE publishes this set only as one-hot HDF5 (data/eq2_grammar_dataset.h5, needs h5py); "
             "molshape generates 100,000 expressions instead, or pass --data to a text copy"),
    "mnist": _idx_set(
        "mnist", "https://ossci-datasets.s3.amazonaws.com/mnist/",
        {"train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
         "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
         "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
         "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c"},
        "MNIST handwritten digits, IDX (torchvision md5s)",
        sha256s={"t10k-images-idx3-ubyte": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                 "t10k-labels-idx1-ubyte": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"}),
    "fashion-mnist": _idx_set(
        "fashion-mnist", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        {"train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
         "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
         "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
         "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310"},
        "Fashion-MNIST, IDX (torchvision md5s)"),
    "svhn": DataSpec(
        "svhn", "SVHN cropped digits 32x32, MATLAB .mat (torchvision md5s)",
        {"train": (Source("train_32x32.mat", "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
                          md5="e26dedcc434d2e4c54c9b2d4a06d8373"),),
         "test": (Source("test_32x32.mat", "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
                         md5="eb5a983be6a315427106f1b164d9cef3"),)},
        folder="svhn"),
    "celeba": DataSpec(
        "celeba", "CelebA aligned faces (JPEG zip) and partition list (torchvision md5s)",
        {"images": (Source("img_align_celeba.zip", _GDRIVE + "0B7EVK8r0v71pZjFTYXZWM3FlRnM",
                           md5="00d2c5bc6d35e252742224ab0c1e8fcb"),),
         "partition": (Source("list_eval_partition.txt", _GDRIVE + "0B7EVK8r0v71pY0NSMzRuSXJEVkk",
                              md5="d32c9cbf5e040fd4025c592c306e6668"),),
         "attributes": (Source("list_attr_celeba.txt", _GDRIVE + "0B7EVK8r0v71pblRyaVFSWGxPY0U",
                               md5="75e246fa4810816ffd6ee81facbd244c"),)},
        folder="celeba",
        note="Google Drive often answers large files with a confirmation page instead of the file; "
             "if so, download img_align_celeba.zip in a browser and pass --data to its folder"),
}


def get_spec(name: str) -> DataSpec:
    """The registry entry ``name``; a clear ``KeyError`` listing the known names otherwise."""
    if name not in DATASETS:
        raise KeyError(f"unknown data set {name!r}; known data sets: {', '.join(DATASETS)}")
    return DATASETS[name]


# ----------------------------------------------------------------------------- hashing

_hash_memo: dict[tuple[str, str, int, int], str] = {}


def file_hash(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, memoised per (path, size, mtime) within the process."""
    st = path.stat()
    key = (algorithm, str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _hash_memo:
        h = hashlib.new(algorithm)
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        _hash_memo[key] = h.hexdigest()
    return _hash_memo[key]


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
    from molshape.datasets import read_records  # datasets imports this module; avoid a cycle

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
        sidecar(path).write_text(f"{file_hash(path)}  {path.name}\n")
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
        os.chmod(tmp, 0o644)  # mkstemp made it private; a data file is not a secret
        os.replace(tmp, target)
        _record_first_use(target, status)
        log.info("downloaded %s -> %s (%s verified)", url, target, status)
        return target
    finally:
        if tmp.exists():
            tmp.unlink()
