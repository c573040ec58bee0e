"""Image data sets for the benchmarks: where the files are, how they are split, how they are batched.

``load_images(name, data=None, limit=None)`` is the one entry point. It returns an
:class:`ImageData` holding every image as ``uint8 [N x C x H x W]`` (MNIST and
Fashion-MNIST zero-padded from 28 to 32, SVHN 32, CelebA centre-cropped to 140 and
resized to 64) with a seeded ``train`` / ``test`` split:

- the official train and test files when both are present (CelebA: its
  ``list_eval_partition.txt``, whose valid and test parts are both held out);
- otherwise (e.g. only MNIST ``t10k`` here) a seeded split holding out
  ``test_fraction`` (10 %) of the images: 10,000 MNIST ``t10k`` images -> 9,000 train
  + 1,000 test.

Unreadable CelebA JPEGs are skipped, counted in ``failed`` and logged. The prepared
CelebA array (2.5 GB for 202,599 faces) is cached as ``.npz`` in
``molshape.core.runtime.cache_dir()`` keyed by the folder listing.

Images stay ``uint8`` until the model converts them, so a batch moves to the GPU at a
quarter of the float size.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from molshape.images import readers
from molshape.data.registry import get_spec
from molshape.data.download import resolve_data_file
from molshape.core.hashing import file_hash
from molshape.core.runtime import cache_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageSpec:
    """What a benchmark data set looks like once prepared."""

    name: str
    channels: int
    size: int  # square side after padding / cropping
    n_classes: int | None  # None: no labels (CelebA)
    files: tuple[str, ...]  # file (or folder) names looked for, train first


SPECS: dict[str, ImageSpec] = {
    "mnist": ImageSpec("mnist", 1, 32, 10, ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")),
    "fashion-mnist": ImageSpec("fashion-mnist", 1, 32, 10, ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")),
    "svhn": ImageSpec("svhn", 3, 32, 10, ("train_32x32.mat", "test_32x32.mat")),
    "celeba": ImageSpec("celeba", 3, 64, None, ("img_align_celeba",)),
}


@dataclass
class ImageData:
    """A prepared image data set.

    Attributes:
        name: key of :data:`SPECS`.
        images: ``uint8 [N x C x H x W]``.
        labels: ``int64 [N]`` class labels, or ``None`` (CelebA).
        split: ``{"train": LongTensor, "test": LongTensor}`` row indices.
        source: where the images were read from.
        source_sha256: checksum of the source files (keys caches such as the FID classifier).
        official_split: whether ``split`` follows the data set's own train/test files.
        failed: ``(file, reason)`` for each skipped unreadable input.
        load_args: the ``load_images`` arguments that rebuild exactly these rows and split.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor | None
    split: dict[str, torch.Tensor]
    source: str
    source_sha256: str
    official_split: bool
    failed: list[tuple[str, str]] = field(default_factory=list)
    load_args: dict[str, object] = field(default_factory=dict)

    @property
    def spec(self) -> ImageSpec:
        return SPECS[self.name]

    def describe(self) -> dict[str, object]:
        """Plain summary for configs, checkpoints and ``--json``."""
        return {
            "dataset": self.name, "source": self.source, "sha256": self.source_sha256,
            "n_images": int(self.images.shape[0]), "shape": list(self.images.shape[1:]),
            "n_train": int(self.split["train"].numel()), "n_test": int(self.split["test"].numel()),
            "official_split": self.official_split, "n_failed": len(self.failed), "load_args": self.load_args,
        }


def check_dataset(name: str) -> ImageSpec:
    if name not in SPECS:
        raise ValueError(f"unknown image dataset {name!r}; choose one of {', '.join(SPECS)}")
    return SPECS[name]


# -- locating files ---------------------------------------------------------------------
def _registry_parts(name: str, data: Path | None) -> dict[str, Path]:
    """Every part of ``name`` that molshape.data.download finds (checksum-verified); missing parts omitted."""
    found: dict[str, Path] = {}
    for part in get_spec(name).parts:
        try:
            found[part] = resolve_data_file(name, data, part)
        except FileNotFoundError:
            continue
    return found


