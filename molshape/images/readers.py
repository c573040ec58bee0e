"""File-format readers for the image benchmarks: IDX (MNIST), ``.mat`` (SVHN), JPEG folders (CelebA).

Only numpy, scipy and Pillow: torchvision does not import beside the CPU torch build,
so the core install never needs it. Every reader returns ``uint8`` arrays in
``N x C x H x W`` layout (channels first, as the networks expect).
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: IDX type codes (third magic byte) -> numpy big-endian dtype
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
JPEG_SUFFIXES = (".jpg", ".jpeg", ".png")


def _read_bytes(path: Path) -> bytes:
    """File content, gunzipped when the file starts with the gzip magic (whatever its name)."""
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (plain or gzip), e.g. ``t10k-images-idx3-ubyte.gz``.

    Layout: two zero bytes, a type code, the number of dimensions ``n``, then ``n``
    big-endian int32 sizes and the data in C order.

    Returns:
        array of the file's shape (``[N x 28 x 28]`` uint8 for MNIST images, ``[N]`` for labels).

    Raises:
        ValueError: naming the file when the header is malformed or the size disagrees.
    """
    path = Path(path)
    buf = _read_bytes(path)
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0:
        raise ValueError(f"{path}: not an IDX file (magic bytes {buf[:4].hex()!r}, expected 0000XXNN)")
    code, ndim = buf[2], buf[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(buf)} bytes for {ndim} dimensions)")
    shape = tuple(int(s) for s in np.frombuffer(buf, dtype=">i4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(buf) - header != expected:
        raise ValueError(f"{path}: IDX body has {len(buf) - header} bytes, header {shape} needs {expected}")
    data = np.frombuffer(buf, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


def pad_to(images: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad ``[N x C x h x w]`` images symmetrically to ``size x size`` (MNIST 28 -> 32).

    Padding keeps every pixel of the original digit (a resize would blur the strokes).
    """
    n, c, h, w = images.shape
    if h > size or w > size:
        raise ValueError(f"cannot pad {h}x{w} images to {size}x{size}")
    top, left = (size - h) // 2, (size - w) // 2
    out = np.zeros((n, c, size, size), dtype=images.dtype)
    out[:, :, top:top + h, left:left + w] = images
    return out


def read_svhn_mat(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an SVHN cropped-digits file (``train_32x32.mat`` / ``test_32x32.mat``).

    The file stores ``X [32 x 32 x 3 x N]`` uint8 and ``y [N x 1]`` with the digit 0
    labelled 10; this returns ``(images [N x 3 x 32 x 32] uint8, labels [N] int64 in 0..9)``.
    """
    from scipy.io import loadmat

    path = Path(path)
    try:
        mat = loadmat(path)
    except Exception as e:  # scipy raises several types for a non-.mat file
        raise ValueError(f"{path}: not a MATLAB .mat file: {e}") from e
    if "X" not in mat or "y" not in mat:
        raise ValueError(f"{path}: expected variables 'X' and 'y', found {sorted(k for k in mat if not k.startswith('__'))}")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    if x.ndim != 4 or x.shape[2] != 3 or x.shape[3] != y.shape[0]:
        raise ValueError(f"{path}: X has shape {x.shape}, expected [H x W x 3 x N] with N = {y.shape[0]}")
    y = np.where(y == 10, 0, y)
    if y.min(initial=0) < 0 or y.max(initial=0) > 9:
        raise ValueError(f"{path}: labels outside 1..10")
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8), y


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files (JPEG/PNG) directly inside ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in JPEG_SUFFIXES and p.is_file())


def load_face(path: Path, crop: int = 140, size: int = 64) -> np.ndarray:
    """One CelebA image: centre crop ``crop x crop``, resize to ``size x size``; ``[3 x size x size]`` uint8."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        c = min(crop, w, h)
        left, top = (w - c) // 2, (h - c) // 2
        im = im.crop((left, top, left + c, top + c)).resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()


def read_image_folder(
    files: Sequence[Path], crop: int = 140, size: int = 64, progress: bool = False
) -> tuple[np.ndarray, list[int], list[tuple[str, str]]]:
    """Read JPEGs into ``[N x 3 x size x size]`` uint8, skipping unreadable files.

    Returns:
        ``(images, kept, failed)``: the images, the indices into ``files`` they came
        from, and ``(file name, reason)`` for each file that could not be read.
    """
    from tqdm import tqdm

    out = np.empty((len(files), 3, size, size), dtype=np.uint8)
    kept: list[int] = []
    failed: list[tuple[str, str]] = []
    for i, path in enumerate(tqdm(files, desc="reading images", unit="img", disable=not progress)):
        try:
            out[len(kept)] = load_face(path, crop, size)
        except (OSError, ValueError) as e:  # truncated or non-image file: skip, count, report
            failed.append((str(path), f"{type(e).__name__}: {e}"))
            continue
        kept.append(i)
    return out[: len(kept)], kept, failed
