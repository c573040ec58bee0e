"""Benchmark ``molshape screen``: scaling from 1 to 2 Dask workers, in-process against cluster, memory.

1. Throughput on a decoding-bound run (target ``logp`` only) with a local Dask cluster of 1
   worker and of 2 workers (single-threaded processes). Each cluster is warmed first (a tiny
   run loads the model into its workers), so the figure is the steady state: startup and model
   loading are reported apart. Scaling efficiency = throughput(2) / throughput(1).
2. The in-process path on the same seed: its throughput, and its Parquet contents compared
   with the cluster's (asserted identical).
3. Overhead per chunk: core-seconds spent outside the chunk function (scheduling, transfer),
   from the summary (``overhead_per_chunk_s``), and the share of a chunk it is.
4. Memory: peak RSS of a whole in-process run (a fresh process each) at two ``n`` with real
   decoding, and at two ``n`` ten times apart with a synthetic chunk task (random strings,
   10 % repeats) that exercises the chunk plan, the shards and the partition-wise dedup
   without the decoder, with partitions of the same size.

On a shared machine other jobs take cores, so the scaling figure is a lower bound then.

Usage:
    python scripts/bench_screen.py [--n 2000] [--chunk-size 250] [--mem-n 1000 5000] [--synthetic-n 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def tables(out: Path) -> dict[str, pd.DataFrame]:
    files = sorted(out.glob("library/*.parquet")) + sorted(out.glob("shards/*/*.parquet"))
    return {str(p.relative_to(out)): pd.read_parquet(p) for p in files}


def same(a: Path, b: Path) -> bool:
    ta, tb = tables(a), tables(b)
    return list(ta) == list(tb) and all(ta[k].equals(tb[k]) for k in ta) and \
        (a / "top.csv").read_text() == (b / "top.csv").read_text()


def cluster_run(model, workers: int, out: Path, opts: dict) -> tuple[dict, float]:
    """Start a local cluster, warm its workers (model loaded), then run; returns (summary, startup s)."""
    import molshape
    from distributed import LocalCluster

    t0 = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as lc:
        # every worker loads the model once: one tiny chunk per worker
        molshape.screen(model, out.parent / f"warm-{workers}", n=4 * workers, chunk_size=4, seed=99,
                        targets=["logp"], scheduler=lc.scheduler_address)
        startup = time.perf_counter() - t0
        r = molshape.screen(model, out, scheduler=lc.scheduler_address, **opts)
    return r.summary, startup


def synthetic_task(spec, chunk):
    """A chunk without the decoder: random strings (10 % drawn twice) with score columns."""
    import numpy as np

    from molshape.core.atomic import write_bytes, write_json
    from molshape.screening.chunks import partition_of
    from molshape.screening.columns import columns_of
    from molshape.screening.pipeline import marker_path, parquet_bytes, shard_path

    rng = np.random.default_rng(chunk.seed)
    ids = rng.integers(0, int(1.1e12), chunk.size)
    again = rng.random(chunk.size) < 0.1
    ids[again] = rng.integers(0, 1000, int(again.sum()))  # strings that recur across chunks
    strings = [f"C{'C' * int(i % 7)}N{i:x}O" for i in ids]
    first = dict.fromkeys(strings)
    rows = [i for i, s in enumerate(strings) if first.pop(s, 0) is None]
    frame = pd.DataFrame({"smiles": [strings[i] for i in rows], "chunk": np.full(len(rows), chunk.index),
                          "row": np.asarray(rows, dtype=np.int64)})
    for c in columns_of(spec.targets):
        frame[c] = rng.random(len(rows))
    parts = np.array([partition_of(s, spec.partitions) for s in frame["smiles"]])
    for p in np.unique(parts):
        write_bytes(shard_path(spec.out_dir, int(p), chunk.index), parquet_bytes(frame[parts == p]))
    counts = {"chunk": chunk.index, "n": chunk.size, "valid": chunk.size, "incomplete": 0, "invalid": 0,
              "repeats": chunk.size - len(rows), "seconds": 0.0}
    write_json(marker_path(spec.out_dir, chunk.index), counts)
    return counts


def child_memory(n: int, chunk_size: int, synthetic: bool, out: Path) -> dict:
    """Run one in-process screen in a fresh process; the resident memory before it and at its peak
    (sampled every 20 ms), and its summary."""
    code = f"""
