"""Strings -> padded production sequences, split and cached: what training reads.

:func:`load_dataset` is the standard entry (``smiles`` -> ZINC250k, ``expr`` -> the GVAE
expression file or 100,000 generated expressions); :func:`prepare_dataset` does the work
for any grammar and string source:

1. read the records (:func:`molshape.data.records.read_records`: gz or plain, ``.csv`` with a ``smiles``
   column, ids after the first whitespace dropped, space-separated tokens joined);
2. split the *records* into train / valid / test, deterministic under ``seed`` (so a
   ``limit`` run uses the same split definition and only parses what it needs);
3. parse every record with :func:`molshape.grammar.parser.parse_many`; records that fail are kept
   out of the tensors but listed in ``PreparedData.failed`` and a ``.failed.tsv`` report;
4. cache the parse under ``cache_dir()/prepared``, keyed by the grammar's hash and the
   data's sha256, so a second run loads in seconds.

Example:
    >>> data = load_dataset("smiles", limit=1000)          # doctest: +SKIP
    >>> data.rules.shape, len(data.split["train"])          # doctest: +SKIP
    (torch.Size([1224, 277]), 1000)
"""

from __future__ import annotations

import csv
import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from molshape.core.cache import load_entry, save_entry
from molshape.core.runtime import cache_dir
from molshape.data.sources import RecordSource, file_source, list_source, standard_source
from molshape.data.splits import SPLITS, VALID_FRACTION, limit_split, split_capped
from molshape.data.teacher_masks import CHUNK_ROWS, first_violations, teacher_mask_bits
from molshape.grammar.cfg import Grammar, GrammarError, load_grammar
from molshape.grammar.representation import is_kekule, to_grammar_strings
from molshape.grammar.semantics import semantics_for

log = logging.getLogger(__name__)

#: Bump when the cache layout or the parse semantics change: old caches are then ignored.
CACHE_VERSION = 1
#: what a parse cache entry holds (one without them is corrupt: removed and parsed again)
CACHE_KEYS = ("n_records", "split", "split_params", "strings", "rules", "lengths", "positions", "lines", "failed",
              "failed_positions")


# ----------------------------------------------------------------------------- data

@dataclass
class PreparedData:
    """Parsed, padded, split data of one grammar.

    Attributes:
        grammar: grammar name; ``grammar_hash`` its sha256 (checked against checkpoints).
        source: data file path or ``generated(...)``; ``source_sha256`` its content hash.
        strings: the parsed strings, one per row.
        rules: ``N x T`` long, leftmost derivations padded with ``grammar.pad``.
        lengths: ``N`` long, unpadded derivation lengths.
        split: ``train`` / ``valid`` / ``test`` -> long row indices into ``rules``.
        failed: ``(line, input, reason)`` of each record that did not parse.
        lines: ``N`` long, 1-based source line of each row.
        n_records: records read from the source (rows + failed, before any ``limit``).
        cache_path: the parse cache file, if one was used.
        failed_report: the ``.failed.tsv`` file, if any record failed.
    """

    grammar: str
    grammar_hash: str
    source: str
    source_sha256: str
    strings: list[str]
    rules: torch.Tensor
    lengths: torch.Tensor
    split: dict[str, torch.Tensor]
    failed: list[tuple[int, str, str]]
    lines: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    n_records: int = 0
    cache_path: str | None = None
    failed_report: str | None = None

    def __len__(self) -> int:
        return len(self.strings)

    def summary(self) -> dict:
        """Plain-value description: sizes, failures, derivation length statistics."""
        lengths = self.lengths.double()
        return {
            "grammar": self.grammar, "grammar_hash": self.grammar_hash,
            "source": self.source, "source_sha256": self.source_sha256,
            "records": self.n_records, "rows": len(self), "failed": len(self.failed),
            "split": {k: len(v) for k, v in self.split.items()},
            "length": {"min": int(lengths.min()), "mean": round(float(lengths.mean()), 2),
                       "median": float(lengths.median()), "max": int(lengths.max())} if len(self) else {},
            "cache": self.cache_path, "failed_report": self.failed_report,
        }


