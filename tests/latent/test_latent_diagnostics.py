"""In-mode diagnostics: exact prior samples score ~99 % inside and uniform occupancy; shifted,
scaled or collapsed latents score low."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from molshape.latent.diagnostics import chi_mean, chi_quantile, latent_diagnostics, nearest_distances
from molshape.latent.regularizer import GMMPrior


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dim", [1, 2, 10, 56])
def test_chi_closed_forms_match_scipy(dim: int) -> None:
    for level in (0.5, 0.9, 0.99):
        assert chi_quantile(level, dim) == pytest.approx(stats.chi.ppf(level, dim), rel=1e-9)
    assert chi_mean(dim) == pytest.approx(stats.chi.mean(dim), rel=1e-12)
    with pytest.raises(ValueError, match="level"):
        chi_quantile(1.0, dim)


@pytest.mark.parametrize("layout,std", [("onehot", 1.0), ("spread", 1.0), ("onehot", 0.5), ("standard", 2.0)])
def test_prior_sample_is_inside_and_uniform(layout: str, std: float) -> None:
    k = 1 if layout == "standard" else 10
    prior = GMMPrior(10, k, std=std, layout=layout)
    z, _ = prior.sample(20000, generator=gen(0))
    d = latent_diagnostics(z, prior)
    # 99 % of each component's samples lie within its radius; binomial sd is 0.07 %
    assert d["inside_share"] == pytest.approx(0.99, abs=0.004)
    assert d["radius"] == pytest.approx(stats.chi.ppf(0.99, 10))
    assert d["mean_nearest_distance"] == pytest.approx(d["expected_nearest_distance"], rel=0.01)
    assert len(d["occupancy"]) == k and sum(d["occupancy"]) == pytest.approx(1.0)
    assert d["occupancy_tv"] < 0.02  # multinomial noise of 20,000 draws over 10 cells
    assert 0.9 < d["occupancy_min_ratio"] <= 1.0 <= d["occupancy_max_ratio"] < 1.1
    assert d["n"] == 20000


def test_overlapping_basis_layout_is_at_least_level() -> None:
    # Means 1.41 std apart: the nearest centre is often another component's, so more than
    # 99 % lie inside some radius and nearest distances are shorter than chi_d.
    prior = GMMPrior(10, 10, layout="basis")
    z, k = prior.sample(20000, generator=gen(1))
    d = latent_diagnostics(z, prior)
    assert d["inside_share"] >= 0.99
    assert d["mean_nearest_distance"] < d["expected_nearest_distance"]
    assert (prior.assign(z) == k).double().mean() < 0.4  # nearest its own centre only ~34 % of the time


def test_shifted_scaled_and_collapsed_latents_score_low() -> None:
    prior = GMMPrior(10, 10, layout="onehot")
    z, _ = prior.sample(5000, generator=gen(2))
    # halfway between two modes: 7.07 std from both, far beyond the 4.82 radius
    between = 0.5 * (prior.centers[0] + prior.centers[1]) + torch.randn(5000, 10, generator=gen(3))
    d = latent_diagnostics(between, prior)
    assert d["inside_share"] < 0.05 and d["mean_nearest_distance"] > 6.0
    shifted = latent_diagnostics(z + 3.0, prior)
    assert shifted["inside_share"] < 0.1 and shifted["mean_nearest_distance"] > 2 * shifted["expected_nearest_distance"]
    scaled = latent_diagnostics(2.0 * (z - z.mean(0)) + z.mean(0), prior)  # twice too wide
    assert scaled["inside_share"] < 0.2
    one_mode = prior.sample_component(3, 2000, generator=gen(4))
    c = latent_diagnostics(one_mode, prior)
    assert c["inside_share"] > 0.98  # in a mode, but
    assert c["occupancy_tv"] == pytest.approx(0.9, abs=1e-9) and c["occupancy_max_ratio"] == pytest.approx(10.0)
    assert c["occupancy_min_ratio"] == 0.0


def test_nearest_distances_and_validation() -> None:
    prior = GMMPrior(3, 3, std=2.0, layout="onehot", center_scale=4.0)
    z = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 2.0], [0.0, 0.0, 0.0]])
    dist, k = nearest_distances(z, prior)
    torch.testing.assert_close(dist, torch.tensor([0.0, 1.0, 2.0]), check_dtype=False)  # std units
    assert k[:2].tolist() == [0, 1]
    d = latent_diagnostics(z, prior)
    assert d["inside_share"] == 1.0 and math.isclose(d["mean_nearest_distance"], 1.0, rel_tol=1e-6)
    with pytest.raises(ValueError, match="N x 3"):
        latent_diagnostics(torch.zeros(5, 4), prior)
    with pytest.raises(ValueError, match="empty"):
        latent_diagnostics(torch.zeros(0, 3), prior)
    with pytest.raises(ValueError, match="non-finite"):
        latent_diagnostics(torch.tensor([[math.nan, 0.0, 0.0]]), prior)


def test_module_imports_only_the_regularizer() -> None:
    import ast
    import inspect

    import molshape.latent.diagnostics as mod

    tree = ast.parse(inspect.getsource(mod))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | \
        {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert {m for m in imported if m and m.startswith("molshape")} == {"molshape.latent.regularizer"}
