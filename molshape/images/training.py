"""Training entry point for image autoencoders, built on the shared :func:`molshape.training.fit.fit`.

Batches are ``uint8 [B x C x S x S]`` images (one-tuples, so ``fit`` calls
``model(images)``); the model converts them to [0, 1] floats on the device. Validation
runs on the held-out ``test`` split: mean loss terms, plus for mixture priors the KS /
covariance statistics and the clustering accuracy of ``prior.assign`` against the
labels and the in-mode diagnostics of :func:`molshape.latent.diagnostics.latent_diagnostics`
(``inside_share``, ``occupancy_tv``, ``mean_nearest_distance``), so ``metrics.csv`` holds
their curves per epoch (monitoring only; :mod:`molshape.images.evaluate` gives the final
numbers).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from molshape.core.checkpoint import load_checkpoint
from molshape.images.data import ImageData, iterate_batches
from molshape.images.metrics import clustering_accuracy
from molshape.images.model import ImageAutoencoder, ImageModelConfig
from molshape.images.networks import count_parameters
from molshape.latent.diagnostics import latent_diagnostics
from molshape.core.runtime import seeded_globally
from molshape.training.fit import TrainConfig, fit
from molshape.core.runtime import EPOCH_STRIDE


@torch.no_grad()
def encode_all(model: ImageAutoencoder, images: Tensor, batch_size: int = 500) -> Tensor:
    """Deterministic latents ``[N x d]`` (float32, CPU) of ``images [N x C x S x S]``."""
    model.eval()
    dev = next(model.parameters()).device
    return torch.cat([model.encode(images[s:s + batch_size].to(dev)).float().cpu()
                      for s in range(0, images.shape[0], batch_size)])


def make_validator(data: ImageData, indices: Tensor, batch_size: int,
                   prefix: str = "valid") -> Callable[[nn.Module], dict[str, float]]:
    """Mean loss terms over ``images[indices]`` and latent statistics (see module docstring)."""

    def validate(model: nn.Module) -> dict[str, float]:
        dev = next(model.parameters()).device
        sums: dict[str, float] = defaultdict(float)
        zs = []
        for batch in iterate_batches(data.images, indices, batch_size):
            batch = batch.to(dev)
            for k, v in model(batch).items():
                sums[k] += float(v) * batch.shape[0]
            zs.append(model.encode(batch).float())
        res = {f"{prefix}_{k}": v / max(indices.numel(), 1) for k, v in sums.items()}
        z = torch.cat(zs)
        if model.config.objective.name == "gmm":
            res.update({f"{prefix}_{k}": v for k, v in model.objective.statistics(z).items()})
            diag = latent_diagnostics(z, model.prior)
            res.update({f"{prefix}_{k}": float(diag[k]) for k in ("inside_share", "occupancy_tv", "mean_nearest_distance")})
            if data.labels is not None:
                acc, _ = clustering_accuracy(data.labels[indices], model.prior.assign(z).cpu())
                res[f"{prefix}_cluster_acc"] = acc
        return res

    return validate


def train_images(model_config: ImageModelConfig, train_config: TrainConfig, data: ImageData, out_dir: Path,
                 resume: bool = False) -> dict[str, Any]:
    """Train an image autoencoder on ``data``'s train split, validating on its test split.

    Args:
        model_config: sizes and objective; the gmm objective's ``batch_size`` is set to the training batch size.
        train_config: optimisation settings (``limit`` caps the training images).
        data: from :func:`molshape.images.data.load_images`.
        out_dir: output folder (``last.pt``, ``best.pt``, ``metrics.csv``, ``curves.png``).
        resume: continue from ``out_dir/last.pt`` (its model config and split win).

    Torch's global generator is seeded with ``train_config.seed`` for the run (weight
    initialisation); the caller's generator states are given back after it.

    Returns:
        :func:`fit`'s summary plus parameter count and split sizes.
    """
    with seeded_globally(train_config.seed):
        return _train_images(model_config, train_config, data, out_dir, resume)


def _train_images(model_config: ImageModelConfig, train_config: TrainConfig, data: ImageData, out_dir: Path,
                  resume: bool) -> dict[str, Any]:
    out_dir = Path(out_dir)
    cfg = train_config
    split = {k: v.clone() for k, v in data.split.items()}
    if resume and (out_dir / "last.pt").is_file():
        ckpt = load_checkpoint(out_dir / "last.pt")
        if ckpt.get("kind") != "image" or ckpt["data"]["sha256"] != data.source_sha256:
            raise ValueError(f"--resume: {out_dir / 'last.pt'} was trained on other data or is not an image model")
        model_config, split = ImageModelConfig.from_dict(ckpt["model_config"]), ckpt["split"]
    else:
        split["train"] = split["train"][:cfg.limit]
        model_config = dataclasses.replace(model_config, objective=model_config.objective.fitted_to_batch(cfg.batch_size))
    if split["train"].numel() < cfg.batch_size or split["test"].numel() == 0:
        raise ValueError(f"{data.name}: {split['train'].numel()} training images for batch size "
                         f"{cfg.batch_size} and {split['test'].numel()} held-out images; need more data")
    model = ImageAutoencoder(model_config)

    def batches(epoch: int) -> Iterable[tuple[Tensor]]:
        model.start_epoch(epoch)  # latent-term warm-up (a pure function of the epoch: resume-safe)
        # drop_last: the KS/CV weights are estimated for full batches of cfg.batch_size
        for b in iterate_batches(data.images, split["train"], cfg.batch_size, shuffle=True,
                                 seed=cfg.seed * EPOCH_STRIDE + epoch, drop_last=True):
            yield (b,)

    extra = {"kind": "image", "model_config": model_config.to_dict(), "dataset": data.name,
             "data": data.describe(), "split": split}
    validate = make_validator(data, split["test"], max(cfg.batch_size, 100))
    summary = fit(model, batches, validate, cfg, out_dir, extra, resume=resume)
    summary.update(n_parameters=count_parameters(model), n_train=int(split["train"].numel()),
                   n_test=int(split["test"].numel()), dataset=data.name, objective=model_config.objective.name)
    return summary
