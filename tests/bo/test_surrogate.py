"""molshape.bo.surrogate: exact and sparse variational GPs fit a known function; metrics are right."""

from __future__ import annotations

import math

import pytest
import torch

from molshape.bo.surrogate import SurrogateConfig, evaluate_surrogate, fit_surrogate, lengthscales, subset_indices




def f(X: torch.Tensor) -> torch.Tensor:
    """Depends on the first 2 of the inputs only."""
    return (torch.sin(5 * X[:, 0]) + 2 * (X[:, 1] - 0.5) ** 2).unsqueeze(-1)


def data(n: int, d: int = 6, seed: int = 0, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g, dtype=dtype)
    return X, f(X) + 0.01 * torch.randn(n, 1, generator=g, dtype=dtype)


@pytest.mark.parametrize("kind", ["exact", "svgp"])
def test_fit_predicts_held_out_points(kind):
    X, Y = data(300)
    Xt, Yt = data(200, seed=1)
    model = fit_surrogate(X, Y, SurrogateConfig(kind=kind, inducing=40), torch.Generator().manual_seed(0))
    m = evaluate_surrogate(model, Xt, Yt)
    assert m["rmse"] < 0.25 * Yt.std().item()  # far better than predicting the mean
    assert m["loglik"] > 0.0  # sharp and calibrated on a 0.01-noise function
    ls = lengthscales(model)
    assert ls.shape == (6,) and ls[:2].max() < ls[2:].min()  # ARD finds the two relevant inputs


def test_svgp_minibatch_adam_path():
    X, Y = data(400)
    Xt, Yt = data(200, seed=1)
    cfg = SurrogateConfig(kind="svgp", inducing=20, full_batch_max=100, epochs=60, lr=0.05)
    model = fit_surrogate(X, Y, cfg, torch.Generator().manual_seed(0))
    assert evaluate_surrogate(model, Xt, Yt)["rmse"] < 0.5 * Yt.std().item()


def test_metrics_against_hand_computation():
    X, Y = data(50)
    model = fit_surrogate(X, Y, SurrogateConfig(kind="exact"))
    Xt, Yt = data(7, seed=2)
    post = model.posterior(Xt, observation_noise=True)
    mu, var = post.mean[:, 0], post.variance[:, 0]
    rmse = math.sqrt(((Yt[:, 0] - mu) ** 2).mean().item())
    ll = torch.distributions.Normal(mu, var.sqrt()).log_prob(Yt[:, 0]).mean().item()
    m = evaluate_surrogate(model, Xt, Yt, batch_size=3)
    assert m["rmse"] == pytest.approx(rmse, rel=1e-9) and m["loglik"] == pytest.approx(ll, rel=1e-9)
    assert math.isnan(evaluate_surrogate(model, Xt[:0], Yt[:0])["rmse"])


def test_auto_and_exact_subset():
    y = torch.arange(10.0)
    idx = subset_indices(y, 4, torch.Generator().manual_seed(0))
    assert len(idx) == 4 and {9, 8} <= set(idx.tolist()) and len(set(idx.tolist())) == 4
    assert len(subset_indices(y, 20)) == 10
    X, Y = data(120)
    model = fit_surrogate(X, Y, SurrogateConfig(kind="auto", exact_max=60))
    assert type(model).__name__ == "SingleTaskVariationalGP"
    model = fit_surrogate(X, Y, SurrogateConfig(kind="exact", exact_max=60))
    assert model.train_inputs[0].shape == (60, 6)


def test_bad_inputs():
    X, Y = data(10)
    with pytest.raises(ValueError, match="n x 1"):
        fit_surrogate(X, Y[:, 0])
    Y[3] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        fit_surrogate(X, Y)


def test_floor_quantile_keeps_a_long_lower_tail_from_setting_the_fit():
    # a few points score -1000 (huge prior samples under penalized logP): with the floor the
    # GP still fits the smooth function where it matters (the upper half), without it it cannot
    X, Y = data(200)
    Y[:10] = -1000.0
    Xt, Yt = data(300, seed=1)
    top = Yt[:, 0] > Yt[:, 0].median()
    err = {}
    for q in (None, 0.1):
        model = fit_surrogate(X, Y, SurrogateConfig(kind="exact", floor_quantile=q), torch.Generator().manual_seed(0))
        err[q] = evaluate_surrogate(model, Xt[top], Yt[top])["rmse"]
    assert err[0.1] < 0.2 < err[None]
    with pytest.raises(ValueError, match="floor_quantile"):
        SurrogateConfig(floor_quantile=1.0)
