"""molshape.latent.expost: the one ex-post GMM (grammar and image models)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.mixture import GaussianMixture

from molshape.latent.expost import ExPostGMM


def blobs(n: int = 600, d: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[0.0] * d, [4.0] * d, [-4.0, 4.0, 0.0][:d]])
    return centers[torch.arange(n) % 3] + torch.randn(n, d, generator=g)


def test_fit_is_sklearns_and_predict_agrees():
    z = blobs()
    gmm = ExPostGMM.fit(z, 3, seed=0)
    ref = GaussianMixture(3, covariance_type="full", random_state=0, reg_covar=1e-5).fit(z.double().numpy())
    assert np.allclose(gmm.means.numpy(), ref.means_)
    assert (gmm.predict(z) == ref.predict(z.double().numpy())).mean() > 0.999


def test_samples_follow_the_torch_generator():
    gmm = ExPostGMM.fit(blobs(), 3, seed=0)
    a = gmm.sample(50, torch.Generator().manual_seed(1))
    b = gmm.sample(50, torch.Generator().manual_seed(1))
    c = gmm.sample(50, torch.Generator().manual_seed(2))
    assert a.shape == (50, 3) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
