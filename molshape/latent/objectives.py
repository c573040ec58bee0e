"""Latent objectives: the one place where ``gmm``, ``vae``, ``rae`` and ``ae`` differ.

Every autoencoder in molshape (grammar and image) shares its encoder trunk, decoder,
reconstruction term and training loop; the objective owns only the last encoder layer
(``head``: feature ``h [B x H]`` -> latent ``z [B x d]``), the latent loss terms it adds
to the reconstruction, and the prior that generation samples from.

Each objective has a settings dataclass (its config), which a model config holds as its
``objective`` field and checkpoints store as a dict with the objective's ``name``:

- ``gmm`` (GMM-DAE, :class:`GMMConfig`): deterministic ``z``; weighted KS + covariance
  losses towards an equal-weight Gaussian mixture
  (:class:`molshape.latent.regularizer.GMMRegularizer`).
- ``vae`` (GVAE baseline, :class:`VAEConfig`): reparameterised Gaussian encoder with GVAE's
  own KL term, ``-0.5 * mean_j(1 + log var - mu^2 - var)`` (a MEAN over latent dimensions),
  and GVAE's ``epsilon_std = 0.01`` noise scale by default. ``encode`` returns the mean.
- ``rae`` (RAE baseline, :class:`RAEConfig`): deterministic ``z`` with ``beta * 0.5 * |z|^2``
  plus weight decay on the decoder (the model reads ``decoder_weight_decay`` when building
  optimizer groups).
- ``ae`` (:class:`AEConfig`): deterministic, no latent term.

The dataclass defaults are GVAE's and the public GMM-DAE code's; the image models state
their own (``molshape.images.model.IMAGE_OBJECTIVES``).

Example:
    >>> import torch
    >>> obj = GMMConfig(batch_size=100).build(latent_dim=8, feature_dim=32)
    >>> z, terms = obj(torch.randn(100, 32))
    >>> sorted(terms)
    ['cv', 'ks']
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from molshape.core.config import ConfigError, config_from_dict
from molshape.latent.regularizer import GMMPrior, GMMRegularizer, cov_loss, ks_distance, ks_loss


@dataclass(frozen=True)
class ObjectiveConfig:
    """Settings of one latent objective; subclasses name it and hold its fields."""

    name: ClassVar[str] = "base"

    def build(self, latent_dim: int, feature_dim: int | None = None, *, estimate: bool = True) -> LatentObjective:
        """The objective for latents of size ``latent_dim`` read from features of size ``feature_dim``.

        Args:
            estimate: ``False`` leaves weights that are estimated from the prior (``gmm``'s
                KS/CV weights) as NaN placeholders, for a model whose saved weights are loaded next.
        """
        return OBJECTIVES[self.name](latent_dim, feature_dim or latent_dim, self, estimate=estimate)

    def replace(self, **changes: Any) -> ObjectiveConfig:
        """A copy with ``changes`` applied; ``None`` values are ignored (unset CLI overrides)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def settings(self) -> tuple[str, ...]:
        """Names of this objective's settings."""
        return tuple(f.name for f in dataclasses.fields(self))

    def fitted_to_batch(self, batch_size: int) -> ObjectiveConfig:
        """This config for training batches of ``batch_size`` (only ``gmm`` depends on it)."""
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **dataclasses.asdict(self)}

    @staticmethod
    def from_dict(d: dict[str, Any], defaults: dict[str, ObjectiveConfig] | None = None) -> ObjectiveConfig:
        """The config a :meth:`to_dict` dict describes; settings it lacks come from ``defaults[name]``.

        Raises:
            ConfigError: no such objective, or a setting it does not have.
        """
        if not isinstance(d, dict) or d.get("name") not in CONFIGS:
            name = d.get("name") if isinstance(d, dict) else d
            raise ConfigError(f"unknown objective {name!r}; choose one of {sorted(CONFIGS)}")
        settings = {k: v for k, v in d.items() if k != "name"}
        cls = CONFIGS[d["name"]]
        return config_from_dict(cls, settings, (defaults or {}).get(d["name"]))


@dataclass(frozen=True)
class GMMConfig(ObjectiveConfig):
    """GMM-DAE: the mixture prior and the batch size its KS/CV weights are estimated for.

    K = 10 and s = 1 follow the public GMM-DAE code. The ``spread`` layout (centres >= 6
    apart) makes the components distinct modes, so sampling a component and clustering by
    component are meaningful; ``basis`` centres (unit vectors, s = 1) overlap so much that
    the mixture is nearly a single Gaussian. ``onehot`` (10 e_k, K <= d) is the layout
    KS + CV pin down best (each latent in one mode); the image benchmarks MNIST /
    Fashion-MNIST use it (see molshape.images.model).
    """

    name: ClassVar[str] = "gmm"
    n_components: int = 10
    std: float = 1.0
    layout: str = "spread"
    center_scale: float | None = None  # None: the layout's own (10 for onehot, 1 otherwise)
    batch_size: int = 100  # the KS/CV weights are 1 / E[loss] over prior batches of this size

    def fitted_to_batch(self, batch_size: int) -> GMMConfig:
        return dataclasses.replace(self, batch_size=batch_size)


@dataclass(frozen=True)
class VAEConfig(ObjectiveConfig):
    """GVAE: ``z = mu + epsilon_std * sigma * eps`` while training; ``kl_weight`` times the KL
    averaged over latent dimensions (``None``: ``latent_dim``, i.e. the KL summed over them)."""

    name: ClassVar[str] = "vae"
    epsilon_std: float = 0.01
    kl_weight: float | None = 1.0


