"""Gaussian-process surrogates of a score over unit-cube latents (BoTorch), and their test fit.

Two choices, both fitted with ``fit_gpytorch_mll`` in double precision:

* ``svgp``: GVAE's choice, a sparse variational GP (``SingleTaskVariationalGP``) with
  ``inducing`` learned inducing points on all training points, trained on the variational
  ELBO with Adam (``steps`` full-batch steps through ``fit_gpytorch_mll`` up to
  ``full_batch_max`` points, else minibatches of ``10 x inducing`` points like GVAE's own
  ADAM training).
* ``exact``: an exact ``SingleTaskGP`` on at most ``exact_max`` points: the best half
  by score plus a random half of the rest. Expected improvement only needs the model to
  be right near the top, and an exact GP on 2,000 points fits in seconds.

``auto`` uses ``exact`` when all points fit, else ``svgp``. Outcomes are standardised
inside the model (``Standardize``), so posteriors come back in score units. With
``floor_quantile`` the scores below that quantile are raised to it first, so a long lower
tail (invalid-looking, huge molecules of prior samples) does not set the GP's scale.

Example:
    >>> model = fit_surrogate(X, Y, SurrogateConfig(kind="exact"))  # doctest: +SKIP
    >>> metrics = evaluate_surrogate(model, X_test, Y_test)  # {"rmse": ..., "loglik": ...}  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from functools import partial

import gpytorch
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.optim.fit import fit_gpytorch_mll_torch
from botorch.models import SingleTaskGP, SingleTaskVariationalGP
from botorch.models.model import Model
from botorch.models.transforms.outcome import Standardize
from gpytorch.mlls import ExactMarginalLogLikelihood, VariationalELBO
from torch import Tensor

from molshape.bo.config import SurrogateConfig

log = logging.getLogger(__name__)


#: gpytorch switches from Cholesky to CG/Lanczos above 800 points by default, which is
#: several times slower (and noisier) for the few-thousand-point exact GPs used here.
MAX_CHOLESKY = 20_000


def linear_algebra():
    """Context for fitting and querying surrogates: exact Cholesky up to ``MAX_CHOLESKY`` points."""
    return gpytorch.settings.max_cholesky_size(MAX_CHOLESKY)


def resolve_kind(cfg: SurrogateConfig, n: int) -> str:
    if cfg.kind != "auto":
        return cfg.kind
    return "exact" if n <= cfg.exact_max else "svgp"


def fit_surrogate(X: Tensor, Y: Tensor, cfg: SurrogateConfig | None = None,
                  generator: torch.Generator | None = None) -> Model:
    """Fit a GP to ``Y [n x 1]`` at ``X [n x d]`` (unit cube, float64); returns it in eval mode.

    Args:
        generator: picks the random half of an exact GP's subset (CPU generator).
    """
    cfg = cfg or SurrogateConfig()
    if X.ndim != 2 or Y.shape != (X.shape[0], 1):
        raise ValueError(f"fit_surrogate: X must be n x d and Y n x 1, got {tuple(X.shape)} and {tuple(Y.shape)}")
    if not torch.isfinite(Y).all():
        raise ValueError("fit_surrogate: Y has non-finite values; replace invalid scores first")
    if cfg.floor_quantile is not None:
        Y = Y.clamp(min=float(torch.quantile(Y, cfg.floor_quantile)))
    kind = resolve_kind(cfg, X.shape[0])
    t0 = time.perf_counter()
    with linear_algebra():
        if kind == "exact":
            idx = subset_indices(Y[:, 0], cfg.exact_max, generator)
            model = SingleTaskGP(X[idx], Y[idx], outcome_transform=Standardize(m=1))
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        else:
            model = _fit_svgp(X, Y, cfg, generator)
    model.eval()
    used = model.train_inputs[0].shape[-2] if kind == "exact" else X.shape[0]
    log.info("fitted %s GP on %d of %d points x %d dims in %.1f s", kind, used, X.shape[0], X.shape[1],
             time.perf_counter() - t0)
    return model


def subset_indices(y: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """Indices of the ``k // 2`` largest ``y`` plus a random sample of the rest (all if ``len(y) <= k``)."""
    n = y.shape[0]
    if n <= k:
        return torch.arange(n, device=y.device)
    order = torch.argsort(y, descending=True)
    top, rest = order[: k // 2], order[k // 2:]
    pick = torch.randperm(rest.shape[0], generator=generator)[: k - k // 2].to(y.device)
    return torch.cat([top, rest[pick]])


def _fit_svgp(X: Tensor, Y: Tensor, cfg: SurrogateConfig, generator: torch.Generator | None) -> Model:
    n = X.shape[0]
    m = min(cfg.inducing, n)
    # start the inducing points at a random subset of the data (cheap for 200k points,
    # unlike the default greedy variance reduction); they are learned afterwards
    start = X[torch.randperm(n, generator=generator)[:m].to(X.device)].clone()
    with warnings.catch_warnings():
        # Standardize is fitted once on all of Y here; the minibatch loop below reuses those
        # standardised targets, so the warning about per-minibatch updates does not apply
        warnings.filterwarnings("ignore", message="Using an outcome transform with `SingleTaskVariationalGP`")
        model = SingleTaskVariationalGP(X, Y, inducing_points=start, outcome_transform=Standardize(m=1))
    mll = VariationalELBO(model.likelihood, model.model, num_data=n)
    if n <= cfg.full_batch_max:
        # Adam for a fixed number of full-batch steps: scipy L-BFGS on the ELBO's many
        # variational parameters rarely converges and botorch then retries it 5 times
        fit_gpytorch_mll(mll, optimizer=fit_gpytorch_mll_torch, max_attempts=1,
                         optimizer_kwargs={"step_limit": cfg.steps,
                                           "optimizer": partial(torch.optim.Adam, lr=cfg.lr)})
        return model
    _adam_minibatches(model, mll, cfg, generator)
    return model


def _adam_minibatches(model: SingleTaskVariationalGP, mll: VariationalELBO, cfg: SurrogateConfig,
                      generator: torch.Generator | None) -> None:
    """Maximise the ELBO with Adam over minibatches of ``10 x inducing`` points."""
    X, y = model.model.train_inputs[0], model.model.train_targets  # y is standardised
    n, batch = X.shape[0], 10 * cfg.inducing
    mll.train()
    opt = torch.optim.Adam(mll.parameters(), lr=cfg.lr)
    for _ in range(cfg.epochs):
        perm = torch.randperm(n, generator=generator).to(X.device)
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss = -mll(model.model(X[idx]), y[idx])
            loss.backward()
            opt.step()
    mll.eval()


@torch.no_grad()
def evaluate_surrogate(model: Model, X: Tensor, Y: Tensor, batch_size: int = 2048) -> dict[str, float]:
    """Test RMSE and mean predictive log-likelihood (with observation noise) in score units.

    Args:
        X: ``n x d`` test inputs; Y: ``n x 1`` test scores.
    """
    if X.shape[0] == 0:
        return {"rmse": math.nan, "loglik": math.nan}
    means, variances = [], []
    with linear_algebra():
        for i in range(0, X.shape[0], batch_size):
            post = model.posterior(X[i:i + batch_size], observation_noise=True)
            means.append(post.mean[..., 0])
            variances.append(post.variance[..., 0])
    mean, var = torch.cat(means), torch.cat(variances).clamp_min(1e-12)
    err = Y[:, 0] - mean
    rmse = err.pow(2).mean().sqrt().item()
    loglik = (-0.5 * (math.log(2 * math.pi) + var.log() + err.pow(2) / var)).mean().item()
    return {"rmse": rmse, "loglik": loglik}


def lengthscales(model: Model) -> Tensor | None:
    """ARD lengthscales ``[d]`` of the model's kernel, if it has one."""
    gp = getattr(model, "model", model)  # SingleTaskVariationalGP wraps an ApproximateGP
    kernel = gp.covar_module
    while kernel is not None and getattr(kernel, "lengthscale", None) is None:
        kernel = getattr(kernel, "base_kernel", None)
    return None if kernel is None else kernel.lengthscale.detach().reshape(-1)
