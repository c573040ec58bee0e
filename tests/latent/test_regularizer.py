"""Tests for molshape.latent.regularizer: closed forms, loss calibration, gradients, devices."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from scipy import stats

from molshape.latent import regularizer
from molshape.latent.regularizer import (
    GMMPrior,
    GMMRegularizer,
    cov_loss,
    estimate_weights,
    ks_distance,
    ks_loss,
    spread_centers,
)

DTYPES = [torch.float32, torch.float64]
# Corners of a square, min distance 6 like the spread layout. In 2-D these are the
# centers for which marginals + covariance pin the joint: marginals fix each half-plane
# to 1/2, the zero cross-covariance then fixes every quadrant to 1/4.
SQUARE = [[-3.0, -3.0], [-3.0, 3.0], [3.0, -3.0], [3.0, 3.0]]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def reference_ks(z: np.ndarray, centers: np.ndarray, std: float) -> float:
    """Textbook KS loss with scipy's normal CDF, one component at a time."""
    n, _ = z.shape
    zs = np.sort(z, axis=0)
    cdf = np.zeros_like(zs)
    for mu in centers:
        cdf += stats.norm.cdf((zs - mu) / std)
    cdf /= len(centers)
    ecdf = np.arange(1, n + 1)[:, None] / n
    return float(np.mean((cdf - ecdf) ** 2))


def reference_cov(z: np.ndarray, centers: np.ndarray, std: float) -> float:
    emp = np.cov(z, rowvar=False, bias=True)
    prior = std**2 * np.eye(z.shape[1]) + np.cov(centers, rowvar=False, bias=True).reshape(z.shape[1], -1)
    return float(np.mean((emp - prior) ** 2))


# -- layouts ---------------------------------------------------------------------
def test_layouts() -> None:
    basis = GMMPrior(3, 5, layout="basis")
    expected = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=torch.float32)
    assert torch.equal(basis.centers, expected)

    std = GMMPrior(7)
    assert std.centers.shape == (1, 7) and torch.all(std.centers == 0)
    torch.testing.assert_close(std.covariance(), torch.eye(7))

    for d, k in [(2, 4), (10, 10), (56, 10), (64, 20)]:
        c = spread_centers(d, k)
        assert c.shape == (k, d)
        assert torch.pdist(c).min() >= 6.0
        # Doubling only: every center has the same norm 2^m with 2^m < 6 * 2 / min unit dist.
        norms = c.norm(dim=1)
        torch.testing.assert_close(norms, torch.full_like(norms, norms[0].item()))
        assert math.log2(norms[0].item()).is_integer()
        assert torch.equal(c, spread_centers(d, k)), "spread layout must be deterministic"
    assert not torch.equal(spread_centers(10, 10, seed=0), spread_centers(10, 10, seed=1))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="standard"):
        GMMPrior(4, 3, layout="standard")
    with pytest.raises(ValueError, match="unknown layout"):
        GMMPrior(4, 3, layout="grid")
    with pytest.raises(ValueError, match="centers must be"):
        GMMPrior(4, centers=torch.zeros(3, 5))
    with pytest.raises(ValueError, match="std"):
        GMMPrior(4, std=0.0)
    with pytest.raises(ValueError, match="custom"):
        GMMPrior(4, layout="custom")
    prior = GMMPrior(4)
    with pytest.raises(ValueError, match="latents"):
        ks_loss(torch.zeros(10, 3), prior)
    with pytest.raises(ValueError, match="latents"):
        cov_loss(torch.zeros(10), prior)
    with pytest.raises(ValueError, match="marginal_cdf"):
        prior.marginal_cdf(torch.zeros(10, 3))


def test_config_rebuilds() -> None:
    for prior in [GMMPrior(5, 7, std=0.5, layout="spread", seed=3), GMMPrior(2, centers=SQUARE), GMMPrior(3, 4, layout="basis")]:
        cfg = prior.config()
        assert all(isinstance(v, (int, float, str, list)) for v in cfg.values())
        again = GMMPrior(**cfg)
        assert torch.equal(again.centers, prior.centers) and torch.equal(again.std, prior.std)


# -- the scaled one-hot layout (Robust_GMM_DAE: 10 e_k, std 1) -------------------
def test_onehot_layout_centres_and_distances() -> None:
    prior = GMMPrior(10, 10, layout="onehot")
    assert prior.center_scale == 10.0
    torch.testing.assert_close(prior.centers, 10.0 * torch.eye(10))
    # every pair of means is 10 sqrt(2) = 14.1 std apart (basis: sqrt(2) = 1.41 std)
    torch.testing.assert_close(torch.pdist(prior.centers), torch.full((45,), 10 * math.sqrt(2)))
    torch.testing.assert_close(torch.pdist(GMMPrior(10, 10, layout="basis").centers), torch.full((45,), math.sqrt(2)))
    # fewer components than dimensions: the first K axes; another scale; std stays separate
    small = GMMPrior(6, 4, std=0.5, layout="onehot", center_scale=3.0)
    expected = torch.zeros(4, 6)
    expected[range(4), range(4)] = 3.0
    torch.testing.assert_close(small.centers, expected)
    assert small.std.item() == 0.5
    # center_scale scales the other named layouts too; None keeps them as they were
    torch.testing.assert_close(GMMPrior(5, 5, layout="basis", center_scale=10.0).centers, 10.0 * torch.eye(5))
    torch.testing.assert_close(GMMPrior(10, 10, layout="spread", center_scale=0.5).centers,
                               0.5 * spread_centers(10, 10).float())
    assert "center_scale" not in GMMPrior(10, 10, layout="spread").config()  # old configs unchanged


def test_onehot_bad_arguments_and_config() -> None:
    with pytest.raises(ValueError, match="n_components <= dim"):
        GMMPrior(5, 10, layout="onehot")
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="center_scale"):
            GMMPrior(10, 10, layout="onehot", center_scale=bad)
    with pytest.raises(ValueError, match="center_scale"):
        GMMPrior(2, centers=SQUARE, center_scale=2.0)
    prior = GMMPrior(8, 6, std=0.8, layout="onehot", center_scale=7.0)
    again = GMMPrior(**prior.config())
    assert torch.equal(again.centers, prior.centers) and again.config() == prior.config()
    buf = io.BytesIO()
    torch.save(prior.state_dict(), buf)
    buf.seek(0)
    fresh = GMMPrior(8, 6, std=0.8, layout="onehot", center_scale=7.0)
    fresh.load_state_dict(torch.load(buf))
    assert torch.equal(fresh.centers, prior.centers)


@pytest.mark.parametrize("dtype", DTYPES)
def test_onehot_marginal_cdf_and_covariance_closed_forms(dtype: torch.dtype) -> None:
    d = k = 10
    prior = GMMPrior(d, k, layout="onehot").to(dtype)
    # Closed forms by hand: F_j(t) = (K-1)/K Phi(t) + 1/K Phi(t - 10) per dimension;
    # Cov = I + 100 (diag(1/K) - 1/K^2 11^T) = I + 9 on the diagonal, -1 off it.
    t = torch.linspace(-4, 14, 37, dtype=dtype).unsqueeze(1).expand(-1, d)
    phi = torch.distributions.Normal(torch.tensor(0.0, dtype=dtype), torch.tensor(1.0, dtype=dtype)).cdf
    torch.testing.assert_close(prior.marginal_cdf(t), 0.9 * phi(t) + 0.1 * phi(t - 10.0))
    cov = prior.covariance()
    torch.testing.assert_close(cov, torch.eye(d, dtype=dtype) * 10.0 - (1 - torch.eye(d, dtype=dtype)))
    # ... and against Monte Carlo: DKW bound on the marginals, 5 standard errors on Cov
    n = 100_000
    z, comp = prior.sample(n, gen(20))
    assert ks_distance(z, prior).max() < 0.006
    zc = (z - z.mean(0)).double()
    prods = zc[:, :, None] * zc[:, None, :]
    assert torch.all((prods.mean(0) - cov.double()).abs() < 5 * prods.std(0) / math.sqrt(n))
    # 14.1 std apart: exact samples are nearest their own centre (a 7-std excursion otherwise)
    assert (prior.assign(z) == comp).all()
    # the public code's basis layout: nearest-own-centre only about a third of the time
    basis = GMMPrior(d, k, layout="basis").to(dtype)
    zb, cb = basis.sample(n, gen(21))
    assert 0.30 < (basis.assign(zb) == cb).double().mean() < 0.38


