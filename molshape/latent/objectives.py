"""Latent objectives: the one place where ``gmm``, ``vae``, ``rae`` and ``ae`` differ.

Every autoencoder in molshape (grammar and image) shares its encoder trunk, decoder,
reconstruction term and training loop; the objective owns only the last encoder layer
(``head``: feature ``h [B x H]`` -> latent ``z [B x d]``), the latent loss terms it adds
to the reconstruction, and the prior that generation samples from.

- ``gmm`` (GMM-DAE, the default): deterministic ``z``; weighted KS + covariance losses
  towards an equal-weight Gaussian mixture (:class:`molshape.latent.regularizer.GMMRegularizer`).
- ``vae`` (GVAE baseline): reparameterised Gaussian encoder with GVAE's own KL term,
  ``-0.5 * mean_j(1 + log var - mu^2 - var)`` (a MEAN over latent dimensions), and
  GVAE's ``epsilon_std = 0.01`` noise scale. ``encode`` returns the mean.
- ``rae`` (RAE baseline): deterministic ``z`` with ``beta * 0.5 * |z|^2`` plus weight decay on
  the decoder (the model reads ``decoder_weight_decay`` when building optimizer groups).
- ``ae``: deterministic, no latent term.

Example:
    >>> obj = build_objective("gmm", latent_dim=8, feature_dim=32, batch_size=100)
    >>> z, terms = obj(torch.randn(100, 32))  # terms == {"ks": ..., "cv": ...}
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from molshape.latent.regularizer import GMMPrior, GMMRegularizer, cov_loss, ks_distance, ks_loss

#: Defaults of the GMM-DAE prior. K = 10 and s = 1 follow the public GMM-DAE code. The
#: ``spread`` layout (centres >= 6 apart) makes the components distinct modes, so sampling
#: a component and clustering by component are meaningful; ``basis`` centres (unit vectors,
#: s = 1) overlap so much that the mixture is nearly a single Gaussian. ``onehot`` (10 e_k,
#: K <= d) is the layout KS + CV pin down best (each latent in one mode); the image
#: benchmarks MNIST / Fashion-MNIST use it (see molshape.images.model).
GMM_DEFAULTS: dict[str, Any] = {"n_components": 10, "std": 1.0, "layout": "spread"}


class LatentObjective(nn.Module):
    """Base class: a head from features to latents plus latent loss terms.

    Args:
        latent_dim: d.
        feature_dim: H, the encoder feature size the head reads.
        prior: the distribution :meth:`sample_prior` draws from.
    """

    name = "base"
    #: Weight decay the model applies to decoder parameters (only ``rae`` sets it).
    decoder_weight_decay = 0.0

    def __init__(self, latent_dim: int, feature_dim: int, prior: GMMPrior) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.feature_dim = feature_dim
        self.prior = prior
        self.head = nn.Linear(feature_dim, latent_dim)

    def encode(self, h: Tensor) -> Tensor:
        """Deterministic latent ``[B x d]`` of features ``h [B x H]`` (the mean for ``vae``)."""
        return self.head(h)

    def forward(self, h: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Latents used for decoding and the weighted latent loss terms.

        Args:
            h: ``B x H`` encoder features.

        Returns:
            ``(z [B x d], {term: scalar})``; the terms are added to the loss as they are.
        """
        z = self.encode(h)
        return z, self.terms(z)

    def terms(self, z: Tensor) -> dict[str, Tensor]:
        return {}

    @torch.no_grad()
    def statistics(self, z: Tensor) -> dict[str, float]:
        """Unweighted monitoring values of validation latents ``z [N x d]`` against the prior."""
        prior = self.prior
        z = z.to(prior.centers.dtype)
        return {
            "ks_raw": float(ks_loss(z, prior)),
            "cv_raw": float(cov_loss(z, prior)),
            "ks_stat": float(ks_distance(z, prior).mean()),
        }

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n x d`` latents drawn from the prior."""
        return self.prior.sample(n, generator=generator)[0]


class GMMObjective(LatentObjective):
    """GMM-DAE: deterministic latents, KS + CV losses weighted by 1 / E_prior[loss]."""

    name = "gmm"

    def __init__(self, latent_dim: int, feature_dim: int, *, batch_size: int, n_components: int = 10,
                 std: float = 1.0, layout: str = "spread", weights: tuple[float, float] | None = None,
                 center_scale: float | None = None) -> None:
        prior = GMMPrior(latent_dim, n_components=n_components, std=std, layout=layout, center_scale=center_scale)
        super().__init__(latent_dim, feature_dim, prior)
        # Fixed private generator: the weights are reproducible and the global RNG untouched.
        gen = torch.Generator().manual_seed(0)
        self.regularizer = GMMRegularizer(prior, batch_size, weights=weights, generator=gen)

    def terms(self, z: Tensor) -> dict[str, Tensor]:
        return self.regularizer(z)


class VAEObjective(LatentObjective):
    """GVAE: ``z = mu + epsilon_std * sigma * eps`` while training, KL mean over dimensions."""

    name = "vae"

    def __init__(self, latent_dim: int, feature_dim: int, *, epsilon_std: float = 0.01, kl_weight: float = 1.0) -> None:
        super().__init__(latent_dim, feature_dim, GMMPrior(latent_dim))
        self.logvar = nn.Linear(feature_dim, latent_dim)
        self.epsilon_std = epsilon_std
        self.kl_weight = kl_weight

    def forward(self, h: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        mu = self.head(h).float()
        logvar = self.logvar(h).float()
        z = mu
        if self.training:
            z = mu + self.epsilon_std * torch.exp(0.5 * logvar) * torch.randn_like(mu)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).mean(dim=1)  # (B,)
        return z, {"kl": self.kl_weight * kl.mean()}


class RAEObjective(LatentObjective):
    """RAE: ``beta * 0.5 * |z|^2`` (mean over the batch) plus decoder weight decay."""

    name = "rae"

    def __init__(self, latent_dim: int, feature_dim: int, *, beta: float = 1e-2,
                 decoder_weight_decay: float = 1e-6) -> None:
        super().__init__(latent_dim, feature_dim, GMMPrior(latent_dim))
        self.beta = beta
        self.decoder_weight_decay = decoder_weight_decay

    def terms(self, z: Tensor) -> dict[str, Tensor]:
        return {"l2": self.beta * 0.5 * z.float().pow(2).sum(dim=1).mean()}


class AEObjective(LatentObjective):
    """Plain deterministic autoencoder: no latent term."""

    name = "ae"

    def __init__(self, latent_dim: int, feature_dim: int) -> None:
        super().__init__(latent_dim, feature_dim, GMMPrior(latent_dim))


OBJECTIVES: dict[str, type[LatentObjective]] = {
    "gmm": GMMObjective,
    "vae": VAEObjective,
    "rae": RAEObjective,
    "ae": AEObjective,
}

#: Knobs each objective accepts (others are ignored, so one config can carry all of them).
KNOBS: dict[str, tuple[str, ...]] = {
    "gmm": ("batch_size", "n_components", "std", "layout", "weights", "center_scale"),
    "vae": ("epsilon_std", "kl_weight"),
    "rae": ("beta", "decoder_weight_decay"),
    "ae": (),
}


def build_objective(name: str, latent_dim: int, feature_dim: int | None = None, **knobs: Any) -> LatentObjective:
    """Build a latent objective by name.

    Args:
        name: one of ``OBJECTIVES`` (``gmm``, ``vae``, ``rae``, ``ae``).
        latent_dim: d.
        feature_dim: size H of the encoder features the head reads (default: ``latent_dim``).
        **knobs: objective options; those another objective would use are ignored, those
            set to ``None`` fall back to the defaults. ``gmm`` needs ``batch_size`` (its
            loss weights depend on it).
    """
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    chosen = {k: v for k, v in knobs.items() if k in KNOBS[name] and v is not None}
    if name == "gmm" and "batch_size" not in chosen:
        raise ValueError("objective 'gmm' needs batch_size (the KS/CV weights are estimated for it)")
    return OBJECTIVES[name](latent_dim, feature_dim or latent_dim, **chosen)
