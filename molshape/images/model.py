"""The image autoencoder: conv encoder -> latent objective -> conv decoder.

One network for every objective (``gmm``, ``vae``, ``rae``, ``ae``); only the
:class:`molshape.latent.objectives.LatentObjective` differs, exactly as for the grammar models.
The loss is ``lambda_rec * MSE(pixels)`` (mean over pixels and batch; the public GMM-DAE
code uses lambda_rec = 1 / 5e-4) plus the objective's weighted latent terms.

Baseline settings for images (:data:`IMAGE_OBJECTIVES`; the grammar models' are GVAE's):

- ``vae``: a standard image VAE, ``epsilon_std = 1`` and the KL summed over latent
  dimensions (``kl_weight = latent_dim`` on the objective's per-dimension mean). With
  lambda_rec = 2000 on a 32 x 32 mean this is a Gaussian decoder of variance ~0.26.
- ``rae``: ``beta = 1`` on ``0.5 |z|^2`` and decoder weight decay 1e-6.
- deterministic objectives get latent noise of std 1e-3 while training (the public code's
  model default; its config.ini sets 0; the effect on latents of scale 1-6 is negligible).

Clustering prior of MNIST / Fashion-MNIST (:data:`DATASET_DEFAULTS`, applied by
:meth:`ImageModelConfig.for_dataset`): the ``onehot`` layout with centres at 5 e_k and
std 1, and lambda_rec = 500 (Robust_GMM_DAE's MNIST config). The authors' later
Robust_GMM_DAE code uses 10 e_k; on MNIST t10k (3 seeds, 60 epochs, width 0.125) 5 e_k
clusters as well (58.5 +- 7.0 % against 57.4 +- 11.4 %), with a better prior-sample FID
and 92 % of test latents inside the prior's 99 % radius against 46 %: between 0 and 10
the mixture CDF is flat (density 1.5e-6 at 5), so the KS loss cannot pull a latent
stranded between two modes back, while between 0 and 5 it still can (density 0.018 at
2.5); means 7.1 std apart still keep exact prior samples nearest their own centre
(> 99.9 %). The public code's ``basis`` layout (e_k, std 1) puts the means 1.41 std
apart, so even exact prior samples are nearest their own centre only 34 % of the time;
the ``spread`` layout is not pinned down by KS + CV. SVHN and CelebA keep ``spread`` and
lambda_rec = 2000. Checkpoints store the full config, so older ones rebuild with what
they were trained with.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from molshape.core.checkpoint import CheckpointError, load_checkpoint
from molshape.core.config import config_from_dict
from molshape.images.data import SPECS, to_float
from molshape.images.networks import ConvDecoder, ConvEncoder
from molshape.latent.objectives import (FLAT_SETTINGS, AEConfig, GMMConfig, ObjectiveConfig, RAEConfig, VAEConfig,
                                        objective_from_saved)

DEFAULT_LAMBDA_REC = 1.0 / 5e-4
DEFAULT_LATENT_NOISE = 1e-3
#: The image models' settings of each objective (see the module docstring): a standard image
#: VAE (``epsilon_std = 1``, KL summed over dimensions), RAE's ``beta = 1``, and the GMM-DAE
#: weights estimated for batches of 100 (training sets the batch size it uses).
IMAGE_OBJECTIVES: dict[str, ObjectiveConfig] = {
    "gmm": GMMConfig(batch_size=100),
    "vae": VAEConfig(epsilon_std=1.0, kl_weight=None),
    "rae": RAEConfig(beta=1.0, decoder_weight_decay=1e-6),
    "ae": AEConfig(),
}
#: Per-data-set settings for :meth:`ImageModelConfig.for_dataset`: the gmm prior's layout and
#: scale, and the reconstruction weight (see the module docstring).
CLUSTERING_PRIOR: dict[str, Any] = {"layout": "onehot", "center_scale": 5.0, "lambda_rec": 500.0}
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "mnist": dict(CLUSTERING_PRIOR),
    "fashion-mnist": dict(CLUSTERING_PRIOR),
    "svhn": {},
    "celeba": {},
}


def check_positive(name: str, value: float | None, allow_zero: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number > 0 (>= 0 with ``allow_zero``)."""
    if value is None:
        return
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}")