class RuleDataset(Dataset):
    """One split of a :class:`PreparedData` as a torch dataset of ``(rules [T] long, length int)``."""

    def __init__(self, data: PreparedData, split: str | torch.Tensor = "train") -> None:
        if isinstance(split, str):
            if split not in data.split:
                raise KeyError(f"unknown split {split!r}; splits: {list(data.split)}")
            split = data.split[split]
        self.data = data
        self.index = split

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        row = int(self.index[i])
        return self.data.rules[row], int(self.data.lengths[row])


# ----------------------------------------------------------------------------- parsing + cache

def _parse(grammar: Grammar, records: list[tuple[int, str]], workers: int | None, progress: bool) -> dict:
    """Parse records; return padded rules (compact dtype), lengths, record positions, failures."""
    from molshape.grammar import parser  # looked up at call time so tests can replace parse_many

    if is_kekule(grammar):  # the grammar reads canonical Kekulé SMILES: convert first
        converted = to_grammar_strings(grammar, [s for _, s in records], workers=workers, progress=progress)
        records = [(line, k if k is not None else s) for (line, s), k in zip(records, converted)]
    results = parser.parse_many(grammar, [s for _, s in records], workers=workers, progress=progress)
    results = _check_semantics(grammar, results, workers)
    ok: list[int] = []
    seqs: list[list[int]] = []
    failed: list[list] = []
    failed_at: list[int] = []
    for pos, ((line, s), r) in enumerate(zip(records, results)):
        reason = None
        if isinstance(r, GrammarError):
            reason = r.reason + (f" at position {r.position}" if r.position is not None else "")
        elif len(r) > grammar.max_length:
            reason = f"derivation has {len(r)} rules, more than max_length {grammar.max_length}"
        if reason is not None:
            failed.append([line, s, reason])
            failed_at.append(pos)
        else:
            ok.append(pos)
            seqs.append(r)
    dtype = torch.uint8 if grammar.n_productions <= 255 else torch.int16
    lengths = np.fromiter((len(q) for q in seqs), dtype=np.int64, count=len(seqs))
    rules = np.full((len(seqs), grammar.max_length), grammar.pad, dtype=np.int64)
    flat = np.fromiter((x for q in seqs for x in q), dtype=np.int64, count=int(lengths.sum()))
    rows = np.repeat(np.arange(len(seqs)), lengths)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    rules[rows, cols] = flat
    return {
        "rules": torch.from_numpy(rules).to(dtype), "lengths": torch.from_numpy(lengths),
        "positions": torch.tensor(ok, dtype=torch.long),
        "lines": torch.tensor([records[p][0] for p in ok], dtype=torch.long),
        "strings": [records[p][1] for p in ok], "failed": failed,
        "failed_positions": torch.tensor(failed_at, dtype=torch.long),
    }


def _check_semantics(grammar: Grammar, results: list, workers: int | None = None, chunk_size: int = CHUNK_ROWS) -> list:
    """Derivations that break the grammar's semantic constraints become errors (few: bonds the
    valence rules forbid). The replay runs in ``workers`` processes, like the parse."""
    good = [i for i, r in enumerate(results) if not isinstance(r, GrammarError) and len(r) <= grammar.max_length]
    if semantics_for(grammar) is None or not good:
        return results
    dtype = torch.uint8 if grammar.n_productions <= 255 else torch.int16
    rules = torch.full((len(good), grammar.max_length), grammar.pad, dtype=dtype)
    for row, i in enumerate(good):
        rules[row, : len(results[i])] = torch.tensor(results[i], dtype=dtype)
    bits = teacher_mask_bits(grammar, rules, chunk=chunk_size, workers=workers)
    out = list(results)
    for row, step in first_violations(rules, bits):
        i = good[row]
        rule = grammar.productions[results[i][step]]
        out[i] = GrammarError("", None, f"outside the semantic constraints at rule {step} ({rule}): "
                                        "a bond the valence rules forbid, or a ring or branch the decoder cannot write")
    return out


