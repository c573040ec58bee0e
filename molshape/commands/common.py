"""Options and output conventions shared by every subcommand."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import click

device_option = click.option(
    "--device", default="auto", show_default=True,
    help="auto (CUDA when present, else CPU), cpu, cuda, cuda:1, ...")
json_option = click.option("--json", "as_json", is_flag=True, help="Print a machine-readable JSON summary on stdout.")
seed_option = click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")


def emit_summary(summary: dict[str, Any], as_json: bool, human: Callable[[dict[str, Any]], str] | None = None) -> None:
    """Print ``summary`` as one JSON object on stdout (``--json``) or as readable lines on stderr."""
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=_jsonable))
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
