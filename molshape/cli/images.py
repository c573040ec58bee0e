"""``molshape images``: train and evaluate convolutional autoencoders on image benchmarks."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from molshape.images.presets import DATASETS, PAPER, PRESETS
from molshape.latent.objectives import OBJECTIVES
from molshape.core.rundir import runs_dir
from molshape.cli.common import (
    device_option,
    emit_summary,
    json_option,
    resolve_preset,
    seed_option,
    FiniteFloat,
    set_threads,
    threads_option,
    write_run_config,
)



@click.group("images", epilog="Example (CPU, minutes): molshape images train --dataset mnist --data DIR "
             "--preset cpu --out runs/mnist-gmm && molshape images evaluate --checkpoint runs/mnist-gmm/last.pt")
def command() -> None:
    """Image benchmarks (MNIST, Fashion-MNIST, SVHN, CelebA) with the shared latent objectives."""


def _human_train(s: dict[str, Any]) -> str:
    last = s.get("last", {})
    lines = [f"trained {s['objective']} on {s['dataset']}: {s['epochs']} epochs, {s['n_train']} images, "
             f"{s['n_parameters']:,} parameters, {s['wall_s']:.0f} s",
             f"valid loss {last.get('valid_loss', float('nan')):.4g}, pixel MSE {last.get('valid_mse', float('nan')):.4g}"]
    if "valid_cluster_acc" in last:
        lines.append(f"held-out clustering accuracy (prior components) {last['valid_cluster_acc']:.2%}")
    if "valid_inside_share" in last:
        lines.append(f"held-out latents inside the prior's 99 % radius: {last['valid_inside_share']:.1%}")
    lines.append(f"checkpoint: {s['checkpoint']}")
    return "\n".join(lines)


@command.command("train", short_help="Train an image autoencoder (gmm, vae, rae, ae).")
@click.option("--dataset", type=click.Choice(DATASETS), default="mnist", show_default=True)
@click.option("--data", type=click.Path(exists=True, path_type=Path), default=None,
              help="Local copy: folder of IDX files / .mat files / CelebA JPEGs (default: download cache).")
@click.option("--model", "objective", type=click.Choice(OBJECTIVES), default="gmm", show_default=True,
              help="Latent objective.")
@click.option("--preset", type=click.Choice(["auto", *PRESETS]), default="auto", show_default=True,
              help="paper: width 1, 100 epochs, paper lr; cpu: width 0.125, 15 epochs, lr 1e-3; auto: paper on CUDA, cpu otherwise.")
@click.option("--width", type=FiniteFloat(min=0, min_open=True), default=None, help="Channel multiplier of 128-256-512-1024 [preset].")
@click.option("--latent", "latent_dim", type=int, default=None, help="Latent dimension [paper: 10/10/100/64].")
@click.option("--components", "n_components", type=int, default=None, help="Mixture components K [10; CelebA 20].")
@click.option("--layout", type=click.Choice(["onehot", "spread", "basis"]), default=None,
              help="gmm: mixture centre layout [MNIST / Fashion-MNIST: onehot; SVHN / CelebA: spread]. onehot: "
                   "centres at CENTER_SCALE * e_k (needs K <= latent); spread: random directions >= 6 apart; "
                   "basis: unit vectors e_k, as the public GMM-DAE code (modes overlap).")
@click.option("--center-scale", type=FiniteFloat(min=0, min_open=True), default=None,
              help="gmm: factor on the layout's centres [MNIST / Fashion-MNIST onehot: 5; onehot elsewhere 10 "
                   "(Robust_GMM_DAE); others 1].")
@click.option("--lambda-rec", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Weight of the pixel MSE [MNIST / Fashion-MNIST 500; SVHN / CelebA 2000 = 1/5e-4].")
@click.option("--latent-noise", type=FiniteFloat(min=0), default=None,
              help="Std of the noise added to deterministic latents while training [1e-3].")
@click.option("--epochs", type=int, default=None, help="Epochs [preset].")
@click.option("--batch-size", type=int, default=100, show_default=True)
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=None, help="Adam learning rate [paper: 2e-4 MNIST/FMNIST, 2e-3 SVHN/CelebA].")
@click.option("--limit", type=int, default=None, help="Use only the first N images (smoke runs).")
@click.option("--test-fraction", type=FiniteFloat(0, 1, min_open=True, max_open=True), default=0.1, show_default=True,
              help="Held-out share when the data set has no separate test file.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder [runs/images/DATASET-MODEL].")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt.")
@threads_option
@device_option
@seed_option
@json_option
def train(dataset: str, data: Path | None, objective: str, preset: str, width: float | None,
          latent_dim: int | None, n_components: int | None, layout: str | None, center_scale: float | None,
          lambda_rec: float | None, latent_noise: float | None, epochs: int | None, batch_size: int, lr: float | None,
          limit: int | None, test_fraction: float, out: Path | None, resume: bool, threads: int | None, device: str,
          seed: int, as_json: bool) -> None:
    """Train an image autoencoder; writes last.pt, best.pt, metrics.csv, curves.png and config.json."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.images.data import load_images
    from molshape.images.model import ImageModelConfig
    from molshape.images.training import train_images
    from molshape.training.fit import TrainConfig

    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.latent.regularizer import GMMPrior

    set_threads(threads)
    preset = resolve_preset(preset, device)
    settings = {**PAPER[dataset], **PRESETS[preset]}
    for name, value in (("--epochs", epochs), ("--lr", lr), ("--width", width), ("--latent", latent_dim),
                        ("--components", n_components)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise click.BadParameter(f"must be > 0, got {value}", param_hint=name)
    if batch_size < 2:
        raise click.BadParameter(f"must be >= 2, got {batch_size}", param_hint="--batch-size")
    try:
        model_config = ImageModelConfig.for_dataset(
            dataset, objective=objective, width=width or settings["width"],
            latent_dim=latent_dim or settings["latent_dim"], n_components=n_components or settings["n_components"],
            layout=layout, center_scale=center_scale, lambda_rec=lambda_rec, latent_noise=latent_noise)
        if objective == "gmm":  # fail here, with exit code 2, on a layout the sizes do not allow
            prior = model_config.objective
            GMMPrior(model_config.latent_dim, prior.n_components, std=prior.std, layout=prior.layout,
                     center_scale=prior.center_scale)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--layout/--center-scale/--components/--latent") from e
    train_config = TrainConfig(epochs=epochs or settings["epochs"], batch_size=batch_size, lr=lr or settings["lr"],
                               min_lr=min(1e-4, (lr or settings["lr"]) / 10), seed=seed, device=device, limit=None)
    out = out or runs_dir() / "images" / f"{dataset}-{objective}"
    try:
        images = load_images(dataset, data, limit=limit, test_fraction=test_fraction, seed=seed)
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    write_run_config(out, {"command": "images train", "preset": preset, "model_config": model_config.to_dict(),
                           "train_config": train_config.to_dict(), "data": images.describe()})
    summary = train_images(model_config, train_config, images, out, resume=resume)
    emit_summary(summary, as_json, _human_train)


def _human_eval(s: dict[str, Any]) -> str:
    lines = [f"{s['objective']} on {s['dataset']} ({s['n_fid']} images per FID set, epoch {s['epoch']})"]
    if "fid_offline_prior" in s:
        lines.append("offline FID  prior / ex-post GMM / reconstruction / interpolation: " + " / ".join(
            f"{s['fid_offline_' + c]:.2f}" for c in ("prior", "expost", "reconstruction", "interpolation"))
            + f"  (real train vs test: {s['fid_offline_train_vs_test']:.2f})")
    if "fid_inception_prior" in s:
        lines.append("inception FID prior / ex-post GMM / reconstruction / interpolation: " + " / ".join(
            f"{s['fid_inception_' + c]:.2f}" for c in ("prior", "expost", "reconstruction", "interpolation")))
    else:
        lines.append(str(s["fid_inception"]))
    if "cluster_acc" in s:
        lines.append(f"clustering accuracy {s['cluster_acc']:.2%} ({s['cluster_method']}, held-out)")
    d = s.get("latent_diagnostics")
    if d:
        lines.append(f"in-mode: {d['inside_share']:.1%} of test latents inside the prior's {d['level']:.0%} radius "
                     f"({d['radius']:.2f} std) of their nearest component; mean nearest-centre distance "
                     f"{d['mean_nearest_distance']:.2f} std (prior {d['expected_nearest_distance']:.2f}); occupancy "
                     f"{d['occupancy_min_ratio']:.2f}-{d['occupancy_max_ratio']:.2f} x uniform (TV {d['occupancy_tv']:.3f})")
    lines += [f"figure: {p}" for p in s["figures"].values()]
    return "\n".join(lines)


@command.command("evaluate", short_help="FID columns, clustering accuracy and PNG grids of a checkpoint.")
@click.option("--checkpoint", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="last.pt or best.pt of `molshape images train`.")
@click.option("--data", type=click.Path(exists=True, path_type=Path), default=None,
              help="Local data copy when the recorded source moved.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder [CHECKPOINT's folder/eval].")
@click.option("--n-samples", type=int, default=10000, show_default=True,
              help="Images per FID set (capped at the held-out images).")
@click.option("--expost-components", type=int, default=None, help="Ex-post GMM size [prior's K, or 10].")
@click.option("--no-inception", is_flag=True, help="Skip the Inception FID even when pytorch-fid is installed.")
@threads_option
@device_option
@seed_option
@json_option
def evaluate(checkpoint: Path, data: Path | None, out: Path | None, n_samples: int, expost_components: int | None,
             no_inception: bool, threads: int | None, device: str, seed: int, as_json: bool) -> None:
    """FID (offline classifier; Inception when installed) of prior / ex-post / reconstruction /
    interpolation images, clustering accuracy, in-mode diagnostics of the test latents, and PNG
    grids (one row per component) plus latent_diagnostics.png."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.images.evaluate import evaluate_checkpoint
    from molshape.core.runtime import resolve_device, seed_everything

    set_threads(threads)
    if n_samples < 2:
        raise click.BadParameter(f"must be >= 2, got {n_samples}", param_hint="--n-samples")
    if expost_components is not None and expost_components < 1:
        raise click.BadParameter(f"must be >= 1, got {expost_components}", param_hint="--expost-components")
    out = out or checkpoint.parent / "eval"
    write_run_config(out, {"command": "images evaluate", "checkpoint": checkpoint, "data": data,
                           "n_samples": n_samples, "expost_components": expost_components, "seed": seed})
    seed_everything(seed)
    try:
        summary = evaluate_checkpoint(checkpoint, out, data=data, n_samples=n_samples,
                                      expost_components=expost_components, device=resolve_device(device),
                                      seed=seed, inception=not no_inception)
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    (out / "evaluation.json").write_text(json.dumps(summary, indent=2))
    emit_summary(summary, as_json, _human_eval)
