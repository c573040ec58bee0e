"""``molshape encode``: strings of a file -> their latents (``.npy``, ``.csv`` or ``.parquet``)."""

from __future__ import annotations

import csv
import io
import sys
import time
from pathlib import Path
from typing import Any

import click

from molshape.cli.common import (EXIT_ROWS_FAILED, checkpoint_option, clip, device_option, emit_summary, guard_output,
                                 json_option, load_run_model, read_text, threads_option)

#: header words of a plain-text input's first line (skipped); CSV columns read as the input and its name
INPUT_COLUMNS = ("smiles", "expression", "string", "input")
NAME_COLUMNS = ("name", "id", "title", "compound")
#: failed rows listed in the summary (all are counted)
LISTED = 50


def read_named_rows(path: Path, grammar: str) -> list[tuple[int, str, str | None]]:
    """``(line, string, name or None)`` per row of FILE; blank lines are not rows.

    ``.csv`` (or ``.csv.gz``): the ``smiles`` (or ``expression`` / ``string`` / ``input``) column and,
    when there is one, the ``name`` (or ``id`` / ``title`` / ``compound``) column. Other files: one
    string a line, the rest of the line its name (for expressions, what follows a tab).
    """
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.cli.parse import split_line

    text = read_text(path, "FILE")
    if str(path).removesuffix(".gz").lower().endswith(".csv"):
        return _csv_rows(path, text)
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if not rows and line.strip().lower() in INPUT_COLUMNS:
            continue  # a header line
        string, name = split_line(line, grammar)
        rows.append((n, string, name))
    return rows


def _csv_rows(path: Path, text: str) -> list[tuple[int, str, str | None]]:
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    col = next((header.index(c) for c in INPUT_COLUMNS if c in header), None)
    if col is None:
        raise click.BadParameter(f"{path} line 1: no {' / '.join(INPUT_COLUMNS)} column (columns: {header})",
                                 param_hint="FILE")
    name_col = next((header.index(c) for c in NAME_COLUMNS if c in header), None)
    rows = []
    start = reader.line_num + 1
    for record in reader:
        if any(field.strip() for field in record):
            string = record[col].strip() if len(record) > col else ""
            name = record[name_col].strip() if name_col is not None and len(record) > name_col else None
            rows.append((start, string, name if name_col is not None else None))
        start = reader.line_num + 1
    return rows


@click.command("encode", epilog="Output by suffix: .npy (the N x d float32 latents alone, in input order), .csv "
               "or .parquet (line, name when the input has names, input, z0 .. z{d-1}); written atomically (the "
               "settings go in the --json summary). Rows that do not parse are skipped, counted and listed (summary, with "
               "--json on stdout). Exit status: 0 all rows encoded, 3 some skipped, 2 usage error, 1 error.")
@click.argument("input_path", metavar="FILE", type=click.Path(path_type=Path, allow_dash=True))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Latents file: .npy, .csv or .parquet (parquet needs pyarrow).")
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Sequences encoded per model call.")
@click.option("--refine", "refine", default=0, show_default=True, type=click.IntRange(min=0), metavar="STEPS",
              help="Refine each latent for up to STEPS gradient steps until it decodes back to its input "
                   "(about 1-2 s a molecule on one core at 300; 0: the encoder's latent). Tables get a "
                   "decodes_back column.")
@checkpoint_option
@json_option
@threads_option
@device_option
def command(input_path: Path, output: Path, force: bool, batch_size: int, refine: int, checkpoint: Path | None,
            grammar: str, as_json: bool, threads: int | None, device: str) -> None:
    """Encode the SMILES (or expressions) of FILE, one a line ('-' = stdin; .gz and .csv ok), to latents."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.api import Model
    from molshape.gvae.latent_files import latent_format, write_latents

    guard_output(output, [input_path, checkpoint])
    try:
        latent_format(output)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="-o") from None
    if output.exists() and not force:
        raise click.BadParameter(f"{output} exists; pass --force to replace it", param_hint="-o")
    path, dev, net, g, ckpt = load_run_model(checkpoint, grammar, device, threads)
    rows = read_named_rows(input_path, g.name)
    if not rows:
        raise click.UsageError(f"{input_path}: no rows")
    start = time.perf_counter()
    model = Model(net, g, ckpt, path)
    encoded = model.encode_many([s for _, s, _ in rows], batch_size, progress=True, refine=refine)
    if not encoded.index:
        raise click.ClickException(f"{input_path}: no row could be encoded (first: line {rows[0][0]}: "
                                   f"{encoded.failed[0][2]})")
    kept = [rows[i] for i in encoded.index]
    names = [name for _, _, name in kept] if any(name is not None for _, _, name in rows) else None
    write_latents(output, encoded.z, [s for _, s, _ in kept], [n for n, _, _ in kept], names,
                  None if encoded.exact is None else encoded.exact.tolist())
    wall = time.perf_counter() - start
    failed = [{"line": rows[i][0], "input": clip(s), "reason": why} for i, s, why in encoded.failed]
    summary: dict[str, Any] = {
        "checkpoint": str(path), "grammar": g.name, "input": str(input_path), "output": str(output),
        "format": output.suffix.lower().lstrip("."), "rows": len(rows), "encoded": len(encoded.index),
        "skipped": len(failed), "skipped_rows": failed[:LISTED], "latent_dim": int(encoded.z.shape[1]),
        "names": names is not None, "refine_steps": refine,
        "decodes_back": None if encoded.exact is None else int(encoded.exact.sum()),
        "wall_s": round(wall, 3), "device": str(dev),
        "config": {"argv": sys.argv, "checkpoint": str(path), "input": str(input_path), "batch_size": batch_size,
                   "refine": refine, "force": force},
    }
    emit_summary(summary, as_json, _human)
    if failed:
        sys.exit(EXIT_ROWS_FAILED)


def _human(s: dict[str, Any]) -> str:
    lines = [f"encoded {s['encoded']:,} of {s['rows']:,} rows to {s['output']} ({s['latent_dim']} dimensions"
             + (", names kept" if s["names"] else "") + f") in {s['wall_s']:.1f} s; {s['skipped']} skipped"]
    if s["decodes_back"] is not None:
        lines.append(f"refined for up to {s['refine_steps']} steps: {s['decodes_back']:,} of {s['encoded']:,} "
                     "latents decode back to their input")
    lines += [f"  line {r['line']}: {r['input']!r}: {r['reason']}" for r in s["skipped_rows"][:10]]
    if s["skipped"] > 10:
        lines.append(f"  ... {s['skipped'] - 10} more (--json lists the first {LISTED})")
    return "\n".join(lines)
