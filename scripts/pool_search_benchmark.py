"""Hypervolume of a multi-objective search against random prior sampling at the same budget,
over several seeds: runs ``molshape.optimize`` per seed (or reads finished run folders), prints
the table and draws one panel per seed.

    python scripts/pool_search_benchmark.py --target logp,qed --budget 60 --seeds 0 1 2 3 4 \\
        --space pool --out runs/pool-bench --figure docs/pool-search-hypervolume.png
    python scripts/pool_search_benchmark.py --runs runs/a runs/b --figure hv.png   # finished runs only

The last line starts ``pool_search_benchmark:`` (wins, mean ratio).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import molshape
from molshape.bo.constrained import SearchConfig
from molshape.core.atomic import save_figure


def run_seed(model, target: str, budget: int, seed: int, space: str, pool_size: int, out: Path) -> dict:
    """One seed's search into ``out`` (kept when it already holds a finished run); its summary with cpu_s."""
    if (out / "summary.json").is_file():
        return json.loads((out / "summary.json").read_text())
    cpu = time.process_time()
    r = molshape.optimize(model, target, out, search=SearchConfig(budget=budget, seed=seed, space=space,
                                                                   pool_size=pool_size))
    return {**r.summary, "cpu_s": time.process_time() - cpu}


def table(summaries: list[dict]) -> tuple[str, float, int]:
    """Markdown rows ``seed | BO | random | ratio | wall`` and the mean ratio and wins."""
    rows, ratios = [], []
    for s in summaries:
        hv = s["hypervolume"]
        bo, rnd = hv["bo"][-1], hv["random_prior"][-1]
        ratios.append(bo / rnd if rnd > 0 else float("nan"))
        cpu = f", cpu {s['cpu_s']:.0f} s" if "cpu_s" in s else ""
        rows.append(f"| {s['search']['seed']} | {bo:.3f} | {rnd:.3f} | {ratios[-1]:.3f} | {s['wall_s']:.0f} s{cpu} |")
    wins = int(sum(r > 1 for r in ratios))
    head = "| seed | BO | random | BO / random | wall |\n|---|---|---|---|---|\n"
    return head + "\n".join(rows), float(np.nanmean(ratios)), wins


def figure(summaries: list[dict], path: Path) -> Path:
    """One panel per seed: hypervolume against oracle calls, the search beside its baseline."""
    from matplotlib.figure import Figure  # matplotlib is slow to import: only for the figure

    n = len(summaries)
    fig = Figure(figsize=(2.6 * n, 2.8))
    axes = np.atleast_1d(fig.subplots(1, n))
    for ax, s in zip(axes, summaries):
        hv = s["hypervolume"]
        ax.plot(hv["oracle_calls"], hv["bo"], "o-", ms=3, label=f"BO ({s.get('space', 'latent')})")
        ax.plot(hv["oracle_calls"], hv["random_prior"], "s--", ms=3, c="0.4", label="random")
        ax.set_title(f"seed {s['search']['seed']}", fontsize=9)
        ax.set_xlabel("oracle calls", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel(f"hypervolume ({' & '.join(summaries[0]['target'])})", fontsize=8)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", default="logp,qed")
    p.add_argument("--budget", type=int, default=60)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--space", choices=["pool", "latent"], default="pool")
    p.add_argument("--pool-size", type=int, default=SearchConfig().pool_size)
    p.add_argument("--checkpoint", default="zinc")
    p.add_argument("--out", type=Path, default=Path("runs/pool-bench"))
    p.add_argument("--runs", type=Path, nargs="+", default=None, help="finished run folders: only summarise them")
    p.add_argument("--figure", type=Path, default=None)
    a = p.parse_args()
    if a.runs:
        summaries = [json.loads((r / "summary.json").read_text()) for r in a.runs]
    else:
        torch.set_num_threads(1)
        model = molshape.load(a.checkpoint)
        summaries = [run_seed(model, a.target, a.budget, s, a.space, a.pool_size, a.out / f"seed-{s}") for s in a.seeds]
    text, mean_ratio, wins = table(summaries)
    print(text)
    if a.figure:
        print(f"figure: {figure(summaries, a.figure)}")
    print(f"pool_search_benchmark: BO ahead in {wins} of {len(summaries)} seeds, mean ratio {mean_ratio:.3f}")


if __name__ == "__main__":
    main()
