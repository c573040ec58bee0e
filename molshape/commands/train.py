"""``molshape train``: train a grammar autoencoder (gmm, vae, rae, ae) on SMILES or expressions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from molshape.commands.common import (device_option, emit_summary, json_option, resolve_preset, seed_option,
                                      set_threads, threads_option, write_run_config)


@click.command(name="train")
@click.option("--grammar", "grammar_name", type=click.Choice(["smiles", "expr"]), default="smiles", show_default=True)
@click.option("--model", "objective", type=click.Choice(["gmm", "vae", "rae", "ae"]), default="gmm", show_default=True,
              help="Latent objective: gmm (GMM-DAE), vae (GVAE), rae (RAE), ae (none).")
@click.option("--preset", type=click.Choice(["auto", "cpu", "paper"]), default="auto", show_default=True,
              help="Model sizes: paper = GVAE's, cpu = small enough for ~1 h of CPU training; "
                   "auto = paper on CUDA, cpu otherwise.")
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Data file (default: the standard set).")
@click.option("--limit", type=int, default=None, help="Train on the first N training items.")
@click.option("--valid-limit", type=int, default=None, help="Validate/test on the first N items.")
@click.option("--epochs", type=int, default=None, help="Default: the preset's.")
@click.option("--batch-size", type=int, default=None, help="Default: the preset's.")
@click.option("--lr", type=float, default=None, help="Adam learning rate (default 1e-3).")
@click.option("--latent-dim", type=int, default=None)
@click.option("--hidden", type=int, default=None, help="Decoder GRU width.")
@click.option("--layers", type=int, default=None, help="Decoder GRU layers.")
@click.option("--components", type=int, default=None, help="gmm: mixture components K (default 10).")
@click.option("--std", type=float, default=None, help="gmm: component std s (default 1).")
@click.option("--layout", type=click.Choice(["spread", "basis", "standard"]), default=None,
              help="gmm: centre layout (default spread).")
@click.option("--lambda-rec", type=float, default=None, help="Reconstruction weight (default: the heuristic).")
@click.option("--feed-rules/--no-feed-rules", default=None, help="Decoder reads the previous rule (not GVAE).")
@click.option("--no-bucket", is_flag=True, help="Pad every batch to the full length (slower; for comparison).")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Wall-clock budget: stop at the first step past it, validate and checkpoint (the last "
                   "epoch may be partial; --resume starts the next one).")
@click.option("--grad-clip", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Clip the gradient norm to this value (default: no clipping, as GVAE).")
@click.option("--amp/--no-amp", default=True, show_default=True, help="Mixed precision on CUDA.")
@threads_option
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Default: runs/<grammar>-<model>-<preset>.")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@device_option
@seed_option
@json_option
def command(grammar_name: str, objective: str, preset: str, data: Path | None, limit: int | None,
            valid_limit: int | None, epochs: int | None, batch_size: int | None, lr: float | None,
            latent_dim: int | None, hidden: int | None, layers: int | None, components: int | None,
            std: float | None, layout: str | None, lambda_rec: float | None, feed_rules: bool | None,
            no_bucket: bool, max_minutes: float | None, grad_clip: float | None, amp: bool, threads: int | None, out: Path | None, resume: bool, no_progress: bool,
            device: str, seed: int, as_json: bool) -> None:
    """Train a grammar autoencoder; writes last.pt, best.pt, metrics.csv, curves.png, config.json.

    Runs data-parallel under ``torchrun --nproc_per_node N -m molshape train ...``.
    """
    import torch

    from molshape.datasets import load_dataset
    from molshape.model import PRESETS
    from molshape.train import TRAIN_DEFAULTS, TrainConfig, train_grammar

    for name, value in (("--limit", limit), ("--epochs", epochs), ("--batch-size", batch_size),
                        ("--valid-limit", valid_limit)):
        if value is not None and value < 1:
            raise click.BadParameter(f"must be >= 1, got {value}", param_hint=name)
    set_threads(threads)
    preset = resolve_preset(preset, device)
    defaults = TRAIN_DEFAULTS[grammar_name][preset]
    model_cfg = PRESETS[grammar_name][preset].replace(
        objective=objective, latent_dim=latent_dim, dec_hidden=hidden, dec_layers=layers, n_components=components,
        std=std, layout=layout, lambda_rec=lambda_rec, decoder_feed_rules=feed_rules)
    train_cfg = TrainConfig(
        epochs=epochs or defaults["epochs"], batch_size=batch_size or defaults["batch_size"],
        lr=lr or TrainConfig.lr, seed=seed, device=device, amp=amp, limit=limit or defaults.get("limit"),
        valid_limit=valid_limit or defaults.get("valid_limit"), bucket=not no_bucket, progress=not no_progress,
        max_minutes=max_minutes, grad_clip=grad_clip)
    out = out or Path("runs") / f"{grammar_name}-{objective}-{preset}"
    try:
        prepared = load_dataset(grammar_name, data=data, limit=train_cfg.limit, progress=not no_progress)
    except FileNotFoundError as e:
        raise click.ClickException(str(e)) from e
    params: dict[str, Any] = {"grammar": grammar_name, "preset": preset, "data": prepared.source,
                              "model_config": model_cfg.to_dict(), "train_config": train_cfg.to_dict(),
                              "resume": resume, "threads": torch.get_num_threads()}
    if int(os.environ.get("RANK", "0")) == 0:
        write_run_config(out, params)
    try:
        summary = train_grammar(model_cfg, train_cfg, prepared, out, resume=resume)
    except (FileNotFoundError, ValueError) as e:  # --resume without a checkpoint, data mismatch
        raise click.ClickException(str(e)) from e
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if summary.get("rank", 0) != 0:
        return
    summary["out"] = str(out)
    emit_summary(summary, as_json, _human)


def _human(s: dict[str, Any]) -> str:
    last = s.get("last", {})
    stop = " (stopped by --max-minutes)" if s.get("stopped_by_time_limit") else ""
    lines = [f"trained {s['epochs']} epochs{stop} in {s['wall_s']:.0f} s ({s['items_per_s'] or 0:.0f} items/s) -> {s['out']}",
             f"best valid loss {s['best_valid_loss']:.4g}; last valid recon acc {last.get('valid_recon_acc', float('nan')):.3f}"]
    if "test_recon_acc" in s:
        lines.append(f"test reconstruction accuracy (best.pt): {s['test_recon_acc']:.3f}")
    return "\n".join(lines)
