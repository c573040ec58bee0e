"""Do the latents actually follow the mixture prior? In-mode diagnostics of a latent batch.

KS + covariance losses match marginals and second moments; they do not by themselves
say that each latent sits inside one mode of the mixture. These numbers do, for any
:class:`molshape.latent.regularizer.GMMPrior` (pure torch; grammar and image models alike):

- ``inside_share``: the share of latents within the prior's ``level`` (99 %) radius of
  their nearest component. The radius is ``s * chi_d^{-1}(level)``: the distance of a
  component's own samples from its centre follows ``s`` times a chi distribution with
  ``d`` degrees of freedom. Exact prior samples give about ``level`` (a little more when
  modes overlap, since the nearest centre may be another component's); latents between
  the modes give much less.
- ``occupancy``: the share of latents assigned to each component (nearest centre),
  against the uniform ``1/K`` of the prior; summarised by ``occupancy_tv`` (total
  variation distance to uniform, 0 = uniform, 1 - 1/K = everything in one component) and
  ``occupancy_min_ratio`` / ``occupancy_max_ratio`` (smallest / largest share times K).
- ``mean_nearest_distance``: the mean distance to the nearest centre in std units, next
  to ``expected_nearest_distance`` = E[chi_d] = sqrt(2) Gamma((d+1)/2) / Gamma(d/2), the
  value of exact samples of well-separated components.

Example:
    >>> prior = GMMPrior(10, 10, layout="onehot")  # doctest: +SKIP
    >>> z, _ = prior.sample(10000, generator=torch.Generator().manual_seed(0))  # doctest: +SKIP
    >>> d = latent_diagnostics(z, prior)  # doctest: +SKIP
    >>> round(d["inside_share"], 2), round(d["occupancy_tv"], 2)  # doctest: +SKIP
    (0.99, 0.01)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from molshape.latent.regularizer import GMMPrior

__all__ = ["chi_quantile", "chi_mean", "latent_diagnostics", "nearest_distances"]


def chi_quantile(level: float, dim: int) -> float:
    """Quantile of the chi distribution with ``dim`` degrees of freedom (radius of a unit Gaussian).

    Solves P(chi2_d <= r^2) = gammainc(d/2, r^2/2) = level by bisection in float64.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    a = torch.tensor(dim / 2.0, dtype=torch.float64)
    lo, hi = 0.0, math.sqrt(dim) + 20.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if torch.special.gammainc(a, torch.tensor(mid * mid / 2.0, dtype=torch.float64)).item() < level:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return 0.5 * (lo + hi)


def chi_mean(dim: int) -> float:
    """E[chi_d] = sqrt(2) Gamma((d+1)/2) / Gamma(d/2): mean distance of a unit Gaussian from its centre."""
    return math.sqrt(2.0) * math.exp(math.lgamma((dim + 1) / 2.0) - math.lgamma(dim / 2.0))


@torch.no_grad()
def nearest_distances(z: Tensor, prior: GMMPrior) -> tuple[Tensor, Tensor]:
    """``([N] distance to the nearest centre in std units, [N] its component id)`` of ``z [N x d]``."""
    if z.dim() != 2 or z.shape[1] != prior.dim:
        raise ValueError(f"latent_diagnostics: z must be N x {prior.dim}, got shape {tuple(z.shape)}")
    if z.shape[0] < 1:
        raise ValueError("latent_diagnostics: empty batch")
    if not torch.isfinite(z).all():
        raise ValueError("latent_diagnostics: z contains non-finite values")
    dist2, nearest = prior._sq_dist(z).min(dim=-1)
    return dist2.clamp_min(0).sqrt() / prior.std.to(dist2.dtype), nearest


@torch.no_grad()
def latent_diagnostics(z: Tensor, prior: GMMPrior, level: float = 0.99) -> dict[str, float | list[float]]:
    """In-mode diagnostics of latents ``z [N x d]`` against ``prior`` (see module docstring).

    Args:
        z: ``N x d`` latents (any device and float dtype; computed in at least float32).
        prior: the mixture the latents should follow.
        level: prior mass inside the radius (0.99).

    Returns:
        ``inside_share``, ``radius`` (in std units), ``level``, ``mean_nearest_distance``
        and ``expected_nearest_distance`` (std units), ``occupancy`` (list of K shares),
        ``occupancy_tv``, ``occupancy_min_ratio``, ``occupancy_max_ratio``, ``n``.
    """
    dist, nearest = nearest_distances(z, prior)  # [N] std units, [N]
    radius = chi_quantile(level, prior.dim)
    k = prior.n_components
    counts = torch.bincount(nearest.cpu(), minlength=k).double()
    share = counts / counts.sum()
    return {
        "inside_share": float((dist <= radius).double().mean()),
        "radius": radius,
        "level": float(level),
        "mean_nearest_distance": float(dist.double().mean()),
        "expected_nearest_distance": chi_mean(prior.dim),
        "occupancy": [float(x) for x in share],
        "occupancy_tv": float(0.5 * (share - 1.0 / k).abs().sum()),
        "occupancy_min_ratio": float(share.min() * k),
        "occupancy_max_ratio": float(share.max() * k),
        "n": float(z.shape[0]),
    }
