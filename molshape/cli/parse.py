"""``molshape parse``: strings -> production sequences, one JSON object per input line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Iterator

import click

from molshape.core.atomic import atomic_write
from molshape.grammar.cfg import GRAMMARS
from molshape.cli.common import (EXIT_ROWS_FAILED, cap_workers, emit_summary, guard_output, json_option,
                                      read_lines)

#: Files at least this long get a progress bar.
PROGRESS_LINES = 10_000


def split_line(line: str, grammar: str) -> tuple[str, str | None]:
    """(string, id or None) of one input line.

    SMILES: anything after the first whitespace is the id. Expressions may contain
    spaces between tokens, so only a tab separates the id.
    """
    line = line.rstrip("\r\n")
    if grammar == "expr":
        text, _, ident = line.partition("\t")
        return text.strip(), ident.strip() or None
    parts = line.strip().split(None, 1)
    if not parts:
        return "", None
    return parts[0], (parts[1].strip() if len(parts) > 1 else None)


def _records(lines: list[str], grammar: str, workers: int | None, first: int = 1) -> Iterator[dict]:
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.grammar.cfg import load_grammar
    from molshape.grammar.parser import parse_many

    pairs = [split_line(line, grammar) for line in lines]
    results = parse_many(load_grammar(grammar), [s for s, _ in pairs], workers=workers,
                         progress=len(pairs) >= PROGRESS_LINES)
    for n, ((text, ident), result) in enumerate(zip(pairs, results), start=first):
        record: dict = {"line": n, "input": text}
        if ident is not None:
            record["id"] = ident
        if isinstance(result, list):
            record["rules"] = result
        else:
            record["error"] = result.reason if result.position is None else f"position {result.position}: {result.reason}"
        yield record


@click.command(
    "parse",
    epilog="Input lines: for --grammar smiles anything after the first whitespace is an id; "
    "for --grammar expr spaces separate tokens, so the whole line is the expression unless it "
    "holds a tab, after which comes the id. Ids are kept in the output as \"id\". "
    "Output: JSON Lines to -o (written atomically: a failed run leaves an existing file as it was) "
    "or to stdout; the summary goes to stderr, or with --json to stdout as one JSON document "
    "(holding the records as \"records\" when there is no -o). "
    "Exit status: 0 all lines parsed, 3 some failed, 2 usage error, 1 error.",
)
@click.option("--grammar", "grammar", type=click.Choice(GRAMMARS), default="smiles",
              show_default=True,
              help="Grammar to parse with.")
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="JSON Lines output (default: stdout). Its config is written beside it.")
@click.option("--workers", type=int, default=None, callback=cap_workers,
              help="Processes (default: all cores; at most the core count).")
@json_option
def command(grammar: str, input_path: str, output: Path | None, workers: int | None, as_json: bool) -> None:
    """Parse INPUT (one string a line; '-' for stdin; may be .gz) into leftmost derivations.

    Writes one JSON object per input line, in order: {"line", "input", "rules"} or
    {"line", "input", "error"} (1-based lines of the file; empty lines get an error, never
    dropped; a header line such as "smiles" is skipped).
    """
    guard_output(output, [input_path])
    start = time.perf_counter()
    lines, first = read_lines(input_path, "INPUT")
    counts = {"parsed": 0, "failed": 0}
    records = _counted(_records(lines, grammar, workers, first), counts)
    kept: list[dict] = []
    if output is not None:
        with atomic_write(output) as sink:  # an existing output stays intact until the new one is complete
            sink.writelines(_jsonl(records))
    elif as_json:  # one JSON document on stdout: the records go inside it
        kept = list(records)
    else:
        for line in _jsonl(records):
            sys.stdout.write(line)
    summary = {"grammar": grammar, "input": input_path, "output": str(output) if output else "-",
               "lines": len(lines), **counts, "seconds": round(time.perf_counter() - start, 3)}
    summary["config"] = {"argv": sys.argv, "grammar": grammar, "input": input_path, "workers": workers}
    if as_json:
        emit_summary({**summary, "records": kept} if output is None else summary, as_json=True)
    else:
        emit_summary(summary, as_json=False,
                     human=lambda s: f"parse: {s['parsed']} parsed, {s['failed']} failed of {s['lines']} lines "
                                     f"({s['seconds']} s)")
    if counts["failed"]:
        sys.exit(EXIT_ROWS_FAILED)


def _counted(records: Iterator[dict], counts: dict[str, int]) -> Iterator[dict]:
    for record in records:
        counts["parsed" if "rules" in record else "failed"] += 1
        yield record


def _jsonl(records: Iterator[dict]) -> Iterator[str]:
    for record in records:
        yield json.dumps(record, separators=(",", ":")) + "\n"
