"""Benchmark: the LR parser against nltk's ChartParser on ZINC250k, identical output checked.

nltk parses a small slice (it manages ~15-70 molecules/s); the LR parser parses the
same slice in-process, then the whole file with ``parse_many`` on ``--workers`` cores.

    nice -n 10 .venv/bin/python scripts/bench_parse.py [--n-nltk 300] [--limit N]
"""

from __future__ import annotations

import argparse
import gzip
import os
import time
from pathlib import Path

from molshape.grammar.cfg import GrammarError, load_grammar
from molshape.grammar.parser import get_parser, nltk_parse, parse_many

DATA = Path(os.environ.get("MOLSHAPE_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA / "zinc250k.smi.gz")
    ap.add_argument("--n-nltk", type=int, default=300, help="molecules parsed by nltk (slow)")
    ap.add_argument("--limit", type=int, default=None, help="parse only the first N molecules")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    with gzip.open(args.data, "rt") as f:
        smiles = [line.split()[0] for line in f if line.strip()][: args.limit]
    g = load_grammar("smiles")
    parser = get_parser(g)
    sample = smiles[: args.n_nltk]

    t = time.perf_counter()
    reference = [nltk_parse(g, parser.tokenize(s)) for s in sample]
    nltk_rate = len(sample) / (time.perf_counter() - t)
    t = time.perf_counter()
    fast = [parser.parse(s) for s in sample]
    sample_rate = len(sample) / (time.perf_counter() - t)
    mismatches = sum(a != b for a, b in zip(reference, fast))
    print(f"nltk ChartParser: {nltk_rate:,.1f} molecules/s (1 core, {len(sample)} molecules)")
    print(f"LR parser, same molecules: {sample_rate:,.0f} molecules/s (1 core); "
          f"{mismatches} derivations differ from nltk")

    t = time.perf_counter()
    results = parse_many(g, smiles, workers=args.workers)
    wall = time.perf_counter() - t
    failed = [r for r in results if isinstance(r, GrammarError)]
    assert results[: len(sample)] == fast, "parse_many differs from Parser.parse"
    round_trip = all(parser.expand(r) == s for r, s in zip(results[:20_000], smiles) if isinstance(r, list))
    per_core = len(smiles) / (wall * args.workers)
    print(f"LR parser, parse_many: {len(smiles):,} molecules in {wall:.1f} s on {args.workers} workers "
          f"({per_core:,.0f} molecules/s per core); {len(failed)} failed; "
          f"round trip of the first 20,000: {'ok' if round_trip else 'BROKEN'}")
    if mismatches or not round_trip:
        raise SystemExit("bench_parse: output differs from nltk")
    scope = "all" if args.limit is None else "first"
    print(f"bench_parse: {per_core / nltk_rate:.1f}x nltk ChartParser per core "
          f"({scope} {len(smiles):,} ZINC250k in {wall:.1f} s on {args.workers} cores)")


if __name__ == "__main__":
    main()
