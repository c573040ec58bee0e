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
MAX_CHUNK_ELEMENTS = 2**25


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
