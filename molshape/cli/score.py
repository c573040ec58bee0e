"""``molshape score``: penalized logP / QED of molecules, or the GVAE expression score."""

from __future__ import annotations

import csv
import io
import sys
import time
from pathlib import Path
from typing import Any

import click

from molshape.core.atomic import write_text
from molshape.scoring.targets import TARGETS, score_rows
from molshape.cli.common import (EXIT_ROWS_FAILED, cap_workers, clip, emit_summary, guard_output, json_option,
                                      read_lines)


def read_inputs(path: Path, target: str) -> tuple[list[str], list[str | None]]:
    """The inputs of FILE (``-`` = stdin; ``.gz`` ok), one a line, empty lines kept (reported),
    and their names (the rest of the line), as ``molshape parse`` reads them.

    Molecules: the first field of a line (a name may follow after whitespace). Expressions: the
    whole line, in the data set's format (tokens separated by spaces; a tab starts a name).
    """
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.cli.parse import split_line

    lines, _ = read_lines(path, "--input")
    pairs = [split_line(line, "smiles" if TARGETS[target].molecular else "expr") for line in lines]
    return [s for s, _ in pairs], [name for _, name in pairs]


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "" if v != v else f"{v:.6g}"
    return v


@click.command("score", epilog="Output: CSV with input, [name,] [smiles,] valid, score (logp: also logp, sa, cycle), "
               "reason; name is the rest of each --input line (as molshape parse reads it), smiles the neutralised "
               "molecule scored with --neutralise; "
               "to -o (written atomically) or stdout. With --json, stdout holds one JSON document (the rows "
               "inside it as \"rows\" when there is no -o). Invalid rows get an empty score (expr: the worst "
               "score, log(1001)) and a reason; inputs longer than 1,000 characters (expr: 10,000) are not scored. "
               "Exit status: 0 all rows valid, 3 some invalid, 2 usage error, 1 error.")
@click.argument("strings", nargs=-1)
@click.option("--target", type=click.Choice(list(TARGETS)), default="logp", show_default=True,
              help="; ".join(f"{t.name}: {t.help}" for t in TARGETS.values()) + ".")
@click.option("--input", "input_path", type=click.Path(path_type=Path, allow_dash=True),
              default=None, help="File of inputs, one a line (.gz ok; - = stdin): molecules: the first field; "
                   "expressions: the whole line (spaces between tokens allowed; a tab starts an id).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="CSV file (default: stdout); the command's settings go in the --json summary.")
@click.option("--workers", type=int, default=None, callback=cap_workers,
              help="Processes for large molecule batches [default: all cores].")
@click.option("--neutralise", is_flag=True,
              help="Score molecules with charges neutralised where a neutral form exists (RDKit's uncharger: "
                   "[NH+] -> N, [O-] -> O); the smiles column shows what was scored.")
@json_option
def command(strings: tuple[str, ...], target: str, input_path: Path | None, output: Path | None,
            workers: int | None, neutralise: bool, as_json: bool) -> None:
    """Score molecules (SMILES) or expressions given as arguments or in a file."""
    if bool(strings) == (input_path is not None):
        raise click.UsageError("give inputs either as arguments or with --input FILE (one of the two)")
    guard_output(output, [input_path])
    if neutralise and not TARGETS[target].molecular:
        click.echo("note: --neutralise is ignored for expressions", err=True)
    inputs, names = (list(strings), []) if strings else read_inputs(input_path, target)
    if not inputs:
        raise click.UsageError(f"{input_path}: no inputs")
    start = time.perf_counter()
    rows = score_rows(target, inputs, workers, progress=len(inputs) > 1000, neutralise=neutralise)
    if any(names):
        rows = [{"input": r["input"], "name": name or "", **r} for r, name in zip(rows, names)]
    wall = time.perf_counter() - start

    text = _csv(rows)
    if output is not None:
        write_text(output, text)
    elif not as_json:
        click.echo(text, nl=False)
    summary = _summary(target, rows, wall, output)
    summary["config"] = {"argv": sys.argv, "target": target, "input": str(input_path) if input_path else None,
                         "neutralise": neutralise, "workers": workers}
    if as_json and output is None:
        summary["rows"] = rows
    emit_summary(summary, as_json, _human)
    if summary["invalid"]:
        sys.exit(EXIT_ROWS_FAILED)


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows({k: _fmt(v) for k, v in r.items()} for r in rows)
    return buf.getvalue()


def _summary(target: str, rows: list[dict[str, Any]], wall: float, output: Path | None) -> dict[str, Any]:
    import numpy as np

    valid = [r for r in rows if r["valid"]]
    invalid = [(i + 1, r["input"], r["reason"]) for i, r in enumerate(rows) if not r["valid"]]
    scores = np.array([r["score"] for r in valid], dtype=float)
    return {
        "target": target, "n": len(rows), "valid": len(valid), "invalid": len(invalid),
        "mean_valid_score": float(scores.mean()) if len(scores) else None,
        "best": (max if target != "expr" else min)(valid, key=lambda r: r["score"])["input"] if valid else None,
        "invalid_rows": [{"row": i, "input": clip(s), "reason": why} for i, s, why in invalid[:50]],
        "wall_s": round(wall, 3), "output": str(output) if output else None,
    }


def _human(s: dict[str, Any]) -> str:
    lines = [f"scored {s['n']} ({s['target']}): {s['valid']} valid, {s['invalid']} invalid"
             + (f", mean valid score {s['mean_valid_score']:.3f}" if s["mean_valid_score"] is not None else "")
             + f" in {s['wall_s']:.2f} s"]
    lines += [f"  row {r['row']}: {r['input']!r}: {r['reason']}" for r in s["invalid_rows"][:10]]
    if s["invalid"] > 10:
        lines.append(f"  ... {s['invalid'] - 10} more (see the reason column)")
    return "\n".join(lines)
