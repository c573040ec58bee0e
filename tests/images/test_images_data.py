"""Image readers on the real MNIST file and on tiny .mat / JPEG files written here."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from molshape.images import readers
from molshape.images.data import iterate_batches, load_images

MNIST_T10K_IMAGES_SHA256 = "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"


@pytest.mark.full_data
def test_idx_reader_on_real_mnist(mnist_dir: Path) -> None:
    images_path = mnist_dir / "t10k-images-idx3-ubyte.gz"
    assert hashlib.sha256(images_path.read_bytes()).hexdigest() == MNIST_T10K_IMAGES_SHA256
    x = readers.read_idx(images_path)
    y = readers.read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and y.min() == 0 and y.max() == 9
    # the decoded body is exactly the gunzipped file after its 16-byte header
    body = gzip.decompress(images_path.read_bytes())[16:]
    assert hashlib.sha256(x.tobytes()).hexdigest() == hashlib.sha256(body).hexdigest()
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the well-known first t10k labels
    assert np.bincount(y).tolist()[:3] == [980, 1135, 1032]


def test_idx_reader_on_the_committed_mnist_slice() -> None:
    from conftest import MNIST_SMALL

    x = readers.read_idx(MNIST_SMALL / "t10k-images-idx3-ubyte.gz")
    y = readers.read_idx(MNIST_SMALL / "t10k-labels-idx1-ubyte.gz")
    assert x.shape == (500, 28, 28) and x.dtype == np.uint8 and y.shape == (500,)
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the well-known first t10k labels
    assert set(y.tolist()) == set(range(10)) and 0 < x.mean() < 255


def test_idx_reader_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad-idx"
    bad.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an IDX file"):
        readers.read_idx(bad)
    short = tmp_path / "short-idx"
    short.write_bytes(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"\x00" * 3)
    with pytest.raises(ValueError, match="IDX body has 3 bytes"):
        readers.read_idx(short)


@pytest.mark.full_data
def test_load_mnist_split_and_padding(mnist_dir: Path) -> None:
    data = load_images("mnist", mnist_dir)
    assert data.images.shape == (10000, 1, 32, 32) and data.images.dtype == torch.uint8
    assert data.split["train"].numel() == 9000 and data.split["test"].numel() == 1000
    assert not set(data.split["train"].tolist()) & set(data.split["test"].tolist())
    # zero padding 28 -> 32 keeps a 2-pixel empty border and every original pixel
    assert data.images[:, :, :2].sum() == 0 and data.images[:, :, :, -2:].sum() == 0
    raw = readers.read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")
    assert torch.equal(data.images[5, 0, 2:30, 2:30], torch.from_numpy(raw[5]))
    again = load_images("mnist", mnist_dir)
    assert torch.equal(again.split["test"], data.split["test"])  # seeded


def test_svhn_mat_reader(tmp_path: Path) -> None:
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(32, 32, 3, 5), dtype=np.uint8)
    y = np.array([[10], [1], [2], [9], [10]], dtype=np.uint8)
    savemat(tmp_path / "test_32x32.mat", {"X": x, "y": y})
    images, labels = readers.read_svhn_mat(tmp_path / "test_32x32.mat")
    assert images.shape == (5, 3, 32, 32) and images.dtype == np.uint8
    assert labels.tolist() == [0, 1, 2, 9, 0]  # SVHN stores the digit 0 as 10
    assert np.array_equal(images[3, 1], x[:, :, 1, 3])
    data = load_images("svhn", tmp_path / "test_32x32.mat")
    assert data.images.shape == (5, 3, 32, 32) and data.split["test"].numel() == 1
    savemat(tmp_path / "wrong.mat", {"A": x})
    with pytest.raises(ValueError, match="expected variables 'X' and 'y'"):
        readers.read_svhn_mat(tmp_path / "wrong.mat")


def test_celeba_folder_reader(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "img_align_celeba"
    folder.mkdir()
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        im = Image.new("RGB", (178, 218), (0, 0, 0))
        im.paste(Image.new("RGB", (140, 140), colour), ((178 - 140) // 2, (218 - 140) // 2))
        im.save(folder / f"{i:06d}.jpg", quality=95)
    (folder / "000099.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "list_eval_partition.txt").write_text(
        "000000.jpg 0\n000001.jpg 0\n000002.jpg 2\n000099.jpg 0\n")
    data = load_images("celeba", tmp_path)
    assert data.images.shape == (3, 3, 64, 64) and data.labels is None
    assert len(data.failed) == 1 and "000099.jpg" in data.failed[0][0]
    assert data.official_split and data.split["test"].tolist() == [2]
    # the centre crop of 140 is exactly the coloured square: pure colour after resizing
    means = data.images.float().mean(dim=(2, 3))
    assert means[0, 0] > 240 and means[0, 1] < 15 and means[2, 2] > 240


def test_iterate_batches_covers_split_once() -> None:
    images = torch.arange(23, dtype=torch.uint8).view(23, 1, 1, 1)
    idx = torch.arange(3, 23)
    seen = torch.cat([b.view(-1) for b in iterate_batches(images, idx, 6, shuffle=True, seed=1)])
    assert sorted(seen.tolist()) == list(range(3, 23))
    assert sum(1 for _ in iterate_batches(images, idx, 6, drop_last=True)) == 3
