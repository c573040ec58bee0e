"""Where a data set's records come from: a file, a list of strings or the generated
expression set, each with a label and a content checksum (the parse cache key), and the
standard source of each grammar."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from molshape.core.hashing import file_hash
from molshape.data.download import resolve_data_file
from molshape.data.records import read_records
from molshape.grammar.cfg import Grammar
from molshape.grammar.expressions import generate_expressions
from molshape.grammar.representation import is_molecular

log = logging.getLogger(__name__)

#: GVAE: 5,000 ZINC molecules held out for test, 10 % of the rest for validation.
ZINC_TEST = 5_000
#: Expressions: GVAE states no test set; molshape holds out 1,000.
EXPR_TEST = 1_000
#: The generated expression set: fixed size and seed, so it is one data set like a file.
EXPR_GENERATED = 100_000
EXPR_MAX_RULES = 15
EXPR_SEED = 0


@dataclass(frozen=True)
class RecordSource:
    """Where records come from: a label, a content checksum, and a lazy reader."""

    label: str
    sha256: str
    records: Callable[[], list[tuple[int, str]]]
    #: reading is the expensive part (generation), so a ``limit`` run parses and caches all
    full_on_limit: bool = False


def file_source(path: Path, tokens: str | None = None) -> RecordSource:
    """The records of a data file (see :func:`molshape.data.records.read_records`), keyed by its sha256."""
    path = Path(path)
    return RecordSource(str(path), file_hash(path), lambda: read_records(path, tokens))


def list_source(strings: Sequence[str], label: str = "<strings>") -> RecordSource:
    """Strings given in memory, keyed by the sha256 of their newline-joined text."""
    strings = list(strings)
    digest = hashlib.sha256("\n".join(strings).encode()).hexdigest()
    return RecordSource(label, digest, lambda: [(i, s) for i, s in enumerate(strings, start=1)])


def generated_source(grammar: Grammar, n: int, max_rules: int, seed: int) -> RecordSource:
    """``n`` expressions of :func:`molshape.grammar.expressions.generate_expressions`, keyed by the recipe."""
    label = f"generated(n={n}, max_rules={max_rules}, seed={seed})"
    # keyed by the recipe, so a cache hit skips generating as well as parsing
    digest = hashlib.sha256(f"molshape.expressions v1 {label}".encode()).hexdigest()
    return RecordSource(label, digest, lambda: list(enumerate(generate_expressions(grammar, n, max_rules, seed), start=1)),
                   full_on_limit=True)


def standard_source(grammar: Grammar, data: str | Path | None) -> tuple[RecordSource, int | float]:
    """The data source of a grammar and its test size (see :func:`load_dataset`)."""
    if is_molecular(grammar):
        path = resolve_data_file("zinc250k", Path(data) if data else None)
        log.info("smiles data: %s", path)
        return file_source(path, "first"), ZINC_TEST
    if grammar.name == "expr":
        try:
            path = resolve_data_file("expr", Path(data) if data else None)
        except FileNotFoundError:
            if data is not None:
                raise
            log.info("expression data: no GVAE file found; using %s generated expressions", f"{EXPR_GENERATED:,}")
            return generated_source(grammar, EXPR_GENERATED, EXPR_MAX_RULES, EXPR_SEED), EXPR_TEST
        log.info("expression data: %s", path)
        return file_source(path, "join"), EXPR_TEST
    if data is None:
        raise ValueError(f"grammar {grammar.name!r} has no standard data set; pass --data PATH")
    return file_source(Path(data)), 0.1
