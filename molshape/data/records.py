"""Records of a molecule or expression data file: ``(line number, string)``, nothing dropped silently.

Reads ``.gz`` or plain text (a SMILES then an optional id per line, or an expression with
space-separated tokens) and ``.csv`` files by their ``smiles`` column. Line numbers are
kept so every later error can name the line it came from. A UTF-8 byte-order mark and a
header line (``smiles``, ``expression`` or ``string`` alone) are skipped, as every command
skips them (:data:`HEADERS`); a truncated or corrupt ``.gz`` is refused naming the file.

Example:
    >>> read_records("zinc250k.smi.gz")[:1]      # doctest: +SKIP
    [(1, 'CC(C)(C)c1ccc2occ(CC(=O)Nc3ccccc3F)c2c1')]
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from pathlib import Path

from molshape.core.errors import InputError

#: a first line holding only one of these words (any case) is a header, not a record
HEADERS = ("smiles", "expression", "string")


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")  # -sig: a byte-order mark is not part of line 1


def _is_csv(path: Path) -> bool:
    return path.name.removesuffix(".gz").endswith(".csv")


def read_records(path: str | Path, tokens: str | None = None) -> list[tuple[int, str]]:
    """``(line number, string)`` for each record of a data file (line numbers 1-based).

    Args:
        path: ``.gz`` or plain text; ``.csv`` (or ``.csv.gz``) is read by its ``smiles``
            column (surrounding whitespace, e.g. the chemical-VAE newline, stripped).
        tokens: how to read a text line: ``"first"`` keeps the first whitespace field (a
            SMILES followed by an id), ``"join"`` concatenates all fields (an expression
            with space-separated tokens). None decides per file: ``join`` when some line
            has 3+ fields and every field is at most 4 characters (expression tokens are),
            else ``first``.

    Blank lines are not records and are skipped.
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        raise InputError(f"data file {path} is not a regular file (a folder, pipe or device); data is read more "
                         "than once, so save it to a file first")
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} does not exist")
    try:
        with _open_text(path) as f:
            if _is_csv(path):
                return _read_csv(path, f)
            lines = [(i, line.split()) for i, line in enumerate(f, start=1)]
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise InputError(f"data file {path} is a truncated or corrupt gzip file ({e or type(e).__name__}); "
                         "download or copy it again") from None
    lines = [(i, fields) for i, fields in lines if fields]
    if lines and len(lines[0][1]) == 1 and lines[0][1][0].lower() in HEADERS:
        lines = lines[1:]
    if tokens is None:
        tokens = _guess_tokens([fields for _, fields in lines[:200]])
    if tokens == "join":
        return [(i, "".join(fields)) for i, fields in lines]
    if tokens == "first":
        return [(i, fields[0]) for i, fields in lines]
    raise ValueError(f"tokens must be 'first', 'join' or None, not {tokens!r}")


def _guess_tokens(sample: list[list[str]]) -> str:
    spaced = any(len(f) >= 3 for f in sample)
    short = all(len(x) <= 4 for f in sample for x in f)
    return "join" if spaced and short else "first"


def _read_csv(path: Path, f: io.TextIOBase) -> list[tuple[int, str]]:
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None:
        raise ValueError(f"{path}: empty CSV file")
    names = [h.strip().lower() for h in header]
    if "smiles" not in names:
        raise ValueError(f"{path} line 1: CSV header has no 'smiles' column (columns: {header})")
    col = names.index("smiles")
    out: list[tuple[int, str]] = []
    start = reader.line_num + 1
    for row in reader:
        # a quoted field may span lines; report the line the record starts on
        if len(row) > col and row[col].strip():
            out.append((start, row[col].strip()))
        start = reader.line_num + 1
    return out


def read_strings(path: str | Path, tokens: str | None = None) -> list[str]:
    """The strings of a data file; see :func:`read_records`."""
    return [s for _, s in read_records(path, tokens)]