def _find_plain(folder: Path, stem: str) -> Path | None:
    """``stem`` or ``stem.gz`` (also the ``train-images.idx3-ubyte`` spelling) in a user folder."""
    for name in (stem, stem.replace("-idx", ".idx")):
        for suffix in ("", ".gz"):
            if (folder / (name + suffix)).is_file():
                return folder / (name + suffix)
    return None


def _check_data(name: str, data: Path | None) -> Path | None:
    check_dataset(name)
    if data is None:
        return None
    data = Path(data).expanduser()
    if not data.exists():
        raise FileNotFoundError(f"--data {data}: no such file or folder for dataset {name!r}")
    return data


def _not_found(name: str, data: Path | None, expected: str) -> FileNotFoundError:
    where = f"--data {data}" if data is not None else "the data folders ($MOLSHAPE_DATA_DIR, download cache)"
    return FileNotFoundError(f"dataset {name!r}: {where} holds no {expected}; run "
                             f"`molshape data download {name}` or pass --data to a local copy")


def _extract_zip(path: Path) -> Path:
    """Unpack a downloaded archive once into the cache; returns the folder."""
    dest = cache_dir() / "images" / path.stem
    marker = dest / ".complete"
    if not marker.exists():
        log.info("extracting %s to %s", path, dest)
        with zipfile.ZipFile(path) as zf:
            zf.extractall(dest)
        marker.touch()
    return dest


# -- per-format loaders ------------------------------------------------------------------
def _load_mnist_like(name: str, data: Path | None) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[Path], str]:
    """``[(train images, labels), (test images, labels)]`` (the pairs present), their files, the source."""
    folder = data.parent if data is not None and data.is_file() else data
    found = _registry_parts(name, folder)
    parts, files = [], []
    for prefix in ("train", "t10k"):
        pair = [found.get(f"{prefix}-{kind}") or (_find_plain(folder, f"{prefix}-{kind}") if folder else None)
                for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]
        if pair[0] is None or pair[1] is None:
            continue
        x, y = readers.read_idx(pair[0]), readers.read_idx(pair[1]).astype(np.int64)
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(f"{pair[0]}, {pair[1]}: images {x.shape} and labels {y.shape} do not pair up")
        parts.append((readers.pad_to(x[:, None], 32), y))
        files += pair
    if not parts:
        raise _not_found(name, data, "IDX files (train-/t10k-images-idx3-ubyte[.gz] with their labels)")
    return parts, files, str(files[0].parent)


def _load_svhn(data: Path | None) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[Path], str]:
    if data is not None and data.is_file():
        files = [data]
    else:
        found = _registry_parts("svhn", data)
        files = [found[p] for p in ("train", "test") if p in found]
    if not files:
        raise _not_found("svhn", data, "train_32x32.mat / test_32x32.mat")
    return [readers.read_svhn_mat(f) for f in files], files, str(files[0].parent)


def _celeba_folder(data: Path | None) -> tuple[Path, Path | None]:
    """The folder of aligned JPEGs and, when found, ``list_eval_partition.txt``."""
    if data is not None and data.is_dir() and not (data / "img_align_celeba.zip").is_file():
        folder = data / "img_align_celeba" if (data / "img_align_celeba").is_dir() else data
        near = [p / "list_eval_partition.txt" for p in (folder, folder.parent)]
        return folder, next((p for p in near if p.is_file()), None)
    found = _registry_parts("celeba", data)
    if "images" not in found:
        raise _not_found("celeba", data, "img_align_celeba.zip or folder of aligned JPEGs")
    folder = _extract_zip(found["images"])
    folder = folder / "img_align_celeba" if (folder / "img_align_celeba").is_dir() else folder
    return folder, found.get("partition")


def _load_celeba(folder: Path, limit: int | None) -> tuple[np.ndarray, list[str], list[tuple[str, str]], str]:
    files = readers.list_images(folder)
    if not files:
        raise FileNotFoundError(f"{folder}: no JPEG/PNG images")
    files = files[:limit] if limit else files
    # A folder of 200k JPEGs: key the prepared array by the listing (names and sizes).
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}\t{f.stat().st_size}\n".encode())
    key = h.hexdigest()

    cached = cache_dir() / "images" / f"celeba-{key[:16]}.npz"
    if cached.exists():
        z = np.load(cached, allow_pickle=False)
        failed = [tuple(str(s).split("\t", 1)) for s in z["failed"]]
        return z["images"], [str(s) for s in z["names"]], failed, key
    images, kept, failed = readers.read_image_folder(files, progress=len(files) > 1000)
    names = [files[i].name for i in kept]
    if len(files) > 1000:  # worth caching; tiny folders (tests) are re-read
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cached, images=images, names=np.array(names),
                 failed=np.array([f"{f}\t{why}" for f, why in failed], dtype=str))
    return images, names, failed, key