import json, sys, threading, time, psutil, torch
torch.set_num_threads(1)
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
import molshape, bench_screen
m = molshape.load("zinc", "cpu")
kw = dict(task=bench_screen.synthetic_task, partitions=max(1, {n} // 100_000)) if {synthetic} else {{}}
me, peak, done = psutil.Process(), [0], threading.Event()
def watch():
    while not done.is_set():
        peak[0] = max(peak[0], me.memory_info().rss)
        time.sleep(0.02)
before = me.memory_info().rss
threading.Thread(target=watch, daemon=True).start()
r = molshape.screen(m, {str(out)!r}, n={n}, chunk_size={chunk_size}, targets=["logp", "qed"],
                    keep=["qed>=0.6", "sa<=3"], top=100, **kw)
done.set()
print(json.dumps({{"before_mb": before / 2**20, "peak_mb": peak[0] / 2**20, "unique": r.summary["unique"],
                  "wall_s": r.summary["generate_s"] + r.summary["dedup_s"]}}))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ)
    if res.returncode:
        raise SystemExit(res.stderr[-2000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="latents of the scaling runs")
    ap.add_argument("--chunk-size", type=int, default=250)
    ap.add_argument("--mem-n", type=int, nargs=2, default=[1000, 5000], help="two n for real-decoding memory")
    ap.add_argument("--synthetic-n", type=int, nargs=2, default=[100_000, 1_000_000],
                    help="two n for the synthetic-task memory")
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    import molshape

    model = molshape.load("zinc", "cpu")
    opts = dict(n=args.n, chunk_size=args.chunk_size, seed=0, targets=["logp"], top=100)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start; "
          f"n={args.n}, chunks of {args.chunk_size}, target logp (decoding-bound)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = {}
        for w in (1, 2):
            s, startup = cluster_run(model, w, tmp / f"w{w}" / "run", opts)
            rows[w] = s
            s["busy"] = 1 - s["overhead_per_chunk_s"] * s["chunks"] / (s["generate_s"] * w)
            print(f"{w} worker(s): {s['molecules_per_s']:.1f} molecules/s ({s['molecules_per_s_per_core']:.1f} per "
                  f"core), generate {s['generate_s']:.1f} s, dedup {s['dedup_s']:.2f} s, cluster start + model "
                  f"load {startup:.1f} s, overhead {s['overhead_per_chunk_s']:.3f} s per chunk "
                  f"(chunk mean {s['generate_s'] * w / s['chunks']:.1f} s), workers busy {s['busy']:.0%} of the time, "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
        t0 = time.perf_counter()
        ip = molshape.screen(model, tmp / "inproc" / "run", **opts).summary
        print(f"in-process: {ip['molecules_per_s']:.1f} molecules/s, generate {ip['generate_s']:.1f} s, overhead "
              f"{ip['overhead_per_chunk_s']:.3f} s per chunk (wall {time.perf_counter() - t0:.1f} s)", flush=True)
        identical = same(tmp / "inproc" / "run", tmp / "w2" / "run") and same(tmp / "inproc" / "run", tmp / "w1" / "run")
        print(f"in-process vs 1- and 2-worker cluster, seed 0, n={args.n}: Parquet contents "
              f"{'identical' if identical else 'DIFFERENT'} ({ip['unique']} unique)", flush=True)
        if not args.skip_memory:
            for n in args.mem_n:
                m = child_memory(n, args.chunk_size, False, tmp / f"mem{n}")
                print(f"memory, real decoding, n={n:,}: RSS {m['before_mb']:.0f} MB with the model loaded, peak "
                      f"{m['peak_mb']:.0f} MB during the run ({m['wall_s']:.0f} s)", flush=True)
            for n in args.synthetic_n:
                m = child_memory(n, 5000, True, tmp / f"syn{n}")
                print(f"memory, synthetic chunks (no decoder), n={n:,}, {max(1, n // 100_000)} partition(s): "
                      f"RSS {m['before_mb']:.0f} MB before, peak {m['peak_mb']:.0f} MB, {m['unique']:,} unique "
                      f"({m['wall_s']:.0f} s)", flush=True)
    eff = rows[2]["molecules_per_s"] / rows[1]["molecules_per_s"]
    print(f"bench_screen: {eff:.2f}x throughput from 1 to 2 workers ({rows[1]['molecules_per_s']:.1f} -> "
          f"{rows[2]['molecules_per_s']:.1f} molecules/s, efficiency {eff / 2:.0%}; a lower bound on a shared machine; "
          f"workers busy {rows[2]['busy']:.0%}), "
          f"in-process {ip['molecules_per_s']:.1f} molecules/s, same Parquet in-process and on the cluster: "
          f"{identical}, overhead {rows[2]['overhead_per_chunk_s']:.2f} s per chunk of {args.chunk_size}")


if __name__ == "__main__":
    main()
