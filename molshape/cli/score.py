"""``molshape score``: penalized logP / QED of molecules, or the GVAE expression score."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from molshape.scoring.targets import TARGETS
from molshape.cli.cluster import check_engine, chunk_size_option, engine_failures, scheduler_option
from molshape.cli.common import EXIT_ROWS_FAILED, cap_workers, emit_summary, guard_output, json_option, read_lines
from molshape.cli.streaming import ESTIMATE_FROM


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


@click.command("score", epilog="Output: CSV with input, [name,] [smiles,] valid, score (logp: also logp, sa, cycle), "
               "reason; name is the rest of each --input line (as molshape parse reads it), smiles the neutralised "
               "molecule scored with --neutralise; "
               "to -o or stdout, in input order, written chunk by chunk (--chunk-size rows) through <-o>.partial "
               "and renamed when complete; a killed run keeps its finished chunks and --resume continues it. "
               "With --json, stdout holds one JSON document (the rows "
               "inside it as \"rows\" when there is no -o). Invalid rows get an empty score (expr: the worst "
               "score, log(1001)) and a reason; inputs longer than 1,000 characters (expr: 10,000) are not scored. "
               "The CSV is the same in this process (--workers processes) and on a Dask cluster (--scheduler). "
               "Exit status: 0 all rows valid, 3 some invalid, 2 usage error (also: Dask missing, an unreachable "
               "scheduler, a --resume of another run), 1 error.")
@click.argument("strings", nargs=-1)
@click.option("--target", type=click.Choice(list(TARGETS)), default="logp", show_default=True,
              help="; ".join(f"{t.name}: {t.help}" for t in TARGETS.values()) + ".")
@click.option("--input", "input_path", type=click.Path(path_type=Path, allow_dash=True),
              default=None, help="File of inputs, one a line (.gz ok; - = stdin): molecules: the first field; "
                   "expressions: the whole line (spaces between tokens allowed; a tab starts an id).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="CSV file (default: stdout); the command's settings go in the --json summary.")
@click.option("--workers", type=int, default=None, callback=cap_workers,
              help="Processes on this machine scoring each chunk [default: all cores].")
@scheduler_option
@chunk_size_option(20_000, "Rows per chunk (a Dask task; what a killed run loses at most). The CSV does not "
                   "depend on it.")
@click.option("--resume", is_flag=True, help="Continue the killed run of the same inputs in <-o>.partial.")
@click.option("--neutralise", is_flag=True,
              help="Score molecules with charges neutralised where a neutral form exists (RDKit's uncharger: "
                   "[NH+] -> N, [O-] -> O); the smiles column shows what was scored.")
@json_option
def command(strings: tuple[str, ...], target: str, input_path: Path | None, output: Path | None,
            workers: int | None, scheduler: str | None, chunk_size: int, resume: bool, neutralise: bool,
            as_json: bool) -> None:
    """Score molecules (SMILES) or expressions given as arguments or in a file."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.screening.score_stream import score

    if bool(strings) == (input_path is not None):
        raise click.UsageError("give inputs either as arguments or with --input FILE (one of the two)")
    if scheduler and workers:
        raise click.UsageError("--scheduler and --workers exclude each other (--workers: processes on this "
                               "machine; on Dask each task scores on one core)")
    if resume and output is None:
        raise click.UsageError("--resume continues the <-o>.partial of a killed run; pass -o FILE")
    check_engine(scheduler, None)
    guard_output(output, [input_path], side=(".partial", ".partial.json"))
    if neutralise and not TARGETS[target].molecular:
        click.echo("note: --neutralise is ignored for expressions", err=True)
    inputs, names = (list(strings), []) if strings else read_inputs(input_path, target)
    if not inputs:
        raise click.UsageError(f"{input_path}: no inputs")
    emit = None if output is not None or as_json else (lambda text: click.echo(text, nl=False))
    try:
        with engine_failures(f"{output}.partial" if output is not None else None):
            summary = score(inputs, output, target=target, names=names, neutralise=neutralise, workers=workers,
                            chunk_size=chunk_size, scheduler=scheduler, resume=resume,
                            progress=len(inputs) > 1000, announce=lambda line: click.echo(line, err=True),
                            estimate_from=ESTIMATE_FROM, emit=emit)
    except KeyboardInterrupt:
        if output is not None:
            click.echo(f"interrupted: the finished chunks are in {output}.partial; the same command with --resume "
                       "continues the run", err=True)
        raise
    summary["config"] = {"argv": sys.argv, "target": target, "input": str(input_path) if input_path else None,
                         "neutralise": neutralise, "workers": workers, "scheduler": scheduler,
                         "chunk_size": chunk_size}
    emit_summary(summary, as_json, _human)
    if summary["invalid"]:
        sys.exit(EXIT_ROWS_FAILED)


def _human(s: dict[str, Any]) -> str:
    lines = [f"scored {s['n']} ({s['target']}): {s['valid']} valid, {s['invalid']} invalid"
             + (f", mean valid score {s['mean_valid_score']:.3f}" if s["mean_valid_score"] is not None else "")
             + f" in {s['wall_s']:.2f} s"]
    lines += [f"  row {r['row']}: {r['input']!r}: {r['reason']}" for r in s["invalid_rows"][:10]]
    if s["invalid"] > 10:
        lines.append(f"  ... {s['invalid'] - 10} more (see the reason column)")
    return "\n".join(lines)