def test_onehot_weighted_losses_calibrated() -> None:
    batch = 100
    prior = GMMPrior(10, 10, layout="onehot")
    reg = GMMRegularizer(prior, batch)
    draws = prior.sample(64 * batch, gen(22))[0].view(64, batch, 10)
    mean = torch.stack([torch.stack(list(reg(zb).values())) for zb in draws]).mean(0)
    assert torch.all((mean > 0.7) & (mean < 1.3)), mean
    # two high coordinates (a latent between two modes) breaks the zero-mean cross terms
    between = 0.5 * (prior.centers[0] + prior.centers[1]) + torch.randn(batch, 10, generator=gen(23))
    assert sum(reg(between).values()) > 10 * mean.sum()


# -- closed forms against Monte Carlo ---------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_marginal_cdf_and_covariance_match_samples(dtype: torch.dtype) -> None:
    prior = GMMPrior(5, 10, std=0.7, layout="spread").to(dtype)
    n = 100_000
    z, k = prior.sample(n, gen(0))
    assert z.dtype == dtype and k.dtype == torch.long

    # Empirical CDF at the sorted samples vs the closed form. DKW: P(sup gap > eps) <=
    # 2 exp(-2 n eps^2) = 2 exp(-7.2) ~ 1.5e-3 per dimension at eps = 0.006.
    dist = ks_distance(z, prior)
    assert dist.shape == (5,) and dist.max() < 0.006

    # Entrywise Monte-Carlo standard error of the covariance, estimated from the same
    # samples: se_ab = std(zc_a zc_b) / sqrt(n); allow 5 standard errors.
    zc = (z - z.mean(0)).double()
    prods = zc[:, :, None] * zc[:, None, :]
    emp = prods.mean(0)
    se = prods.std(0) / math.sqrt(n)
    assert torch.all((emp - prior.covariance().double()).abs() < 5 * se)

    # Component frequencies: binomial sd sqrt(n p (1-p)) = 95; allow ~5 sd.
    counts = torch.bincount(k, minlength=10)
    assert (counts - n / 10).abs().max() < 500

    zk = prior.sample_component(3, 20_000, gen(1))
    # Mean of 20,000 draws with std 0.7: se 0.005 per coordinate.
    torch.testing.assert_close(zk.mean(0), prior.centers[3], atol=0.025, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_prob_and_assign(dtype: torch.dtype) -> None:
    prior = GMMPrior(4, 6, std=0.8, layout="spread").to(dtype)
    z, k = prior.sample(2000, gen(2))
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.ones(6, dtype=dtype)),
        torch.distributions.Independent(torch.distributions.Normal(prior.centers, prior.std), 1),
    )
    torch.testing.assert_close(prior.log_prob(z), mix.log_prob(z))
    # Centers >= 6 = 7.5 std apart: misassignment needs a 3.75-std excursion towards a
    # neighbour, probability < 5 * 1e-4 per point.
    assert (prior.assign(z) == k).float().mean() > 0.99


@pytest.mark.parametrize("dtype", DTYPES)
def test_losses_match_reference(dtype: torch.dtype) -> None:
    prior = GMMPrior(6, 5, std=1.3, layout="spread").to(dtype)
    z = torch.randn(300, 6, generator=gen(3), dtype=dtype) * 4 + 1
    c, s = prior.centers.double().numpy(), prior.std.item()
    tol = dict(rel=1e-4, abs=1e-7) if dtype == torch.float32 else dict(rel=1e-10, abs=1e-14)
    assert ks_loss(z, prior).item() == pytest.approx(reference_ks(z.double().numpy(), c, s), **tol)
    assert cov_loss(z, prior).item() == pytest.approx(reference_cov(z.double().numpy(), c, s), **tol)


# -- calibration: ~1 on the prior, much larger on wrong batches -------------------
CASES = [("standard", 1, 10), ("spread", 10, 10), ("spread", 10, 56)]


