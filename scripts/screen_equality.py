"""Run ``molshape screen`` in-process and on a 2-worker local Dask cluster with the same seed, and
compare the Parquet contents and top.csv byte for byte.

Both runs go through the command line, as a user would run them. The cluster run is started
first so that a machine busy with other work slows both the same way on average.

Usage:
    python scripts/screen_equality.py [--n 200000] [--chunk-size 5000] [--workers 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_screen import same, tables  # noqa: E402


def screen(out: Path, n: int, chunk_size: int, workers: int | None) -> tuple[dict, float]:
    """One CLI run; its summary and wall time."""
    cmd = [sys.executable, "-m", "molshape", "screen", "--n", str(n), "--chunk-size", str(chunk_size),
           "--target", "logp", "--keep", "logp>=1", "--top", "1000", "--seed", "0", "--threads", "1",
           "--out", str(out), "--json"]
    if workers:
        cmd += ["--workers", str(workers)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr[-2000:]}")
    return json.loads(res.stdout), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--chunk-size", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="keep both runs here (default: a temporary folder)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        cluster, wall_c = screen(root / "cluster", args.n, args.chunk_size, args.workers)
        print(f"{args.workers}-worker LocalCluster: {cluster['unique']:,} unique, {cluster['kept']:,} kept, "
              f"wall {wall_c:.0f} s", flush=True)
        inproc, wall_i = screen(root / "inprocess", args.n, args.chunk_size, None)
        print(f"in-process: {inproc['unique']:,} unique, {inproc['kept']:,} kept, wall {wall_i:.0f} s", flush=True)
        identical = same(root / "inprocess", root / "cluster")
        rows = sum(len(t) for k, t in tables(root / "inprocess").items() if k.startswith("library/"))
    print(f"screen_equality: {'identical' if identical else 'DIFFERENT'} Parquet contents and top.csv, n={args.n:,}, "
          f"seed 0, in-process vs {args.workers}-worker LocalCluster ({rows:,} library rows; wall "
          f"{wall_i:.0f} s vs {wall_c:.0f} s, {wall_i / wall_c:.2f}x)")
    if not identical:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
