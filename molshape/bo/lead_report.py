"""Files and figures of lead and constrained searches (:mod:`molshape.bo.leads`).

Lead runs: ``leads.csv`` (one row per lead: the best feasible molecule, its similarity,
the improvement, oracle calls; an unusable lead's row says why), ``proposals.csv`` (every
oracle call), ``leads.png`` (each lead beside its best molecule). Prior runs: the
proposals beside random prior sampling at the same budget. Several objectives:
``pareto.csv``, ``pareto.png`` (prior samples in grey) and ``hypervolume.png``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from molshape.bo.pareto import hypervolume_curve, pareto_mask, plot_front, plot_hypervolume
from molshape.core.atomic import atomic_write

LEAD_COLUMNS = ("line", "lead", "status", "reason", "lead_score", "best", "best_score", "similarity", "improvement",
                "success", "oracle_calls", "best_call", "feasible_share", "lead_decodes_to")


def write_csv(rows: list[dict], path: Path, first: tuple[str, ...] = ()) -> None:
    """Rows as CSV (``first`` columns, then the others sorted); ``None`` -> empty cell."""
    cols = list(first) + sorted({k for r in rows for k in r} - set(first))
    with atomic_write(path, newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r.get(k) is None else r.get(k) for k in cols])


def mean_sd(values: list[float]) -> dict:
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": math.nan, "sd": math.nan, "n": 0}
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=0)), "n": int(v.size)}


def proposal_stats(records: list[dict]) -> dict:
    """Feasible share and the realism shares of the valid proposals."""
    from molshape.scoring.similarity import realism_shares  # RDKit is heavy: loaded only for molecules

    return {"feasible_share": float(np.mean([r["feasible"] for r in records])) if records else math.nan,
            "valid_share": float(np.mean([r["valid"] for r in records])) if records else math.nan,
            "realism": realism_shares([r["string"] for r in records if r["valid"]])}


def lead_summary(results: list[dict], spec) -> dict:
    """Improvement (mean and sd over the usable leads; none feasible = 0), success rate, calls."""
    rows = [r["row"] for r in results]
    ok = [r for r in rows if r["status"] == "ok"]
    records = [x for r in results for x in r["records"]]
    return {
        "leads": len(rows), "usable_leads": len(ok), "failed_leads": [
            {"line": r["line"], "lead": r["lead"], "reason": r["reason"]} for r in rows if r["status"] != "ok"],
        "target": [o.name for o in spec.objectives], "constraints": [str(c) for c in spec.constraints],
        "similarity": spec.similarity, "search": spec.cfg.to_dict(),
        "improvement": mean_sd([r["improvement"] for r in ok]),
        "success_rate": float(np.mean([r["success"] for r in ok])) if ok else math.nan,
        "best_similarity": mean_sd([r["similarity"] for r in ok if r["similarity"] is not None]),
        "oracle_calls": mean_sd([r["oracle_calls"] for r in ok]),
        **proposal_stats(records),
    }


def write_lead_outputs(out_dir: Path, results: list[dict], spec, summary: dict) -> dict:
    """``leads.csv``, ``proposals.csv``, ``leads.png`` (and the Pareto files for several objectives)."""
    rows = [r["row"] for r in results]
    write_csv(rows, out_dir / "leads.csv", LEAD_COLUMNS)
    records = [x for r in results for x in r["records"]]
    write_csv(records, out_dir / "proposals.csv", ("line", "call", "iteration", "index", "valid", "feasible", "string"))
    summary["files"] = {"leads_csv": str(out_dir / "leads.csv"), "proposals_csv": str(out_dir / "proposals.csv")}
    if rows:
        summary["files"]["leads_png"] = str(_draw_leads(rows, spec, out_dir / "leads.png"))
    if len(spec.objectives) > 1 and records:
        summary.update(_pareto(records, spec, out_dir, prior=None))
    return summary


def _draw_leads(rows: list[dict], spec, path: Path, limit: int = 12) -> Path:
    from molshape.scoring.chem import draw_pairs  # RDKit is heavy: loaded only for molecules

    name = spec.objectives[0].name
    pairs, labels = [], []
    for r in rows[:limit]:
        if r["status"] != "ok":
            pairs.append((None, None))
            labels.append((f"line {r['line']}: unusable lead", r["reason"][:40]))
            continue
        pairs.append((r["lead"], r["best"] or None))
        lead_label = f"lead (line {r['line']}): {name} {r['lead_score']:.2f}"
        best_label = (f"{name} {r['best_score']:.2f} (+{r['improvement']:.2f}), sim {r['similarity']:.2f}, "
                      f"call {r['best_call']}/{r['oracle_calls']}" if r["best"] else
                      f"none feasible in {r['oracle_calls']} calls")
        labels.append((lead_label, best_label))
    return draw_pairs(pairs, labels, path)


def _objective_matrix(records: list[dict], spec) -> np.ndarray:
    return np.array([[np.nan if r.get(o.name) is None else r[o.name] for o in spec.objectives] for r in records],
                    dtype=np.float64)


def _pareto(records: list[dict], spec, out_dir: Path, prior: list[dict] | None) -> dict:
    """Pareto front of the feasible proposals (``pareto.csv``, ``pareto.png``) in the objectives' own units."""
    sign = np.array([1.0 if o.higher_is_better else -1.0 for o in spec.objectives])
    Y = _objective_matrix(records, spec)
    feasible = np.array([r["feasible"] for r in records])
    mask = pareto_mask(np.where(feasible[:, None], Y * sign, np.nan))
    front = [records[i] for i in np.flatnonzero(mask)]
    names = [o.name for o in spec.objectives]
    write_csv(front, out_dir / "pareto.csv", ("call", "string", *names))
    prior_Y = None if prior is None else _objective_matrix([r for r in prior if r["valid"]], spec)
    plot_front(Y, mask, prior_Y, names, out_dir / "pareto.png",
               title=f"{len(front)} non-dominated of {int(feasible.sum())} feasible proposals")
    return {"pareto_front": [{k: r.get(k) for k in ("string", *names)} for r in front],
            "files_pareto": {"pareto_csv": str(out_dir / "pareto.csv"), "pareto_png": str(out_dir / "pareto.png")}}


