"""The Gaussian-mixture prior of the GMM-DAE regularizer (:class:`GMMPrior`): equal-weight
components with a shared isotropic std, its center layouts, marginal CDFs (with a fused
autograd CDF), covariance, sampling, log density and assignment. The closed forms are
written out in :mod:`molshape.latent.regularizer`, which builds the losses on it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

LAYOUTS = ("standard", "basis", "onehot", "spread", "custom")
#: Default ``center_scale`` of the ``onehot`` layout (Robust_GMM_DAE: means at 10 e_k, std 1).
ONEHOT_SCALE = 10.0
SPREAD_MIN_DISTANCE = 6.0


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    """At least float32, wider if any input is wider (float64 stays float64)."""
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


@contextlib.contextmanager
def _full_precision(device: torch.device) -> Iterator[None]:
    """Disable autocast: the CDF, the sort and the covariance matmul must not run in half."""
    with torch.autocast(device_type=device.type, enabled=False):
        yield


def spread_centers(dim: int, n_components: int, seed: int = 0) -> Tensor:
    """Well-separated centers: Sobol-normal unit directions doubled until far apart.

    Args:
        dim: latent dimension d.
        n_components: number of centers K.
        seed: scrambling seed of the Sobol sequence (the layout is deterministic).

    Returns:
        ``K x d`` float64 centers with minimum pairwise distance >= 6 (K >= 2).
    """
    engine = torch.quasirandom.SobolEngine(dimension=dim, scramble=True, seed=seed)
    u = engine.draw(n_components, dtype=torch.float64)
    # Scrambled points avoid 0 and 1 almost surely; clamp anyway so ndtri stays finite.
    u = u.clamp(1e-12, 1 - 1e-12)
    directions = torch.special.ndtri(u)
    norms = directions.norm(dim=1, keepdim=True)
    if dim == 1:
        # In 1-D every direction is +-1; use the signed Sobol-normal values instead.
        centers = directions.clone()
    else:
        if (norms == 0).any():
            raise ValueError(f"spread layout: a Sobol direction is zero (dim={dim}, seed={seed})")
        centers = directions / norms
    if n_components < 2:
        return centers
    min_dist = torch.pdist(centers).min().item()
    if min_dist <= 0:
        raise ValueError(f"spread layout: coincident centers (dim={dim}, K={n_components}, seed={seed})")
    while min_dist < SPREAD_MIN_DISTANCE:
        centers = centers * 2
        min_dist *= 2
    return centers


def _layout_centers(dim: int, n_components: int, layout: str, seed: int) -> Tensor:
    if layout == "standard":
        if n_components != 1:
            raise ValueError(f"layout 'standard' has exactly one component, got n_components={n_components}")
        return torch.zeros(1, dim, dtype=torch.float64)
    if layout == "basis":
        centers = torch.zeros(n_components, dim, dtype=torch.float64)
        centers[torch.arange(n_components), torch.arange(n_components) % dim] = 1.0
        return centers
    if layout == "onehot":
        if n_components > dim:
            raise ValueError(f"layout 'onehot' needs n_components <= dim (one axis per component), "
                             f"got n_components={n_components} > dim={dim}; use 'spread'")
        centers = torch.zeros(n_components, dim, dtype=torch.float64)
        centers[torch.arange(n_components), torch.arange(n_components)] = 1.0
        return centers
    if layout == "spread":
        return spread_centers(dim, n_components, seed)
    raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")


class _MixtureCDF(torch.autograd.Function):
    """F(t) = 1/2 + 1/2 mean_k erf((t - mu_k) a), a = 1 / (s sqrt 2), with a fused backward.

    Autograd through the broadcast would keep and revisit several ``[... x K x d]``
    temporaries; the mixture density dF/dt = (a / sqrt pi) mean_k exp(-((t - mu_k) a)^2)
    needs one in-place pass instead. The gradient flows to ``t`` only: centers and std
    are fixed buffers of the prior.
    """

    @staticmethod
    def forward(ctx: Any, t: Tensor, mu: Tensor, scale: Tensor) -> Tensor:
        ctx.save_for_backward(t, mu, scale)
        # Phi(x) = (1 + erf(x / sqrt 2)) / 2: erf is ~3x faster than ndtr on CPU, and its
        # absolute error (all the squared-gap loss sees) is float eps in the tails too.
        x = t.unsqueeze(-2) - mu  # [..., 1, d] - [K, d] -> [..., K, d]
        x.mul_(scale).erf_()
        return x.mean(dim=-2).mul_(0.5).add_(0.5)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            raise NotImplementedError("marginal_cdf differentiates w.r.t. t only; centers and std are fixed")
        t, mu, scale = ctx.saved_tensors
        x = t.unsqueeze(-2) - mu
        x.mul_(scale).square_().neg_().exp_()
        density = x.mean(dim=-2).mul_(scale / math.sqrt(math.pi))
        return grad * density, None, None


class GMMPrior(nn.Module):
    """Equal-weight isotropic Gaussian mixture in R^d.

    Buffers ``centers [K x d]`` and ``std`` (0-dim) move with ``.to(device/dtype)`` and are
    saved in ``state_dict``.

    Args:
        dim: latent dimension d.
        n_components: number of components K (ignored when ``centers`` is given).
        std: shared standard deviation s of every component.
        layout: ``"standard"`` (K = 1, centre 0), ``"basis"``, ``"onehot"``, ``"spread"``,
            or ``"custom"`` (requires ``centers``).
        centers: optional user-given ``K x d`` centers; they override ``layout`` and
            ``n_components``.
        seed: Sobol scrambling seed for the ``spread`` layout.
        center_scale: factor on the layout's centres (``None``: 10 for ``onehot``, else 1);
            not allowed with ``centers`` (scale them yourself).
    """

    centers: Tensor
    std: Tensor

    def __init__(
        self,
        dim: int,
        n_components: int = 1,
        std: float = 1.0,
        layout: str = "standard",
        centers: Tensor | Sequence[Sequence[float]] | None = None,
        seed: int = 0,
        center_scale: float | None = None,
    ) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"GMMPrior: dim must be >= 1, got {dim}")
        if not std > 0:
            raise ValueError(f"GMMPrior: std must be > 0, got {std}")
        if center_scale is not None and not (math.isfinite(center_scale) and center_scale > 0):
            raise ValueError(f"GMMPrior: center_scale must be a finite number > 0, got {center_scale}")
        if centers is not None:
            if center_scale is not None:
                raise ValueError("GMMPrior: center_scale applies to named layouts; scale custom centers yourself")
            c = torch.as_tensor(centers, dtype=torch.float64).detach().cpu()
            if c.dim() != 2 or c.shape[1] != dim or c.shape[0] < 1:
                raise ValueError(f"GMMPrior: centers must be K x {dim}, got shape {tuple(c.shape)}")
            if not torch.isfinite(c).all():
                raise ValueError("GMMPrior: centers contain non-finite values")
            layout = "custom"
        else:
            if layout == "custom":
                raise ValueError("GMMPrior: layout 'custom' needs the centers argument")
            if n_components < 1:
                raise ValueError(f"GMMPrior: n_components must be >= 1, got {n_components}")
            c = _layout_centers(dim, n_components, layout, seed)
            if center_scale is None and layout == "onehot":
                center_scale = ONEHOT_SCALE
            if center_scale is not None:
                c = c * center_scale
        self.center_scale = center_scale
        self.dim = dim
        self.n_components = c.shape[0]
        self.layout = layout
        self.seed = seed
        self.register_buffer("centers", c.to(torch.get_default_dtype()))
        self.register_buffer("std", torch.tensor(float(std), dtype=torch.get_default_dtype()))

    def extra_repr(self) -> str:
        scale = "" if self.center_scale is None else f", center_scale={self.center_scale:g}"
        return f"dim={self.dim}, n_components={self.n_components}, layout={self.layout!r}{scale}, std={self.std.item():g}"

    def config(self) -> dict[str, Any]:
        """Plain dict such that ``GMMPrior(**prior.config())`` rebuilds this prior."""
        cfg: dict[str, Any] = {
            "dim": self.dim,
            "n_components": self.n_components,
            "std": float(self.std.item()),
            "layout": self.layout,
            "seed": self.seed,
        }
        if self.center_scale is not None:
            cfg["center_scale"] = float(self.center_scale)
        if self.layout == "custom":
            cfg["centers"] = self.centers.double().cpu().tolist()
        return cfg

    # -- sampling -----------------------------------------------------------------
    def _noise(self, n: int, generator: torch.Generator | None) -> Tensor:
        # Draw on the generator's device, then move: a CPU generator gives the same
        # latents whether the prior lives on the CPU or a GPU.
        device = generator.device if generator is not None else self.centers.device
        eps = torch.randn(n, self.dim, generator=generator, device=device, dtype=self.centers.dtype)
        return eps.to(self.centers.device)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draw a component uniformly, then mu_k + s * eps.

        Args:
            n: number of latents.
            generator: random source, on any device (the draws are moved to the prior's).

        Returns:
            ``(z [n x d], k [n] long)``: latents and their component ids.
        """
        device = generator.device if generator is not None else self.centers.device
        k = torch.randint(self.n_components, (n,), generator=generator, device=device).to(self.centers.device)
        return self.centers[k] + self.std * self._noise(n, generator), k

    def sample_component(self, k: int, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n x d`` latents from component ``k`` alone."""
        if not 0 <= k < self.n_components:
            raise ValueError(f"component k={k} out of range [0, {self.n_components})")
        return self.centers[k] + self.std * self._noise(n, generator)

    # -- closed forms --------------------------------------------------------------
    def marginal_cdf(self, t: Tensor) -> Tensor:
        """Per-dimension mixture CDF F_j(t_j) = (1/K) sum_k Phi((t_j - mu_kj) / s).

        Args:
            t: ``[... x d]`` values (any leading batch shape).

        Returns:
            ``[... x d]`` CDF values, in ``t``'s dtype promoted to at least float32.
        """
        if t.shape[-1] != self.dim:
            raise ValueError(f"marginal_cdf: t must be [... x {self.dim}], got shape {tuple(t.shape)}")
        dtype = _compute_dtype(t, self.centers)
        with _full_precision(t.device):
            scale = 1.0 / (self.std.to(dtype) * math.sqrt(2.0))
            return _MixtureCDF.apply(t.to(dtype), self.centers.to(dtype), scale)

    def covariance(self) -> Tensor:
        """``d x d`` prior covariance s^2 I + (1/K) sum_k (mu_k - mu_bar)(mu_k - mu_bar)^T."""
        dev = self.centers - self.centers.mean(dim=0)
        eye = torch.eye(self.dim, dtype=self.centers.dtype, device=self.centers.device)
        return self.std**2 * eye + dev.T @ dev / self.n_components

    def _sq_dist(self, z: Tensor) -> Tensor:
        """``[n x K]`` squared distances to the centers, computed by difference (exact)."""
        dtype = _compute_dtype(z, self.centers)
        with _full_precision(z.device):
            diff = z.to(dtype).unsqueeze(-2) - self.centers.to(dtype)  # [n, K, d]
            return diff.pow(2).sum(dim=-1)

    def log_prob(self, z: Tensor) -> Tensor:
        """``[n]`` log density of ``z [n x d]`` under the mixture."""
        d2 = self._sq_dist(z)
        s = self.std.to(d2.dtype)
        norm = math.log(self.n_components) + 0.5 * self.dim * torch.log(2 * math.pi * s**2)
        return torch.logsumexp(-0.5 * d2 / s**2, dim=-1) - norm

    def assign(self, z: Tensor) -> Tensor:
        """``[n]`` long: the most likely component of each latent (nearest center)."""
        return self._sq_dist(z).argmin(dim=-1)

    def ball_radius(self, quantile: float = 0.99) -> float:
        """Radius holding ``quantile`` of one component's mass: ``std * sqrt(chi2_d^-1(quantile))``."""
        from scipy.stats import chi2

        return float(self.std) * math.sqrt(float(chi2.ppf(quantile, self.dim)))

    def pull_into_ball(self, z: Tensor, quantile: float = 0.99) -> Tensor:
        """``z [n x d]`` pulled radially into the ``quantile`` mass ball of its nearest component."""
        return pull_into_balls(z, self.centers, self.ball_radius(quantile))


def pull_into_balls(z: Tensor, centers: Tensor, radius: float) -> Tensor:
    """``z [n x d]`` pulled radially into the ball of ``radius`` around its nearest of ``centers [K x d]``
    (points inside stay where they are), in ``z``'s dtype."""
    dtype = _compute_dtype(z, centers)
    diff = z.to(dtype).unsqueeze(-2) - centers.to(device=z.device, dtype=dtype)  # [n, K, d]
    dist = diff.norm(dim=-1)
    k = dist.argmin(dim=-1)
    near = centers.to(device=z.device, dtype=dtype)[k]
    scale = (radius / dist.gather(-1, k.unsqueeze(-1)).clamp_min(1e-12)).clamp(max=1.0)
    return (near + (z.to(dtype) - near) * scale).to(z.dtype)

