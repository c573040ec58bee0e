"""Summaries, tables and plots of a latent BO run (:mod:`molshape.bo.loop`).

Spreads are standard errors over seeds (GVAE's script divided by the square root of the
iteration count instead); GP test metrics are averaged over every seed and iteration.
The budget is counted exactly: every proposal is an evaluation, valid or not.

States are :class:`~molshape.bo.state.SeedState` objects; this module reads them and writes
the run's files, and is the only part of a protocol run that knows molecules (the grid of the
best ones, drug-likeness filters, realism shares and what the realism gate rejected).

Example:
    >>> summary = write_report(problem, cfg, states, out_dir)  # doctest: +SKIP
    >>> summary["fraction_valid"]["mean"], summary["top"][:3]  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from molshape.bo.state import SeedState
from molshape.core.atomic import atomic_path, atomic_write, save_figure, write_json
from molshape.grammar.representation import MOLECULE_GRAMMARS
from molshape.core.runtime import json_safe

#: proposal columns written first; any extra record keys follow in sorted order
COLUMNS = ("seed", "iteration", "index", "valid", "string", "score")


def mean_se(values: Sequence[float]) -> dict[str, float]:
    """Mean and standard error (over seeds) of the finite ``values``; ``n`` = how many."""
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": math.nan, "se": math.nan, "n": 0}
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan
    return {"mean": float(v.mean()), "se": se, "n": int(v.size)}


def _score(r: dict, key: str = "score") -> float:
    v = r.get(key)
    return math.nan if v is None else float(v)


def outcome(records: list[dict], higher_is_better: bool, string_key: str = "string",
            score_key: str = "score", n_top: int = 3) -> dict:
    """Validity, mean valid score and the best distinct results of a set of proposals."""
    per_seed: dict[int, list[dict]] = {}
    for r in records:
        per_seed.setdefault(r["seed"], []).append(r)

    def ok(r: dict) -> bool:
        return r.get(string_key) is not None and math.isfinite(_score(r, score_key))

    frac = [sum(ok(r) for r in rs) / len(rs) for rs in per_seed.values()]
    mean_valid = [float(np.mean([_score(r, score_key) for r in rs if ok(r)])) if any(ok(r) for r in rs) else math.nan
                  for rs in per_seed.values()]
    best: dict[str, dict] = {}
    canonical_key = string_key.replace("string", "canonical")  # string -> canonical, argmax_string -> argmax_canonical
    for r in records:
        if ok(r):
            key = r.get(canonical_key) or r[string_key]
            if key not in best or _better(_score(r, score_key), _score(best[key], score_key), higher_is_better):
                best[key] = r
    ranked = sorted(best.values(), key=lambda r: _score(r, score_key), reverse=higher_is_better)
    top = [{"string": r[string_key], "score": _score(r, score_key), "seed": r["seed"], "iteration": r["iteration"]}
           for r in ranked[:n_top]]
    return {
        "evaluations": len(records),
        "valid": int(sum(ok(r) for r in records)),
        "fraction_valid": mean_se(frac),
        "mean_valid_score": mean_se(mean_valid),
        "top": top,
    }


def druglike_top(records: list[dict], higher_is_better: bool, n_top: int = 3, pool: int = 300) -> dict:
    """Top molecules under two simple drug-likeness filters (long alkyl chains inflate penalized logP).

    ``qed_0.5``: QED at least 0.5; ``no_long_chain``: no run of 8 or more CH2 outside rings.
    Only the ``pool`` best distinct valid proposals are checked.
    """
    from molshape.scoring.chem_stats import molecule_stats  # RDKit is heavy: loaded only when molecules are involved

    ranked = outcome(records, higher_is_better, n_top=pool)["top"]
    stats = molecule_stats([t["string"] for t in ranked], workers=1)
    if len(stats) != len(ranked):  # every ranked proposal is valid; keep the rows aligned anyway
        return {}
    qed_ok = [t for t, row in zip(ranked, stats) if row[2] >= 0.5]
    chain_ok = [t for t, row in zip(ranked, stats) if row[6] == 0]
    return {"qed_0.5": qed_ok[:n_top], "no_long_chain": chain_ok[:n_top]}


def _better(a: float, b: float, higher_is_better: bool) -> bool:
    return a > b if higher_is_better else a < b


def write_report(problem, cfg, states: list[SeedState], out_dir: Path, extra: dict[str, Any] | None = None) -> dict:
    """Write ``proposals.csv``, ``best_vs_evaluations.png``, for molecules ``top_molecules.png``,
    and ``summary.json`` (last, with ``extra`` appended); return the summary."""
    out_dir = Path(out_dir)
    records = [r for s in states for r in s.records]
    write_proposals(records, out_dir / "proposals.csv")
    summary = {
        "initial_data": problem.source,
        "n_initial": int(problem.z.shape[0]),
        "latent_dim": int(problem.z.shape[1]),
        "higher_is_better": problem.higher_is_better,
        "strategy": cfg.strategy,
        "seeds": [s.seed for s in states],
        "iterations": cfg.iterations,
        "batch": cfg.batch,
        **outcome(records, problem.higher_is_better),
    }
    if records and "argmax_string" in records[0]:
        summary["argmax_decoding"] = outcome(records, problem.higher_is_better, "argmax_string", "argmax_score")
    gp = {k: mean_se([float(np.mean([m[k] for m in s.metrics])) for s in states if s.metrics])
          for k in ("rmse", "loglik")}
    summary["gp_test_rmse"], summary["gp_test_loglik"] = gp["rmse"], gp["loglik"]
    summary["timing_s"] = {k: float(sum(m[k] for s in states for m in s.metrics))
                           for k in ("fit_s", "acquisition_s", "evaluate_s")}
    summary["initial_best"] = mean_se([_sign(problem) * s.initial_best for s in states])
    plot_best(states, problem, out_dir / "best_vs_evaluations.png")
    molecules = problem.kind in MOLECULE_GRAMMARS
    top = outcome(records, problem.higher_is_better, n_top=12)["top"]
    if top and molecules:
        summary["top_druglike"] = druglike_top(records, problem.higher_is_better)
        from molshape.scoring.chem import draw_grid  # RDKit is heavy: loaded only when molecules are involved

        with atomic_path(out_dir / "top_molecules.png") as tmp:
            draw_grid([t["string"] for t in top], top_legends(top, problem.target), tmp)
        summary["top_molecules_png"] = str(out_dir / "top_molecules.png")
    summary.update(extra or {})
    if molecules:
        summary.update(realism_summary(records))
    write_json(out_dir / "summary.json", json_safe(summary), allow_nan=False)
    return summary


def realism_summary(records: list[dict]) -> dict:
    """``realism``: the realism shares of the scored proposals; ``realism_gate``: whether the
    gate ran (gated records carry a ``rejected`` entry), how many proposals it rejected
    unscored (in all and per flag) and the realism shares of every decoded proposal."""
    from molshape.scoring.similarity import FLAGS, realism_shares  # RDKit is heavy: loaded only for molecules

    rejected = [r["rejected"] for r in records if r.get("rejected")]
    return {
        "realism": realism_shares([r["string"] for r in records if r.get("valid")]),
        "realism_gate": {
            "enabled": any("rejected" in r for r in records),
            "rejected": len(rejected),
            "rejected_by_flag": {k: sum(k in why.split("+") for why in rejected) for k in FLAGS},
            "decoded_realism": realism_shares([r["string"] for r in records if r.get("string")]),
        },
    }


def _sign(problem) -> float:
    return 1.0 if problem.higher_is_better else -1.0


def write_proposals(records: list[dict], path: Path) -> None:
    """One row per proposal: seed, iteration, latent index, string (empty = invalid), score."""
    extra = sorted({k for r in records for k in r} - set(COLUMNS))
    with atomic_write(path, newline="") as f:
        w = csv.writer(f)
        w.writerow([*COLUMNS, *extra])
        for r in records:
            w.writerow([("" if r.get(k) is None else r.get(k)) for k in (*COLUMNS, *extra)])


def best_so_far(state: SeedState, higher_is_better: bool) -> np.ndarray:
    """``[1 + evaluations]`` best valid score after each evaluation (index 0: initial data)."""
    sign = 1.0 if higher_is_better else -1.0
    best = sign * state.initial_best
    out = [best]
    for r in state.records:
        s = _score(r)
        if r.get("string") is not None and math.isfinite(s) and _better(s, best, higher_is_better):
            best = s
        out.append(best)
    return np.array(out)


#: how the pictures name each target
TARGET_NAMES = {"logp": "penalized logP", "qed": "QED", "expr": "expression score"}


def target_name(target: str) -> str:
    return TARGET_NAMES.get(target, target or "score")


def top_legends(top: list[dict], target: str) -> list[str]:
    """Grid legends of the best molecules: rank, target and score, QED."""
    # RDKit is heavy: loaded only when molecules are involved
    from molshape.scoring.chem import qed

    return [f"#{i + 1}  {target_name(target)} {t['score']:.2f}  QED {qed(t['string']):.2f}" for i, t in enumerate(top)]


def plot_best(states: list[SeedState], problem, path: Path) -> None:
    """Best score vs number of evaluations, one line per seed, over the best of the initial data.

    The y-axis spans the initial data's upper range (from its 75th percentile, lower-is-better
    mirrored) to the best found, so a small gain is not drawn as a leap.
    """
    from matplotlib.figure import Figure  # matplotlib is slow to import: only for figures

    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    curves = [best_so_far(s, problem.higher_is_better) for s in states]
    for s, curve in zip(states, curves):
        ax.plot(np.arange(len(curve)), curve, label=f"seed {s.seed}", lw=1.5, drawstyle="steps-post")
    starts = sorted({float(c[0]) for c in curves})
    for i, y in enumerate(starts):
        ax.axhline(y, color="0.35", ls="--", lw=1, label=f"best of the initial data ({y:.2f})" if i == 0 else None)
    initial = problem.scores[np.isfinite(problem.scores)] if len(problem.scores) else np.zeros(0)
    ends = [float(c[-1]) for c in curves] + starts
    if len(initial) and ends:
        q = np.percentile(initial, 75 if problem.higher_is_better else 25)
        lo, hi = (min(q, *ends), max(ends)) if problem.higher_is_better else (min(ends), max(q, *ends))
        pad = 0.08 * (hi - lo or 1.0)
        ax.set_ylim(lo - pad, hi + pad)
    name = target_name(problem.target)
    ax.set_xlabel("evaluations (invalid decodes included)")
    ax.set_ylabel(f"best {name}" + ("" if problem.higher_is_better else " (lower is better)"))
    ax.set_title(f"latent BO of {name}: best so far\ninitial data: {problem.source}", fontsize=10)
    if len(states) <= 10:
        ax.legend(fontsize=7, loc="lower right" if problem.higher_is_better else "upper right")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
