"""Write the reference statistics shipped in molshape/reference/ (read by molshape.data.reference).

Needs the ZINC250k file (``--data`` or ``$MOLSHAPE_DATA_DIR``). Writes:

- ``zinc250k-test.smi.gz``: the standard test split (GVAE's 5,000 held-out molecules);
- ``zinc250k-reference.npz``: ChemNet mean and covariance (upper triangle, float32) of the
  test split, its per-molecule properties, MOSES fragment / scaffold counts, the real-data
  floors (10,000 training molecules), and per shipped SMILES model the sorted 32-bit hashes
  of its training molecules' canonical SMILES and the first ``--slice`` molecules of its test split.

    python scripts/make_reference_stats.py --data ../shared/data/zinc250k.smi.gz --threads 1
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np
import torch

from molshape import pretrained
from molshape.api import load
from molshape.data.datasets import standard_reference
from molshape.data.reference import STATS_FILE, TEST_FILE, reference_dir, sorted_hashes, split_fingerprint
from molshape.core.hashing import file_hash
from molshape.data.trained import checkpoint_data, training_strings
from molshape.gvae.metrics import _fcd_scorer, fcd
from molshape.scoring.chem import canonicalise_many
from molshape.scoring.chem_stats import molecule_stats, realism
from molshape.scoring.moses import fragments, scaffolds

FLOOR_SIZES = (100, 200, 500, 1000, 2000, 5000, 10000)
MODELS = ("zinc-kekule-gmm-cpu",)  # shipped SMILES models whose novelty set and test slice ship


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="zinc250k.smi(.gz) (default: found)")
    ap.add_argument("--slice", type=int, default=200, help="test molecules per model for offline reconstruction")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=reference_dir())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    test, floor = standard_reference("smiles", max(FLOOR_SIZES), args.data)
    t1 = time.perf_counter()
    print(f"{len(test)} test, {len(floor)} floor molecules ({time.perf_counter() - t0:.0f} s)", flush=True)

    stats = _fcd_scorer("cpu").precalc(test)
    print(f"ChemNet statistics of the test split in {time.perf_counter() - t1:.0f} s", flush=True)
    floors = {str(n): fcd(floor[:n], test, "cpu", reference_stats=stats) for n in FLOOR_SIZES}
    print(f"FCD statistics and floors {floors} ({time.perf_counter() - t0:.0f} s)", flush=True)
    t_stats = molecule_stats(test)
    f_stats = molecule_stats(floor[: len(test)])
    floor_realism = {k: v for k, v in realism(t_stats, t_stats, f_stats).items() if k.startswith("floor_")}

    d = len(stats["mu"])
    arrays: dict[str, np.ndarray] = {
        "fcd_mu": stats["mu"].astype(np.float32),
        "fcd_sigma_triu": stats["sigma"][np.triu_indices(d)].astype(np.float32),
        "test_properties": t_stats.astype(np.float32),
    }
    meta = {"data_sha256": None, "n_test": len(test), "fcd_floor": floors, "floor_realism": floor_realism,
            "fragments": dict(fragments(test)), "scaffolds": dict(scaffolds(test)), "models": {}}
    for name in MODELS:
        m = load(name)
        prepared = checkpoint_data(m.checkpoint, m.grammar, args.data)
        meta["data_sha256"] = prepared.source_sha256
        key = split_fingerprint(m.checkpoint)
        hashes = sorted_hashes(f for f in canonicalise_many(training_strings(m.checkpoint, prepared)) if f)
        arrays[f"novelty_{key}"] = np.diff(hashes, prepend=np.uint32(0)).astype(np.uint32)
        arrays[f"test_slice_{key}"] = np.array([prepared.strings[int(i)] for i in m.checkpoint.split["test"][: args.slice]])
        meta["models"][name] = {"split": key, "n_train": len(hashes), "n_slice": args.slice}
    if meta["data_sha256"] is None and args.data is not None:
        meta["data_sha256"] = file_hash(args.data)
    arrays["meta"] = np.array(json.dumps(meta))
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / STATS_FILE, **arrays)
    with gzip.GzipFile(args.out / TEST_FILE, "wb", mtime=0) as f:
        f.write(("\n".join(test) + "\n").encode())
    sizes = {p.name: p.stat().st_size for p in (args.out / STATS_FILE, args.out / TEST_FILE)}
    print(f"wrote {sizes} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