@dataclass
class ImageModelConfig:
    """Everything needed to rebuild an :class:`ImageAutoencoder` (stored in checkpoints)."""

    dataset: str = "mnist"
    channels: int = 1
    size: int = 32  # image side (32; 64 for CelebA)
    # the latent objective and its settings (molshape.latent.objectives)
    objective: ObjectiveConfig = IMAGE_OBJECTIVES["gmm"]
    latent_dim: int = 10
    width: float = 1.0  # channel multiplier of 128-256-512-1024; 0.125 trains on a CPU
    lambda_rec: float = DEFAULT_LAMBDA_REC
    latent_noise: float = DEFAULT_LATENT_NOISE  # std of noise added to deterministic latents while training
    # experimental: the latent terms are weighted epoch / latent_warmup in the first epochs
    # of training (0: full weight from the start, as the paper); validation always uses 1
    latent_warmup: int = 0

    def __post_init__(self) -> None:
        check_positive("lambda_rec", self.lambda_rec)
        check_positive("latent_noise", self.latent_noise, allow_zero=True)
        check_positive("center_scale", getattr(self.objective, "center_scale", None))
        check_positive("std", getattr(self.objective, "std", None))
        if not (isinstance(self.latent_warmup, int) and self.latent_warmup >= 0):
            raise ValueError(f"latent_warmup must be an integer >= 0, got {self.latent_warmup!r}")

    @classmethod
    def for_dataset(cls, dataset: str, **changes: Any) -> ImageModelConfig:
        """Config with the data set's channels, size and :data:`DATASET_DEFAULTS`; ``None`` changes are ignored.

        ``changes`` holds this config's fields (``objective`` by name, default ``gmm``, with
        :data:`IMAGE_OBJECTIVES`' settings) and settings of the objective (``n_components``,
        ``layout``, ``center_scale``, ...); settings of another objective are ignored. A ``layout``
        given without ``center_scale`` gets that layout's own scale (10 for ``onehot``, 1
        otherwise), not the data set's.
        """
        spec = SPECS[dataset]
        given = {k: v for k, v in changes.items() if v is not None}
        defaults = dict(DATASET_DEFAULTS.get(dataset, {}))
        if "layout" in given and given["layout"] != defaults.get("layout"):
            defaults.pop("center_scale", None)
        settings = {**defaults, **given}
        name = settings.pop("objective", "gmm")
        if name not in IMAGE_OBJECTIVES:
            raise ValueError(f"unknown objective {name!r}; choose one of {sorted(IMAGE_OBJECTIVES)}")
        objective = IMAGE_OBJECTIVES[name]
        own = {k: settings.pop(k) for k in list(settings) if k in objective.settings()}
        for other in set(FLAT_SETTINGS.values()) - set(objective.settings()):
            settings.pop(other, None)  # another objective's setting
        return cls(dataset=dataset, channels=spec.channels, size=spec.size,
                   objective=dataclasses.replace(objective, **own), **settings)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**d, "objective": self.objective.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageModelConfig:
        """The config of a :meth:`to_dict` dict, or of the older flat layout (see
        :func:`molshape.latent.objectives.objective_from_saved`).

        Raises:
            ConfigError: an unknown key (see :func:`molshape.core.config.config_from_dict`).
        """
        objective, rest = objective_from_saved(d, IMAGE_OBJECTIVES)
        return config_from_dict(cls, {**rest, "objective": objective})


class ImageAutoencoder(nn.Module):
    """Convolutional autoencoder with a pluggable latent objective.

    Args:
        config: sizes, objective and its settings.
        estimate: ``False`` skips estimating the ``gmm`` KS/CV weights, for a model whose saved
            weights are loaded next.
    """

    def __init__(self, config: ImageModelConfig, *, estimate: bool = True) -> None:
        super().__init__()
        c = self.config = config
        self.encoder = ConvEncoder(c.channels, c.size, c.width)
        self.objective = c.objective.build(c.latent_dim, self.encoder.feature_dim, estimate=estimate)
        self.decoder = ConvDecoder(c.latent_dim, c.channels, c.size, c.width)
        #: weight of the latent terms while training; :meth:`start_epoch` sets it (warm-up)
        self.latent_weight = 1.0

    def start_epoch(self, epoch: int) -> None:
        """Set the training weight of the latent terms for 0-based ``epoch`` (``latent_warmup``)."""
        w = self.config.latent_warmup
        self.latent_weight = 1.0 if w <= 0 else min(1.0, epoch / w)

    @property
    def prior(self):  # GMMPrior; N(0, I) for vae / rae / ae
        return self.objective.prior

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer groups: decoder parameters get the objective's extra weight decay (rae)."""
        extra = self.objective.decoder_weight_decay
        dec = list(self.decoder.parameters())
        dec_ids = {id(p) for p in dec}
        rest = [p for p in self.parameters() if id(p) not in dec_ids]
        if not extra:
            return [{"params": rest + dec, "weight_decay": weight_decay}]
        return [{"params": rest, "weight_decay": weight_decay}, {"params": dec, "weight_decay": weight_decay + extra}]

    def encode(self, images: Tensor) -> Tensor:
        """``[B x C x S x S]`` images (uint8 or float in [0, 1]) -> deterministic latents ``[B x d]``."""
        return self.objective.encode(self.encoder(to_float(images)))

    def decode(self, z: Tensor) -> Tensor:
        """``[B x d]`` latents -> ``[B x C x S x S]`` images in (0, 1)."""
        return self.decoder(z)

    def reconstruct(self, images: Tensor) -> Tensor:
        return self.decode(self.encode(images))

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """Loss and its named terms for a batch of ``[B x C x S x S]`` images.

        Returns:
            ``loss`` (scalar), ``mse`` (unweighted pixel MSE) and the objective's
            weighted latent terms (``ks``/``cv``, ``kl`` or ``l2``).
        """
        x = to_float(images)
        z, terms = self.objective(self.encoder(x))
        if self.training and self.config.latent_noise > 0 and self.config.objective.name != "vae":
            z = z + self.config.latent_noise * torch.randn_like(z)
        mse = F.mse_loss(self.decoder(z).float(), x.float())
        weight = self.latent_weight if self.training else 1.0
        loss = self.config.lambda_rec * mse + weight * sum(t.float() for t in terms.values())
        return {"loss": loss, "mse": mse.detach(), **{k: v.detach() for k, v in terms.items()}}


def load_image_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[ImageAutoencoder, dict]:
    """Rebuild an image autoencoder from a checkpoint file alone.

    Returns:
        ``(model in eval mode, checkpoint dict)``.

    Raises:
        CheckpointError: the checkpoint holds another kind of model, or unreadable settings.
    """
    ckpt = load_checkpoint(path, map_location=device)
    if ckpt.get("kind") != "image":
        raise CheckpointError(path, f"holds a {ckpt.get('kind')!r} model, not an image autoencoder")
    try:
        config = ImageModelConfig.from_dict(ckpt["model_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(path, f"its settings are not readable: {e}") from None
    model = ImageAutoencoder(config, estimate=False)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt
