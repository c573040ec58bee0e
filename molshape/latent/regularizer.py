"""GMM-DAE latent regularizer: a Gaussian-mixture prior and the KS + covariance losses.

Shapes the latent codes of a deterministic autoencoder into an equal-weight Gaussian
mixture (Saseendran et al., "Shape your Space", NeurIPS 2021). The module knows nothing
of grammars or images: everything is a function of a latent batch ``z [N x d]`` and a
:class:`GMMPrior`. Both the grammar and the image models use it.

Prior (equal weights 1/K, shared isotropic std s, centers mu_k in R^d):

    p(z) = (1/K) sum_k N(z; mu_k, s^2 I)

Closed forms used here:

- marginal CDF of dimension j:   F_j(t) = (1/K) sum_k Phi((t - mu_kj) / s)
- covariance (law of total variance, mu_bar = (1/K) sum_k mu_k):
      Cov[z] = s^2 I + (1/K) sum_k (mu_k - mu_bar)(mu_k - mu_bar)^T
- log density:  log p(z) = logsumexp_k(-|z - mu_k|^2 / (2 s^2)) - log K - (d/2) log(2 pi s^2)
- clustering:   assign(z) = argmax_k N(z; mu_k, s^2 I) = argmin_k |z - mu_k|
  (equal weights and a shared std make the most likely component the nearest center).

Losses on a batch z_1..z_N:

- KS: sort each dimension; the empirical CDF at the i-th sorted value z_(i),j is i/N.
      L_KS = mean_{i,j} (F_j(z_(i),j) - i/N)^2
- CV: empirical covariance S = (1/N) sum_i (z_i - z_bar)(z_i - z_bar)^T.
      L_CV = mean_{a,b} (S_ab - Cov[z]_ab)^2
- Weights: lambda = 1 / E[L] over batches of the training batch size drawn from the
  prior itself (64 batches by default), so each weighted term is about 1 when the
  latents follow the prior.

Center layouts: ``standard`` (K = 1, mu = 0: the N(0, I) prior of a plain VAE),
``basis`` (mu_k = e_(k mod d), the public GMM-DAE image code: with s = 1 the means are
only sqrt(2) = 1.41 std apart and the modes overlap), ``onehot`` (mu_k = c e_k with
``center_scale`` c = 10 by default, K <= d: the authors' later Robust_GMM_DAE code; means
14.1 std apart), ``spread`` (scrambled Sobol points mapped through the inverse normal
CDF, normalised to unit length, then doubled until the minimum pairwise distance is >= 6;
deterministic given ``seed``), or user-given ``centers``. ``center_scale`` multiplies the
centres of any named layout (default 1, except 10 for ``onehot``).

Why ``onehot`` suits KS + CV: each marginal must put (K-1)/K of its mass near 0 and 1/K
near c, and the covariance must be diagonal, so E[z_i z_j] = mu-part only; a latent with
two high coordinates would add a positive cross term. Marginals plus covariance thus pin
every latent to one component. For ``spread`` (random directions) they do not: latents can
satisfy both while sitting between the modes (see :mod:`molshape.latent.diagnostics`).

All losses are vectorised over batch, dimensions and components, differentiable, and
computed in at least float32 with autocast disabled, so they are safe under mixed
precision.

Example:
    >>> prior = GMMPrior(dim=10, n_components=10, layout="spread")
    >>> reg = GMMRegularizer(prior, batch_size=100)
    >>> z, k = prior.sample(100)
    >>> terms = reg(z)  # {"ks": ~1, "cv": ~1}
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from molshape.latent.prior import LAYOUTS, GMMPrior, _compute_dtype, _full_precision, spread_centers

__all__ = ["LAYOUTS", "GMMPrior", "spread_centers", "ks_loss", "cov_loss", "ks_distance", "estimate_weights",
           "GMMRegularizer", "MAX_CHUNK_ELEMENTS"]

#: elements (batches x N x K x d) estimate_weights evaluates per chunk
MAX_CHUNK_ELEMENTS = 2**25


# -- losses -----------------------------------------------------------------------
def _check_latents(z: Tensor, prior: GMMPrior, name: str = "z") -> None:
    if z.dim() != 2 or z.shape[1] != prior.dim:
        raise ValueError(f"{name} must be N x {prior.dim} latents, got shape {tuple(z.shape)}")
    if z.shape[0] < 1:
        raise ValueError(f"{name} is an empty batch")


def _ks_terms(z: Tensor, prior: GMMPrior) -> tuple[Tensor, Tensor]:
    """Model CDF at the sorted latents and the empirical CDF i/N, both ``[... x N x d]``."""
    dtype = _compute_dtype(z, prior.centers)
    n = z.shape[-2]
    with _full_precision(z.device):
        z_sorted = torch.sort(z.to(dtype), dim=-2).values
        model_cdf = prior.marginal_cdf(z_sorted)
        ecdf = torch.arange(1, n + 1, dtype=dtype, device=z.device) / n
    return model_cdf, ecdf.unsqueeze(-1)


def _ks_batched(z: Tensor, prior: GMMPrior) -> Tensor:
    """KS loss per batch: ``z [... x N x d] -> [...]``."""
    model_cdf, ecdf = _ks_terms(z, prior)
    return (model_cdf - ecdf).pow(2).mean(dim=(-2, -1))


def _cov_batched(z: Tensor, prior: GMMPrior) -> Tensor:
    """Covariance loss per batch: ``z [... x N x d] -> [...]``."""
    dtype = _compute_dtype(z, prior.centers)
    with _full_precision(z.device):
        z = z.to(dtype)
        zc = z - z.mean(dim=-2, keepdim=True)
        emp = zc.transpose(-2, -1) @ zc / z.shape[-2]  # [..., d, d], biased (divide by N)
        return (emp - prior.covariance().to(dtype)).pow(2).mean(dim=(-2, -1))


def ks_loss(z: Tensor, prior: GMMPrior) -> Tensor:
    """Mean squared gap between the prior marginal CDFs and the empirical CDFs.

    Args:
        z: ``N x d`` latents.
        prior: the target mixture.

    Returns:
        Scalar L_KS = mean_{i,j} (F_j(z_(i),j) - i/N)^2 (at least float32).
    """
    _check_latents(z, prior)
    return _ks_batched(z, prior)


def cov_loss(z: Tensor, prior: GMMPrior) -> Tensor:
    """Mean squared gap between the batch covariance (divide by N) and the prior's.

    Args:
        z: ``N x d`` latents.
        prior: the target mixture.

    Returns:
        Scalar L_CV = mean_{a,b} (S_ab - Cov_ab)^2 (at least float32).
    """
    _check_latents(z, prior)
    return _cov_batched(z, prior)


def ks_distance(z: Tensor, prior: GMMPrior) -> Tensor:
    """``[d]`` Kolmogorov-Smirnov statistic sup_t |F_emp(t) - F_j(t)| of each dimension."""
    _check_latents(z, prior)
    model_cdf, ecdf = _ks_terms(z, prior)
    n = z.shape[-2]
    # The empirical CDF jumps from (i-1)/N to i/N at the i-th sorted value: check both sides.
    gap = torch.maximum(ecdf - model_cdf, model_cdf - (ecdf - 1.0 / n))
    return gap.amax(dim=-2)


@torch.no_grad()
def estimate_weights(
    prior: GMMPrior,
    batch_size: int,
    n_batches: int = 64,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """lambda_KS and lambda_CV as 1 / E[loss] over batches drawn from the prior itself.

    All ``n_batches x batch_size`` latents are drawn at once and the losses are computed
    with one batched sort and one batched matmul.

    Args:
        prior: the target mixture.
        batch_size: training batch size N (the expected losses depend on it).
        n_batches: number of prior batches averaged.
        generator: random source; ``None`` uses a private CPU generator seeded 0, so the
            weights are reproducible, equal on every device, and the global RNG untouched.

    Returns:
        ``(lambda_ks, lambda_cv)`` as Python floats.
    """
    if batch_size < 2 or n_batches < 1:
        raise ValueError(f"estimate_weights: need batch_size >= 2 and n_batches >= 1, got {batch_size}, {n_batches}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    z, _ = prior.sample(n_batches * batch_size, generator=generator)
    z = z.view(n_batches, batch_size, prior.dim)
    # The KS term materialises [batches x N x K x d]; bound it (~128 MB in float32).
    chunk = max(1, MAX_CHUNK_ELEMENTS // (batch_size * prior.n_components * prior.dim))
    ks = torch.cat([_ks_batched(zc, prior) for zc in z.split(chunk)]).mean().item()
    cv = _cov_batched(z, prior).mean().item()
    return 1.0 / ks, 1.0 / cv


class GMMRegularizer(nn.Module):
    """KS + covariance regularizer with weights estimated once from the prior.

    The weights are buffers: they save with the model and ``load_state_dict`` restores
    them exactly (pass ``weights`` to skip the estimate when rebuilding).

    Args:
        prior: the target mixture (a submodule, so its centers save too).
        batch_size: training batch size the weights are estimated for.
        n_batches: prior batches averaged by :func:`estimate_weights`.
        weights: optional ``(lambda_ks, lambda_cv)`` to use instead of estimating.
        generator: random source for the estimate (default: seeded, see
            :func:`estimate_weights`).
    """

    lambda_ks: Tensor
    lambda_cv: Tensor

    def __init__(
        self,
        prior: GMMPrior,
        batch_size: int,
        n_batches: int = 64,
        weights: tuple[float, float] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.prior = prior
        self.batch_size = batch_size
        if weights is None:
            weights = estimate_weights(prior, batch_size, n_batches, generator)
        dtype = prior.centers.dtype
        self.register_buffer("lambda_ks", torch.tensor(float(weights[0]), dtype=dtype, device=prior.centers.device))
        self.register_buffer("lambda_cv", torch.tensor(float(weights[1]), dtype=dtype, device=prior.centers.device))

    def extra_repr(self) -> str:
        return f"batch_size={self.batch_size}, lambda_ks={self.lambda_ks.item():.4g}, lambda_cv={self.lambda_cv.item():.4g}"

    def forward(self, z: Tensor) -> dict[str, Tensor]:
        """Weighted terms ``{"ks": lambda_ks * L_KS, "cv": lambda_cv * L_CV}`` for ``z [N x d]``."""
        return {
            "ks": self.lambda_ks * ks_loss(z, self.prior),
            "cv": self.lambda_cv * cov_loss(z, self.prior),
        }

    @torch.no_grad()
    def statistics(self, z: Tensor) -> dict[str, Tensor]:
        """Unweighted monitoring values for ``z [N x d]``.

        Returns:
            ``ks`` and ``cv`` (raw losses, scalars), ``ks_distance [d]`` (KS statistic per
            dimension) and ``ks_distance_max`` (its maximum).
        """
        dist = ks_distance(z, self.prior)
        return {
            "ks": ks_loss(z, self.prior),
            "cv": cov_loss(z, self.prior),
            "ks_distance": dist,
            "ks_distance_max": dist.max(),
        }