def cache_key(grammar: Grammar, source_sha256: str) -> str:
    """Parse-cache key: grammar file hash + data checksum + cache version."""
    return hashlib.sha256(f"{CACHE_VERSION}|{grammar.hash}|{source_sha256}".encode()).hexdigest()[:20]


def cache_file(grammar: Grammar, source_sha256: str) -> Path:
    """Where the parse of this (grammar, data) pair is cached."""
    return cache_dir() / "prepared" / f"{grammar.name}-{cache_key(grammar, source_sha256)}.pt"


def _write_failed(path: Path, failed: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["line", "input", "reason"])
        w.writerows(failed)
    return path


def _report_failed(failed: list, n_records: int, report: Path, source: str) -> str | None:
    if not failed:
        return None
    _write_failed(report, failed)
    log.warning("%s of %s records of %s did not parse and are left out; see %s",
                f"{len(failed):,}", f"{n_records:,}", source, report)
    return str(report)


def _assemble(grammar: Grammar, src: RecordSource, parsed: dict, record_split: dict[str, torch.Tensor],
              n_records: int, cache_path: Path | None, report: str | None) -> PreparedData:
    """Map record-level splits onto parsed rows (failed records drop out of their split)."""
    row_of = torch.full((n_records,), -1, dtype=torch.long)
    row_of[parsed["positions"]] = torch.arange(len(parsed["positions"]))
    split = {}
    for k in SPLITS:
        rows = row_of[record_split[k]]
        split[k] = rows[rows >= 0]
    return PreparedData(
        grammar=grammar.name, grammar_hash=grammar.hash, source=src.label, source_sha256=src.sha256,
        strings=parsed["strings"], rules=parsed["rules"].long(), lengths=parsed["lengths"].long(),
        split=split, failed=[tuple(x) for x in parsed["failed"]], lines=parsed["lines"],
        n_records=n_records, cache_path=str(cache_path) if cache_path else None, failed_report=report)


def _select(parsed: dict, keep: torch.Tensor) -> dict:
    """The part of a full parse whose record positions are in ``keep``."""
    wanted = torch.zeros(parsed["n_records"], dtype=torch.bool)
    wanted[keep] = True
    idx = wanted[parsed["positions"]].nonzero().flatten()
    bad = wanted[parsed["failed_positions"]].nonzero().flatten()
    return {"rules": parsed["rules"][idx], "lengths": parsed["lengths"][idx],
            "positions": parsed["positions"][idx], "lines": parsed["lines"][idx],
            "strings": [parsed["strings"][i] for i in idx.tolist()],
            "failed": [parsed["failed"][i] for i in bad.tolist()],
            "failed_positions": parsed["failed_positions"][bad]}


def _packed(strings: list[str]) -> str | list[str]:
    """One newline-joined string loads ~10x faster than a list of 250k (unless one has a newline)."""
    return strings if any("\n" in s for s in strings) else "\n".join(strings)


