"""``molshape score``: penalized logP / QED of molecules, or the GVAE expression score."""

from __future__ import annotations

import csv
import gzip
import io
import sys
import time
from pathlib import Path
from typing import Any

import click

from molshape.commands.common import emit_summary, json_option, write_run_config

TARGETS = ("logp", "qed", "expr")


def read_lines(path: Path) -> list[str]:
    """First field of each line of FILE (``-`` = stdin; ``.gz`` ok); empty lines kept (reported)."""
    if str(path) == "-":
        text = sys.stdin.read()
    elif not path.is_file():
        raise click.BadParameter(f"no such file: {path}", param_hint="--input")
    else:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as f:
            text = f.read()
    lines = text.splitlines()
    if lines and lines[0].strip().lower() in ("smiles", "expression", "string"):
        lines = lines[1:]  # a header line
    return [line.split()[0] if line.split() else "" for line in lines]


def score_rows(target: str, strings: list[str], workers: int | None, progress: bool) -> list[dict[str, Any]]:
    """One row per input: input, valid, score (+ logP components), reason."""
    if target == "expr":
        from molshape.expr_score import score_with_reason

        rows = []
        for s in strings:
            value, reason = score_with_reason(s)
            rows.append({"input": s, "valid": reason is None, "score": value, "reason": reason or ""})
        return rows
    from molshape.chem import score_table

    rows = []
    for r in score_table(strings, workers=workers, progress=progress, with_qed=target == "qed"):
        row = {"input": r.smiles, "valid": r.valid, "score": r.penalized_logp if target == "logp" else r.qed}
        if target == "logp":
            row.update(logp=r.logp, sa=r.sa, cycle=r.cycle)
        row["reason"] = r.reason or ""
        rows.append(row)
    return rows


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "" if v != v else f"{v:.6g}"
    return v


@click.command("score", epilog="Output: CSV with input, valid, score (logp: also logp, sa, cycle), reason. "
               "Invalid rows get an empty score (expr: the worst score, log(1001)) and a reason.")
@click.argument("strings", nargs=-1)
@click.option("--target", type=click.Choice(TARGETS), default="logp", show_default=True,
              help="logp: GVAE standardised penalized logP (higher is better); qed; expr: GVAE expression "
                   "score (lower is better).")
@click.option("--input", "input_path", type=click.Path(dir_okay=False, path_type=Path, allow_dash=True),
              default=None, help="File of inputs, one a line (first field; .gz ok; - = stdin).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV file (default: stdout). Its config is written beside it.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes for large molecule batches [default: all cores].")
@json_option
def command(strings: tuple[str, ...], target: str, input_path: Path | None, output: Path | None,
            workers: int | None, as_json: bool) -> None:
    """Score molecules (SMILES) or expressions given as arguments or in a file."""
    if bool(strings) == (input_path is not None):
        raise click.UsageError("give inputs either as arguments or with --input FILE (one of the two)")
    inputs = list(strings) if strings else read_lines(input_path)
    if not inputs:
        raise click.UsageError(f"{input_path}: no inputs")
    start = time.perf_counter()
    rows = score_rows(target, inputs, workers, progress=len(inputs) > 1000)
    wall = time.perf_counter() - start

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows({k: _fmt(v) for k, v in r.items()} for r in rows)
    if output is None:
        click.echo(buf.getvalue(), nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(buf.getvalue())
        write_run_config(output.parent, {"target": target, "input": input_path, "n": len(inputs), "workers": workers},
                         name=f"{output.name}.config.json")
    import numpy as np

    valid = [r for r in rows if r["valid"]]
    invalid = [(i + 1, r["input"], r["reason"]) for i, r in enumerate(rows) if not r["valid"]]
    scores = np.array([r["score"] for r in valid], dtype=float)
    summary = {
        "target": target, "n": len(rows), "valid": len(valid), "invalid": len(invalid),
        "mean_valid_score": float(scores.mean()) if len(scores) else None,
        "best": (max if target != "expr" else min)(valid, key=lambda r: r["score"])["input"] if valid else None,
        "invalid_rows": [{"row": i, "input": s, "reason": why} for i, s, why in invalid[:50]],
        "wall_s": round(wall, 3), "output": str(output) if output else None,
    }
    emit_summary(summary, as_json, _human)


def _human(s: dict[str, Any]) -> str:
    lines = [f"scored {s['n']} ({s['target']}): {s['valid']} valid, {s['invalid']} invalid"
             + (f", mean valid score {s['mean_valid_score']:.3f}" if s["mean_valid_score"] is not None else "")
             + f" in {s['wall_s']:.2f} s"]
    lines += [f"  row {r['row']}: {r['input']!r}: {r['reason']}" for r in s["invalid_rows"][:10]]
    if s["invalid"] > 10:
        lines.append(f"  ... {s['invalid'] - 10} more (see the reason column)")
    return "\n".join(lines)