@dataclass(frozen=True)
class RAEConfig(ObjectiveConfig):
    """RAE: ``beta * 0.5 * |z|^2`` plus ``decoder_weight_decay`` on the decoder's weights."""

    name: ClassVar[str] = "rae"
    beta: float = 1e-2
    decoder_weight_decay: float = 1e-6


@dataclass(frozen=True)
class AEConfig(ObjectiveConfig):
    """Plain deterministic autoencoder: no settings."""

    name: ClassVar[str] = "ae"


#: objective name -> its config class
CONFIGS: dict[str, type[ObjectiveConfig]] = {c.name: c for c in (GMMConfig, VAEConfig, RAEConfig, AEConfig)}

#: the settings of the flat layout that model configs had before they held an objective
#: config (``reg_batch_size`` is now ``GMMConfig.batch_size``), old name -> new name
FLAT_SETTINGS = {"n_components": "n_components", "std": "std", "layout": "layout", "center_scale": "center_scale",
                 "reg_batch_size": "batch_size", "epsilon_std": "epsilon_std", "kl_weight": "kl_weight",
                 "beta": "beta", "decoder_weight_decay": "decoder_weight_decay"}


def objective_from_saved(d: dict[str, Any], defaults: dict[str, ObjectiveConfig]) -> tuple[ObjectiveConfig, dict]:
    """Split a saved model config into its objective config and the model's other settings.

    Reads both layouts: ``{"objective": {"name": "gmm", ...}}`` and the older flat one
    (``{"objective": "gmm", "n_components": 10, "reg_batch_size": 500, "epsilon_std": ...}``,
    each objective's settings beside the model's). In the flat layout the settings of the
    other objectives are dropped and those absent take the model's ``defaults[name]``.

    Raises:
        ConfigError: an unknown objective or setting.
    """
    d = dict(d)
    saved = d.pop("objective", None)
    if isinstance(saved, dict):
        return ObjectiveConfig.from_dict(saved, defaults), d
    name = "gmm" if saved is None else saved
    flat = {new: d.pop(old) for old, new in FLAT_SETTINGS.items() if old in d}
    if name not in CONFIGS:
        raise ConfigError(f"unknown objective {name!r}; choose one of {sorted(CONFIGS)}")
    own = {k: v for k, v in flat.items() if k in {f.name for f in dataclasses.fields(CONFIGS[name])}}
    return ObjectiveConfig.from_dict({"name": name, **own}, defaults), d


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

    def __init__(self, latent_dim: int, feature_dim: int, config: GMMConfig = GMMConfig(), *,
                 estimate: bool = True) -> None:
        c = config
        prior = GMMPrior(latent_dim, n_components=c.n_components, std=c.std, layout=c.layout,
                         center_scale=c.center_scale)
        super().__init__(latent_dim, feature_dim, prior)
        # Fixed private generator: the weights are reproducible and the global RNG untouched.
        gen = torch.Generator().manual_seed(0)
        weights = None if estimate else (float("nan"), float("nan"))  # loud if never loaded
        self.regularizer = GMMRegularizer(prior, c.batch_size, weights=weights, generator=gen)

    def terms(self, z: Tensor) -> dict[str, Tensor]:
        return self.regularizer(z)


class VAEObjective(LatentObjective):
    """GVAE: ``z = mu + epsilon_std * sigma * eps`` while training, KL mean over dimensions."""

    name = "vae"

    def __init__(self, latent_dim: int, feature_dim: int, config: VAEConfig = VAEConfig(), *,
                 estimate: bool = True) -> None:
        super().__init__(latent_dim, feature_dim, GMMPrior(latent_dim))
        self.logvar = nn.Linear(feature_dim, latent_dim)
        self.epsilon_std = config.epsilon_std
        self.kl_weight = float(latent_dim) if config.kl_weight is None else config.kl_weight

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

    def __init__(self, latent_dim: int, feature_dim: int, config: RAEConfig = RAEConfig(), *,
                 estimate: bool = True) -> None:
        super().__init__(latent_dim, feature_dim, GMMPrior(latent_dim))
        self.beta = config.beta
        self.decoder_weight_decay = config.decoder_weight_decay

    def terms(self, z: Tensor) -> dict[str, Tensor]:
        return {"l2": self.beta * 0.5 * z.float().pow(2).sum(dim=1).mean()}


class AEObjective(LatentObjective):
    """Plain deterministic autoencoder: no latent term."""

    name = "ae"

    def __init__(self, latent_dim: int, feature_dim: int, config: AEConfig = AEConfig(), *,
                 estimate: bool = True) -> None:
        super().__init__(latent_dim, feature_dim, GMMPrior(latent_dim))


#: objective name -> its class (the names are those of :data:`CONFIGS`)
OBJECTIVES: dict[str, type[LatentObjective]] = {
    "gmm": GMMObjective,
    "vae": VAEObjective,
    "rae": RAEObjective,
    "ae": AEObjective,
}


def build_objective(name: str, latent_dim: int, feature_dim: int | None = None, **settings: Any) -> LatentObjective:
    """Build a latent objective by name with the settings of its config (the others are its defaults).

    Args:
        name: one of :data:`CONFIGS` (``gmm``, ``vae``, ``rae``, ``ae``).
        latent_dim: d.
        feature_dim: size H of the encoder features the head reads (default: ``latent_dim``).
        **settings: fields of the objective's config (:class:`GMMConfig`, ...).

    Raises:
        ConfigError: an unknown objective or a setting it does not have.
    """
    return ObjectiveConfig.from_dict({"name": name, **settings}).build(latent_dim, feature_dim)
