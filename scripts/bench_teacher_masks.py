"""Semantic teacher masks of ZINC molecules in one process against a process pool.

The replay of every derivation through the semantic masks is the slow part of preparing the
Kekulé data (``data prepare`` checks each parse against the masks) and of starting a training
run (``TeacherMasks.build``). Both run it in ``workers`` processes; this times the same rows
with one and with ``--workers`` processes, in one run, and checks the masks are identical.

Usage:
    python scripts/bench_teacher_masks.py [--limit 20000] [--rows 12000] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from molshape.data.datasets import load_dataset
from molshape.data.teacher_masks import TeacherMasks
from molshape.grammar.cfg import load_grammar


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=20000, help="molecules read from ZINC")
    ap.add_argument("--rows", type=int, default=12000, help="training rows whose masks are built")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    grammar = load_grammar("smiles_kekule")
    data = load_dataset("smiles_kekule", limit=args.limit, progress=False)
    rows = data.split["train"][: args.rows]
    seconds, bits = {}, {}
    for w in (1, args.workers):
        t = time.perf_counter()
        bits[w] = TeacherMasks.build(grammar, data.rules, rows, workers=w).bits
        seconds[w] = time.perf_counter() - t
        print(f"workers {w}: {seconds[w]:.1f} s for {len(rows)} molecules ({len(rows) / seconds[w]:.0f}/s)", flush=True)
    same = torch.equal(bits[1], bits[args.workers])
    print(f"bench_teacher_masks: {seconds[1] / seconds[args.workers]:.2f}x with {args.workers} processes "
          f"against one ({len(rows)} molecules, wall clock, masks {'identical' if same else 'DIFFER'})")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