# Over 60 lines (64): cache lookup, parse, split and assemble must agree on one cache key.
def _prepare(grammar: Grammar, src: RecordSource, *, test_size: int | float, valid_fraction: float, seed: int,
             cache: bool, limit: int | None, workers: int | None, progress: bool,
             cap_test: bool = False) -> PreparedData:
    path = cache_file(grammar, src.sha256)
    params = {"test_size": test_size, "valid_fraction": valid_fraction, "seed": seed}
    parsed = load_entry(path, CACHE_KEYS) if cache else None
    if parsed is not None:
        t0 = time.perf_counter()
        if isinstance(parsed["strings"], str):
            parsed["strings"] = parsed["strings"].split("\n") if parsed["strings"] else []
        n = parsed["n_records"]
        split = parsed["split"] if parsed["split_params"] == params else split_capped(n, params, cap_test)
        if limit is not None:
            split = limit_split(split, limit)
            parsed = _select(parsed, torch.cat(list(split.values())))
        log.info("loaded parse cache %s (%s rows) in %.1f s", path, f"{len(parsed['strings']):,}",
                 time.perf_counter() - t0)
        report = None
        if parsed["failed"]:
            report = str(path.with_suffix(".failed.tsv"))
            log.warning("%s records of %s did not parse and are left out; see %s",
                        f"{len(parsed['failed']):,}", src.label, report)
        return _assemble(grammar, src, parsed, split, n, path, report)

    if limit is not None and cache and src.full_on_limit:
        kw = dict(test_size=test_size, valid_fraction=valid_fraction, seed=seed, cache=True, workers=workers,
                  progress=progress, cap_test=cap_test)
        _prepare(grammar, src, limit=None, **kw)
        return _prepare(grammar, src, limit=limit, **kw)
    limited = path.with_suffix(f".limit{limit}.pt")
    saved = load_entry(limited, ("parsed", "split", "n_records")) if limit is not None and cache else None
    if saved is not None:
        # a limited parse is cached on its own when preparing it is slow (Kekulé conversion)
        if saved.get("split_params") == params:
            report = str(limited.with_suffix(".failed.tsv")) if saved["parsed"]["failed"] else None
            return _assemble(grammar, src, saved["parsed"], saved["split"], saved["n_records"], None, report)
    records = src.records()
    n = len(records)
    split = split_capped(n, params, cap_test)
    if limit is not None:
        # parse only what the smoke run uses
        split = limit_split(split, limit)
        keep = torch.cat(list(split.values())).sort().values
        parsed = _parse(grammar, [records[i] for i in keep.tolist()], workers, progress)
        parsed["positions"] = keep[parsed["positions"]]
        parsed["failed_positions"] = keep[parsed["failed_positions"]]
        report = _report_failed(parsed["failed"], len(keep), path.with_suffix(f".limit{limit}.failed.tsv"),
                                src.label)
        if cache and is_kekule(grammar):
            save_entry({"version": CACHE_VERSION, "parsed": parsed, "split": split, "split_params": params,
                        "n_records": n}, limited)
        return _assemble(grammar, src, parsed, split, n, None, report)

    t0 = time.perf_counter()
    parsed = _parse(grammar, records, workers, progress)
    log.info("parsed %s records of %s in %.1f s", f"{n:,}", src.label, time.perf_counter() - t0)
    report = _report_failed(parsed["failed"], n, path.with_suffix(".failed.tsv"), src.label)
    if cache:
        cache = save_entry({"version": CACHE_VERSION, "grammar": grammar.name, "grammar_hash": grammar.hash,
                            "source": src.label, "source_sha256": src.sha256, "n_records": n,
                            "split": split, "split_params": params,
                            **parsed, "strings": _packed(parsed["strings"])}, path)
        if cache:
            log.info("wrote parse cache %s", path)
    return _assemble(grammar, src, parsed, split, n, path if cache else None, report)