def prior_summary(result: dict, spec, out_dir: Path) -> dict:
    """Outputs of a search from the prior, beside random prior sampling at the same budget."""
    records, base = result["records"], result["random"]
    write_csv(records, out_dir / "proposals.csv", ("call", "iteration", "index", "valid", "feasible", "string"))
    write_csv(base, out_dir / "random_prior.csv", ("call", "valid", "feasible", "string"))
    first = spec.objectives[0]
    sign = 1.0 if first.higher_is_better else -1.0

    def best(rs: list[dict]) -> dict | None:
        ok = [r for r in rs if r["feasible"] and r.get(first.name) is not None]
        return max(ok, key=lambda r: sign * r[first.name]) if ok else None

    b, rb = best(records), best(base)
    summary = {"target": [o.name for o in spec.objectives], "constraints": [str(c) for c in spec.constraints],
               "search": spec.cfg.to_dict(), "space": "pool" if "pool" in result else "latent",
               "baseline": result.get("baseline"), "oracle_calls": len(records),
               "best": None if b is None else {"string": b["string"], first.name: b[first.name], "call": b["call"]},
               "random_best": None if rb is None else {"string": rb["string"], first.name: rb[first.name]},
               **proposal_stats(records), "random_prior": proposal_stats(base),
               "files": {"proposals_csv": str(out_dir / "proposals.csv"),
                         "random_prior_csv": str(out_dir / "random_prior.csv")}}
    if "pool" in result:
        summary["pool"] = result["pool"]
    if len(spec.objectives) > 1:
        summary.update(_pareto(records, spec, out_dir, prior=base))
        ref = np.array(result["ref_point"])
        signs = np.array([1.0 if o.higher_is_better else -1.0 for o in spec.objectives])
        iters = sorted({r["iteration"] for r in records})
        steps = [sum(r["iteration"] <= i for r in records) for i in iters]
        hv_bo = hypervolume_curve(_objective_matrix(records, spec) * signs, [r["feasible"] for r in records], ref, steps)
        hv_rand = hypervolume_curve(_objective_matrix(base, spec) * signs, [r["feasible"] for r in base], ref, steps)
        space = "pool of decoded prior samples" if "pool" in result else "latent space"
        plot_hypervolume(steps, hv_bo, hv_rand, out_dir / "hypervolume.png",
                         title=f"{' & '.join(summary['target'])}: BO in the {space} vs random prior sampling",
                         random_label="random molecules of the pool" if "pool" in result else "random prior samples")
        summary["hypervolume"] = {"oracle_calls": steps, "bo": hv_bo, "random_prior": hv_rand,
                                  "ref_point": (ref * signs).tolist()}
        summary["files"]["hypervolume_png"] = str(out_dir / "hypervolume.png")
    return summary
