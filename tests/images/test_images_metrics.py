"""Frechet distance and clustering accuracy (metrics), networks shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from molshape.images.metrics import clustering_accuracy, frechet_distance
from molshape.images.networks import ConvDecoder, ConvEncoder, channels_for


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_frechet_identical_is_zero_and_shift_is_positive(dtype: type) -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 16)).astype(dtype)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # a pure shift by delta adds |delta|^2 and nothing else
    assert frechet_distance(a, a + 0.5) == pytest.approx(16 * 0.25, rel=1e-6)
    # a scale change: tr(S_a + S_b - 2 sqrt(S_a S_b)) = 16 * (1 - 2)^2 for std 1 vs 2 (approx.)
    assert frechet_distance(a, 2 * a) == pytest.approx(16.0, rel=0.1)
    b = rng.normal(size=(2000, 16))
    assert 0 < frechet_distance(a, b) < 0.5  # two samples of one Gaussian: small, not zero


def test_frechet_handles_singular_covariances() -> None:
    rng = np.random.default_rng(1)
    a = np.zeros((100, 8))
    a[:, 0] = rng.normal(size=100)  # rank-one covariance
    d = frechet_distance(a, a + 1.0)
    assert np.isfinite(d) and d == pytest.approx(8.0, rel=1e-3)
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(a[:1], a[:1])


def test_clustering_accuracy_known_permutations() -> None:
    labels = np.repeat(np.arange(10), 30)
    perm = np.random.default_rng(0).permutation(10)
    acc, mapping = clustering_accuracy(labels, perm[labels])
    assert acc == 1.0 and all(mapping[int(perm[l])] == l for l in range(10))
    # corrupt 30 of 300 items: accuracy drops to exactly 0.9
    clusters = perm[labels].copy()
    clusters[::10] = (clusters[::10] + 1) % 10
    assert clustering_accuracy(labels, clusters)[0] == pytest.approx(0.9)
    # all items in one cluster: only one label can be matched
    assert clustering_accuracy(labels, np.zeros_like(labels))[0] == pytest.approx(0.1)
    # more clusters than labels: unmatched clusters count as errors
    acc, _ = clustering_accuracy(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 2, 1, 3]))
    assert acc == pytest.approx(0.5)
    with pytest.raises(ValueError, match="equally long"):
        clustering_accuracy([0, 1], [0])


@pytest.mark.parametrize("channels,size,latent", [(1, 32, 10), (3, 32, 100), (3, 64, 64)])
def test_network_shapes(channels: int, size: int, latent: int) -> None:
    width = 0.0625
    enc, dec = ConvEncoder(channels, size, width), ConvDecoder(latent, channels, size, width)
    x = torch.rand(3, channels, size, size)
    h = enc(x)
    assert h.shape == (3, enc.feature_dim) and enc.feature_dim == channels_for(width)[-1] * (size // 16) ** 2
    y = dec(torch.randn(3, latent))
    assert y.shape == x.shape and (y > 0).all() and (y < 1).all()
    assert channels_for(1.0) == (128, 256, 512, 1024) and channels_for(0.125) == (16, 32, 64, 128)
    with pytest.raises(ValueError, match="multiple of 16"):
        ConvEncoder(1, 28)