@pytest.mark.parametrize("layout,k,d", CASES)
def test_weighted_losses_calibrated(layout: str, k: int, d: int) -> None:
    batch = 500
    prior = GMMPrior(d, k, layout=layout)
    reg = GMMRegularizer(prior, batch)
    draws = prior.sample(32 * batch, gen(10))[0].view(32, batch, d)
    on_prior = torch.stack([torch.stack(list(reg(zb).values())) for zb in draws])  # [32, 2]
    # Fresh batches (the weights were estimated from seed 0): each term averages ~1; the
    # mean of 32 batches has a relative standard error of roughly 0.1.
    mean = on_prior.mean(0)
    assert torch.all((mean > 0.7) & (mean < 1.3)), mean

    z = draws[0]
    far = 10 * on_prior.sum(1).mean()
    wrong = {
        "shifted": z + 1.0,
        "scaled": 2.0 * z,
        "shrunk": 0.3 * z,
        "collapsed": z.mean(0) + 1e-3 * torch.randn(batch, d, generator=gen(11)),
    }
    if k > 1:
        wrong["single_mode"] = prior.sample_component(0, batch, gen(12))
        # Dimensions reversed: the modes move to the wrong places (a no-op for N(0, I)).
        wrong["permuted"] = z.flip(1)
    for name, zw in wrong.items():
        total = sum(reg(zw).values())
        assert total > far, f"{name}: {total:.3g} not > 10x prior level {far / 10:.3g}"
    # Shifting leaves the covariance unchanged: the KS term alone must catch it.
    assert reg(z + 1.0)["ks"] > far


def test_ks_needs_cov_for_correlations() -> None:
    """The poster's 2-D figure: right marginals, wrong correlations."""
    batch = 500
    reg = GMMRegularizer(GMMPrior(2), batch)
    x = torch.randn(batch, 2, generator=gen(20))
    a = x[:, 0]
    values = a.sort().values

    def with_marginal_a(score: torch.Tensor) -> torch.Tensor:
        """Gaussian copula: the values of ``a`` placed in the rank order of ``score``."""
        return values[score.argsort().argsort()]

    # Every case has exactly the sample ``a`` as both marginals, so the sorted columns
    # (all the KS term sees) are identical; only the dependence differs.
    cases = {
        "independent": torch.stack([a, with_marginal_a(x[:, 1])], dim=1),
        "diagonal": torch.stack([a, a], dim=1),  # (x, x): perfectly correlated
        "copula_0.8": torch.stack([a, with_marginal_a(0.8 * a + 0.6 * x[:, 1])], dim=1),
        "copula_-0.8": torch.stack([a, with_marginal_a(-0.8 * a + 0.6 * x[:, 1])], dim=1),
    }
    terms = {name: reg(z) for name, z in cases.items()}
    assert terms["independent"]["ks"] < 5.0 and terms["independent"]["cv"] < 5.0, terms["independent"]
    for name in ("diagonal", "copula_0.8", "copula_-0.8"):
        # The KS term cannot tell them from the independent (prior-like) batch at all...
        assert terms[name]["ks"].item() == pytest.approx(terms["independent"]["ks"].item(), rel=1e-6)
        # ...the covariance term can.
        assert terms[name]["cv"] > 10 * max(terms["independent"]["cv"].item(), 1.0), (name, terms[name])