def prepare_dataset(grammar: Grammar | str, strings_or_path: str | Path | Sequence[str], *,
                    test_size: int | float, valid_fraction: float = VALID_FRACTION, seed: int = 0,
                    cache: bool = True, limit: int | None = None, workers: int | None = None,
                    progress: bool = True, tokens: str | None = None) -> PreparedData:
    """Parse, pad, split and cache a data set.

    Args:
        grammar: a Grammar or grammar name.
        strings_or_path: a data file (see :func:`read_records`) or the strings themselves
            (their "line numbers" are then 1-based positions).
        test_size: records held out for test (a float below 1: a fraction).
        valid_fraction: fraction of the remaining records used for validation.
        seed: split seed; the split is recorded in the cache and in ``PreparedData.split``.
        cache: read / write the parse cache under ``cache_dir()/prepared``.
        limit: smoke runs: keep the first ``limit`` training records and ``ceil(limit/9)``
            valid / test records of the same split; without a cache only those are parsed.
        workers: parser processes (None: all cores).
        progress: tqdm bar while parsing.
        tokens: passed to :func:`read_records` for a file.

    Returns:
        PreparedData with ``rules [N x max_length]`` and ``lengths [N]``.
    """
    g = load_grammar(grammar) if isinstance(grammar, str) else grammar
    if isinstance(strings_or_path, (str, Path)):
        src = file_source(Path(strings_or_path), tokens)
    else:
        src = list_source(strings_or_path)
    return _prepare(g, src, test_size=test_size, valid_fraction=valid_fraction, seed=seed, cache=cache,
                    limit=limit, workers=workers, progress=progress)


def load_dataset(grammar_name: str, data: str | Path | None = None, limit: int | None = None, seed: int = 0, *,
                 cache: bool = True, workers: int | None = None, progress: bool = True,
                 check: Callable[[str, str], None] | None = None) -> PreparedData:
    """The standard data set of a grammar, ready for training.

    * ``smiles``: ZINC250k (``--data``, ``$MOLSHAPE_DATA_DIR`` or the download cache);
      5,000 test molecules, 10 % of the rest for validation (GVAE).
    * ``expr``: the GVAE expression file when found, else 100,000 generated expressions
      (:func:`molshape.grammar.expressions.generate_expressions`, seed 0 whatever ``seed`` is, so
      the data set is fixed); 1,000 test, 10 % of the rest for validation.
    * a ``.cfg`` grammar: ``data`` is required; 10 % test, 10 % of the rest validation.

    ``seed`` sets the split; ``limit`` is for smoke runs (see :func:`prepare_dataset`).
    A file with no more records than the test size holds out 10 % for test instead (logged).
    ``PreparedData.source`` records which data was used. ``check(label, sha256)`` sees the
    source before anything is read or generated, so it can refuse the wrong data cheaply.
    """
    g = load_grammar(grammar_name)
    src, test_size = standard_source(g, data)
    if check is not None:
        check(src.label, src.sha256)
    return _prepare(g, src, test_size=test_size, valid_fraction=VALID_FRACTION, seed=seed, cache=cache,
                    limit=limit, workers=workers, progress=progress, cap_test=True)


def standard_reference(grammar_name: str = "smiles", n_train: int = 10_000, data: str | Path | None = None,
                       seed: int = 0) -> tuple[list[str], list[str]]:
    """Raw strings of the standard test split and ``n_train`` drawn from the standard training split.

    ZINC250k: GVAE's 5,000 test molecules, whatever ``--limit`` a model was trained with, so
    sample metrics such as the FCD always use the same reference; the training draw is
    their floor. Read from the file without parsing.
    """
    g = load_grammar(grammar_name)
    src, test_size = standard_source(g, data)
    records = src.records()
    split = split_capped(len(records), {"test_size": test_size, "valid_fraction": VALID_FRACTION, "seed": 0}, True)
    train = split["train"]
    pick = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n_train]].sort().values
    return [records[i][1] for i in split["test"].tolist()], [records[i][1] for i in pick.tolist()]


def load_cached(grammar_name: str, data: str | Path | None = None, seed: int = 0) -> PreparedData | None:
    """The standard data set if its parse cache exists, else None (never parses)."""
    g = load_grammar(grammar_name)
    src, test_size = standard_source(g, data)
    if not cache_file(g, src.sha256).is_file():
        return None
    return _prepare(g, src, test_size=test_size, valid_fraction=VALID_FRACTION, seed=seed, cache=True,
                    limit=None, workers=None, progress=False, cap_test=True)