def _celeba_partition(path: Path | None, names: list[str]) -> np.ndarray | None:
    """Official partition (0 train, 1 valid, 2 test) of ``names`` from ``list_eval_partition.txt``."""
    if path is None:
        return None
    table = dict(line.split()[:2] for line in path.read_text().splitlines() if len(line.split()) >= 2)
    missing = [n for n in names if n not in table]
    if missing:
        log.warning("%s lacks %d of the images (e.g. %s); using a seeded split instead", path, len(missing), missing[0])
        return None
    return np.array([int(table[n]) for n in names])


# -- entry point -----------------------------------------------------------------------------
def load_images(name: str, data: Path | None = None, limit: int | None = None,
                test_fraction: float = 0.1, seed: int = 0) -> ImageData:
    """Read, pad/crop and split an image benchmark.

    Args:
        name: ``mnist``, ``fashion-mnist``, ``svhn`` or ``celeba``.
        data: a local folder (or file) instead of the download cache.
        limit: keep only the first ``limit`` images (of the train file, and
            ``ceil(limit * test_fraction)`` of the test file when both exist).
        test_fraction: held-out share when the data set has no separate test file.
        seed: seed of that split.
    """
    spec = check_dataset(name)
    data = _check_data(name, data)
    failed: list[tuple[str, str]] = []
    if name == "celeba":
        folder, partition = _celeba_folder(data)
        source = str(folder)
        x, names, failed, sha = _load_celeba(folder, limit)
        y = None
        part = _celeba_partition(partition, names)
        if part is not None:  # official partition: train rows first, valid + test held out
            x, n_train = x[np.argsort(part != 0, kind="stable")], int((part == 0).sum())
    else:
        parts, files, source = _load_mnist_like(name, data) if name != "svhn" else _load_svhn(data)
        sha = file_hash(files)
        if limit:
            n_test = int(np.ceil(limit * test_fraction))
            parts = [(a[:limit], b[:limit]) for a, b in parts[:1]] + [(a[:n_test], b[:n_test]) for a, b in parts[1:]]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        part = "official" if len(parts) == 2 else None
        n_train = len(parts[0][0])
    if x.shape[1:] != (spec.channels, spec.size, spec.size):
        raise ValueError(f"{source}: images have shape {x.shape[1:]}, expected {(spec.channels, spec.size, spec.size)}")
    n = x.shape[0]
    if part is not None:
        split = {"train": torch.arange(n_train), "test": torch.arange(n_train, n)}
    else:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        n_test = max(1, int(round(n * test_fraction)))
        split = {"train": perm[n_test:].sort().values, "test": perm[:n_test].sort().values}
    if failed:
        log.warning("%s: skipped %d unreadable files (first: %s)", source, len(failed), failed[0])
    return ImageData(
        name=name, images=torch.from_numpy(np.ascontiguousarray(x)),
        labels=None if y is None else torch.from_numpy(y), split=split, source=source,
        source_sha256=sha, official_split=part is not None, failed=failed,
        load_args={"limit": limit, "test_fraction": test_fraction, "seed": seed},
    )


def iterate_batches(images: torch.Tensor, indices: torch.Tensor, batch_size: int,
                    shuffle: bool = False, seed: int = 0, drop_last: bool = False) -> Iterator[torch.Tensor]:
    """Yield ``uint8 [B x C x H x W]`` batches of ``images[indices]``.

    Shuffling uses a private generator seeded by ``seed`` so that ``--resume`` replays
    the same order for the same epoch.
    """
    if shuffle:
        indices = indices[torch.randperm(indices.numel(), generator=torch.Generator().manual_seed(seed))]
    stop = indices.numel() - (indices.numel() % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        yield images[indices[start:start + batch_size]]


def to_float(images: torch.Tensor) -> torch.Tensor:
    """``uint8 [B x C x H x W]`` -> float in [0, 1] (float input passes through)."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images