# -- optimisation onto the prior ---------------------------------------------------
def mixture_marginal_cdf(prior: GMMPrior, j: int):
    def cdf(x: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(x, dtype=torch.float64).reshape(-1, 1).expand(-1, prior.dim)
        return prior.double().marginal_cdf(t)[:, j].numpy()

    return cdf


@pytest.fixture
def one_thread():
    """Tiny ops: intra-op threads only add synchronisation (and contend on shared CPUs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_gradient_descent_reaches_four_component_prior(one_thread: None) -> None:
    prior = GMMPrior(2, centers=SQUARE)
    reg = GMMRegularizer(prior, 2000)
    z = (0.1 * torch.randn(2000, 2, generator=gen(0))).requires_grad_()
    opt = torch.optim.Adam([z], lr=0.1)
    for _ in range(300):
        terms = reg(z)
        loss = terms["ks"] + terms["cv"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    z = z.detach()
    occupancy = torch.bincount(prior.assign(z), minlength=4).float() / len(z)
    assert torch.all((occupancy - 0.25).abs() < 0.025), occupancy
    ref = GMMPrior(**prior.config())
    for j in range(2):
        assert stats.kstest(z[:, j].double().numpy(), mixture_marginal_cdf(ref, j)).pvalue > 0.01


def test_gradcheck() -> None:
    prior = GMMPrior(3, 4, std=0.9, layout="spread").double()
    z = (torch.randn(12, 3, generator=gen(5), dtype=torch.float64) * 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: ks_loss(t, prior), (z,))
    assert torch.autograd.gradcheck(lambda t: cov_loss(t, prior), (z,))


# -- precision, autocast, devices, serialisation -----------------------------------
def test_float32_matches_float64_and_autocast() -> None:
    prior = GMMPrior(8, 10, layout="spread")
    z = prior.sample(400, gen(6))[0] * 1.5
    reg32 = GMMRegularizer(prior, 400, weights=(2.0, 3.0))
    ref = {k: v.item() for k, v in GMMRegularizer(GMMPrior(8, 10, layout="spread").double(), 400, weights=(2.0, 3.0))(z.double()).items()}
    out = reg32(z)
    for name in ("ks", "cv"):
        assert out[name].item() == pytest.approx(ref[name], rel=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = reg32(z.bfloat16())
    for name in ("ks", "cv"):
        assert auto[name].dtype == torch.float32
        # bf16 inputs carry ~3 significant digits; the loss itself is computed in float32.
        assert auto[name].item() == pytest.approx(ref[name], rel=0.05)


def test_dtype_movement_and_state_dict_round_trip() -> None:
    prior = GMMPrior(4, 3, std=0.5, layout="spread")
    reg = GMMRegularizer(prior, 64, generator=gen(7))
    reg.double()
    assert prior.centers.dtype == torch.float64 and prior.std.dtype == torch.float64
    assert reg.lambda_ks.dtype == torch.float64
    names = set(reg.state_dict())
    assert {"lambda_ks", "lambda_cv", "prior.centers", "prior.std"} <= names

    buf = io.BytesIO()
    torch.save(reg.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    rebuilt = GMMRegularizer(GMMPrior(**prior.config()), 64, weights=(1.0, 1.0)).double()
    rebuilt.load_state_dict(state)
    for key, value in reg.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key
    z = prior.sample(64, gen(8))[0]
    for name in ("ks", "cv"):
        assert torch.equal(rebuilt(z)[name], reg(z)[name])


def test_estimate_weights_deterministic_and_statistics(monkeypatch: pytest.MonkeyPatch) -> None:
    prior = GMMPrior(6, 4, layout="basis")
    w = estimate_weights(prior, 100)
    assert w == estimate_weights(prior, 100)
    assert w != estimate_weights(prior, 100, generator=gen(1))
    # Chunking the batches (memory bound) must not change the estimate.
    monkeypatch.setattr(regularizer, "MAX_CHUNK_ELEMENTS", 100 * 4 * 6 * 5)  # 5 batches per chunk
    assert estimate_weights(prior, 100) == pytest.approx(w, rel=1e-6)
    reg = GMMRegularizer(prior, 100, weights=w)
    z = prior.sample(100, gen(9))[0]
    stat = reg.statistics(z)
    assert stat["ks"].item() * w[0] == pytest.approx(reg(z)["ks"].item(), rel=1e-5)
    assert stat["ks_distance"].shape == (6,)
    # A KS statistic is a probability gap in [1/(2N), 1]; for a prior batch of 100 it is
    # below ~1.63 / sqrt(100) with 99 % probability per dimension.
    assert 0.005 <= stat["ks_distance_max"].item() < 0.2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_matches_cpu(dtype: torch.dtype) -> None:
    prior = GMMPrior(56, 10, layout="spread").to(dtype)
    z = (prior.sample(500, gen(0))[0] * 1.2).requires_grad_()
    reg = GMMRegularizer(prior, 500, weights=(10.0, 5.0))
    out = reg(z)
    (out["ks"] + out["cv"]).backward()
    reg_gpu = GMMRegularizer(GMMPrior(56, 10, layout="spread").to(dtype), 500, weights=(10.0, 5.0)).cuda()
    assert reg_gpu.prior.centers.is_cuda and reg_gpu.lambda_ks.is_cuda
    zg = z.detach().cuda().requires_grad_()
    out_g = reg_gpu(zg)
    (out_g["ks"] + out_g["cv"]).backward()
    rel = 1e-4 if dtype == torch.float32 else 1e-10
    for name in ("ks", "cv"):
        assert out_g[name].item() == pytest.approx(out[name].item(), rel=rel)
    torch.testing.assert_close(zg.grad.cpu(), z.grad, rtol=rel * 10, atol=1e-6 if dtype == torch.float32 else 1e-12)
    # The default estimate draws on the CPU: the same weights on every device.
    assert estimate_weights(reg_gpu.prior, 500) == pytest.approx(estimate_weights(prior, 500), rel=rel)
    # A CPU generator gives the same latents for a prior on the GPU.
    z_gpu = reg_gpu.prior.sample(100, gen(4))[0]
    assert z_gpu.is_cuda
    torch.testing.assert_close(z_gpu.cpu(), prior.sample(100, gen(4))[0])
