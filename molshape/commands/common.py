"""Options and output conventions shared by every subcommand."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import click

from molshape.runtime import json_safe

device_option = click.option(
    "--device", default="auto", show_default=True,
    help="auto (CUDA when present, else CPU), cpu, cuda, cuda:1, ...")
json_option = click.option("--json", "as_json", is_flag=True, help="Print a machine-readable JSON summary on stdout.")
seed_option = click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")


def checkpoint_option(f):
    """``--checkpoint`` plus ``--grammar``, which picks a shipped model when none is given."""
    f = click.option("--grammar", type=click.Choice(["smiles", "expr"]), default="smiles", show_default=True,
                     help="Grammar of the shipped model used when --checkpoint is not given.")(f)
    return click.option("--checkpoint", "checkpoint", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="Trained model (best.pt / last.pt). Default: the shipped model for --grammar.")(f)


threads_option = click.option("--threads", type=click.IntRange(min=1), default=None,
                              help="CPU threads for torch (1 is best on a busy machine).")


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def resolve_checkpoint(checkpoint: Path | None, grammar: str) -> Path:
    """The given checkpoint, or the shipped default for ``grammar``; a usage error if neither."""
    if checkpoint is not None:
        if not checkpoint.is_file():
            raise click.BadParameter(f"no such file: {checkpoint}", param_hint="--checkpoint")
        return checkpoint
    try:
        from molshape.pretrained import default_checkpoint

        return default_checkpoint(grammar)
    except (ImportError, FileNotFoundError, ValueError) as e:
        raise click.UsageError(f"--checkpoint is required: {e}") from e


def emit_summary(summary: dict[str, Any], as_json: bool, human: Callable[[dict[str, Any]], str] | None = None) -> None:
    """Print ``summary`` as one JSON object on stdout (``--json``) or as readable lines on stderr."""
    if as_json:
        click.echo(json.dumps(json_safe(summary), indent=2, default=_jsonable, allow_nan=False))
    else:
        text = human(summary) if human else "\n".join(f"{k}: {v}" for k, v in summary.items())
        click.echo(text, err=True)


def write_run_config(out_dir: Path, params: dict[str, Any], name: str = "config.json") -> Path:
    """Record the command's resolved parameters next to its outputs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    path.write_text(json.dumps({"argv": sys.argv, **params}, indent=2, default=_jsonable))
    return path


def _jsonable(x: Any) -> Any:
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "item"):
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def resolve_preset(preset: str, device: str) -> str:
    """``auto`` -> ``paper`` on CUDA, ``cpu`` otherwise: one code path, sized for the device."""
    if preset != "auto":
        return preset
    from molshape.runtime import resolve_device

    try:
        return "paper" if resolve_device(device).type == "cuda" else "cpu"
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--device") from e


def inference_options(f):
    """``--seed --device --threads --json``: the options every command that runs a trained model takes."""
    for option in (json_option, threads_option, device_option, seed_option):
        f = option(f)
    return f


def load_run_model(checkpoint: Path | None, grammar: str, device: str, threads: int | None):
    """Set threads, resolve the checkpoint (shipped default) and device, and load the model.

    Returns:
        ``(checkpoint path, device, model, grammar, checkpoint dict)``.
    """
    from molshape.model import load_model
    from molshape.runtime import resolve_device

    set_threads(threads)
    path = resolve_checkpoint(checkpoint, grammar)
    try:
        dev = resolve_device(device)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--device") from e
    model, g, ckpt = load_model(path, dev)
    return path, dev, model, g, ckpt
