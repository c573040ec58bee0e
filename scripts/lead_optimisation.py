"""The lead-optimisation benchmark (JT-VAE / graph2graph): improve each of the 800 ZINC leads
with the lowest penalized logP while staying similar to it.

For each similarity threshold delta and each lead: a constrained latent search of
``--budget`` oracle calls (decoded, scored molecules) around the lead's latent, with
Tanimoto(candidate, lead) >= delta modelled as a constraint. The score is RDKit logP - SA
as the file defines it (``--score logp_sa``; the script checks it against the file), or
with ``--score plogp`` also minus the ring penalty max(largest ring - 6, 0). A lead's improvement is that of its best feasible
molecule, 0 when none is feasible; success = a positive improvement.

Prints mean +- sd improvement, success rate and wall time per delta beside the published
table, then one headline line starting ``lead_optimisation:``. ``--limit K`` runs a fixed
seeded subset of K leads (say so when quoting the figures).

Example:
    python scripts/lead_optimisation.py --checkpoint zinc --similarity 0.4 0.6 --budget 50 --limit 20 --workers 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

import molshape
from molshape.bo.constrained import SearchConfig
from molshape.bo.lead_report import lead_summary, write_lead_outputs
from molshape.bo.leads import SearchSpec, read_leads, run_leads
from molshape.core.atomic import write_json
from molshape.core.runtime import json_safe
from molshape.scoring.targets import Objective

#: graph2graph (ICLR 2019) Table 1: improvement in penalized logP, mean +- sd over the 800 leads
PUBLISHED = {"JT-VAE": ((1.03, 1.39), (0.28, 0.79)), "GCPN": ((2.49, 1.30), (0.79, 0.63)),
             "VJTNN+GAN": ((3.37, 1.81), (1.53, 1.25))}
LEADS_FILE = "jtvae_opt_test_logP-SA.txt"
MAX_BUDGET = 100


def lead_file(given: str | None) -> Path:
    if given:
        return Path(given)
    for folder in (os.environ.get("MOLSHAPE_DATA_DIR"), "../shared/data", "/work/shared/data"):
        if folder and (Path(folder) / LEADS_FILE).is_file():
            return Path(folder) / LEADS_FILE
    sys.exit(f"error: {LEADS_FILE} not found; pass --leads or set MOLSHAPE_DATA_DIR")


def subset(leads: list[tuple[int, str]], limit: int | None, seed: int) -> list[tuple[int, str]]:
    """A fixed seeded subset of ``limit`` leads, in file order (all when ``limit`` is None)."""
    if limit is None or limit >= len(leads):
        return leads
    pick = np.sort(np.random.default_rng(seed).choice(len(leads), size=limit, replace=False))
    return [leads[i] for i in pick]


def check_scores(path: Path, leads: list[tuple[int, str]]) -> float:
    """Largest difference between the file's score and ours on the chosen leads."""
    given = {}
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) >= 2:
                given[i] = float(parts[1])
    ours = Objective("logp_sa").values([s for _, s in leads])
    return float(np.nanmax(np.abs(ours - np.array([given[i] for i, _ in leads]))))


def decodes_back(rows: list[dict]) -> float:
    """Share of the usable leads whose starting latent decodes to the lead itself (stereo aside: the
    grammar cannot write it)."""
    from molshape.scoring.chem import kekule_smiles

    ok = [r for r in rows if r.get("status") == "ok"]
    return sum(kekule_smiles(r["lead_decodes_to"] or None) == kekule_smiles(r["lead"]) for r in ok) / max(len(ok), 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="zinc", help="a checkpoint or shipped model name [zinc]")
    ap.add_argument("--leads", default=None, help=f"the lead file [{LEADS_FILE} in MOLSHAPE_DATA_DIR or ../shared/data]")
    ap.add_argument("--similarity", type=float, nargs="+", default=[0.4, 0.6])
    ap.add_argument("--score", choices=("logp_sa", "plogp"), default="logp_sa",
                    help="logp_sa: logP - SA, as the file [default]; plogp: also minus the ring penalty")
    ap.add_argument("--budget", type=int, default=50, help=f"oracle calls per lead (<= {MAX_BUDGET}) [50]")
    ap.add_argument("--n-init", type=int, default=10, help="initial design per lead, the lead's own latent first [10]")
    ap.add_argument("--batch", type=int, default=10, help="proposals per iteration [10]")
    ap.add_argument("--radius", type=float, default=1.0, help="trust-region half-width, prior sds [1.0]")
    ap.add_argument("--refine", type=int, default=300,
                    help="refine each lead's latent for up to this many steps; 0: the encoder's latent [300]")
    ap.add_argument("--limit", type=int, default=None, help="a fixed seeded subset of this many leads [all 800]")
    ap.add_argument("--seed", type=int, default=0, help="subset and search seed [0]")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes [all cores]")
    ap.add_argument("--out", default=None, help="output folder [runs/lead-optimisation-<time>]")
    args = ap.parse_args(argv)
    if not 1 <= args.budget <= MAX_BUDGET:
        ap.error(f"--budget must be in 1..{MAX_BUDGET}")
    if any(not 0 <= d <= 1 for d in args.similarity):
        ap.error("--similarity values must be in [0, 1]")
    torch.set_num_threads(1)
    path = lead_file(args.leads)
    all_leads = read_leads(path)
    leads = subset(all_leads, args.limit, args.seed)
    model = molshape.load(args.checkpoint)
    out = Path(args.out or f"runs/lead-optimisation-{time.strftime('%Y%m%d-%H%M%S')}")
    deviation = check_scores(path, leads)
    print(f"{len(leads)} of {len(all_leads)} leads ({'all' if len(leads) == len(all_leads) else f'seeded subset, seed {args.seed}'}); "
          f"budget {args.budget} oracle calls per lead; model {model.path.name}; {args.workers} workers; "
          f"score check vs the file: max |diff| {deviation:.2e}", file=sys.stderr)
    results = {}
    for delta in args.similarity:
        cfg = SearchConfig(budget=args.budget, n_init=args.n_init, batch=args.batch, radius=args.radius, seed=args.seed,
                           refine_lead=args.refine)
        spec = SearchSpec([Objective(args.score)], [], similarity=delta, cfg=cfg)
        start = time.perf_counter()
        rows = run_leads(model.net, model.grammar, leads, spec, checkpoint_path=model.path, workers=args.workers,
                         progress=True)
        wall = time.perf_counter() - start
        folder = out / f"delta-{delta:g}"
        folder.mkdir(parents=True, exist_ok=True)
        summary = write_lead_outputs(folder, rows, spec, lead_summary(rows, spec))
        summary["wall_s"] = wall
        summary["lead_decodes_back"] = decodes_back(rows)
        write_json(folder / "summary.json", json_safe(summary), allow_nan=False)
        results[delta] = summary
    table = [f"{'method':<28} " + " ".join(f"{'delta = ' + format(d, 'g'):>26}" for d in args.similarity)]
    for name, cells in PUBLISHED.items():
        vals = {0.4: cells[0], 0.6: cells[1]}
        table.append(f"{name + ' (published, 800)':<28} " + " ".join(
            f"{(f'{vals[d][0]:.2f} +- {vals[d][1]:.2f}' if d in vals else 'n/a'):>26}" for d in args.similarity))
    ours = f"molshape ({model.path.stem}, {len(leads)})"
    table.append(f"{ours:<28} " + " ".join(
        f"{results[d]['improvement']['mean']:.2f} +- {results[d]['improvement']['sd']:.2f} ({results[d]['success_rate']:.0%})"
        .rjust(26) for d in args.similarity))
    print("\n".join(table))
    for d in args.similarity:
        s = results[d]
        print(f"delta {d:g}: improvement {s['improvement']['mean']:.3f} +- {s['improvement']['sd']:.3f}, success "
              f"{s['success_rate']:.1%}, feasible share of proposals {s['feasible_share']:.1%}, mean best similarity "
              f"{s['best_similarity']['mean']:.3f}, realism: rings > 8 {s['realism']['ring_over_8']:.1%}, triple "
              f"bonds in rings {s['realism']['triple_bond_in_ring']:.1%}, aromatic 3-rings "
              f"{s['realism']['aromatic_3_ring']:.1%}; leads whose latent decodes back {s['lead_decodes_back']:.1%}; "
              f"wall {s['wall_s']:.0f} s")
    headline = {"leads": len(leads), "score": args.score, "subset": len(leads) < len(all_leads), "budget": args.budget,
                "model": model.path.stem, "workers": args.workers, "refine": args.refine,
                **{f"delta_{d:g}": {"improvement": results[d]["improvement"], "success_rate": results[d]["success_rate"],
                                    "wall_s": results[d]["wall_s"]} for d in args.similarity}}
    write_json(out / "benchmark.json", json_safe(headline), allow_nan=False)
    print("lead_optimisation: " + "; ".join(
        f"delta {d:g}: {results[d]['improvement']['mean']:.2f} +- {results[d]['improvement']['sd']:.2f}, success "
        f"{results[d]['success_rate']:.0%}, {results[d]['wall_s']:.0f} s" for d in args.similarity)
        + f" ({len(leads)} leads{' (seeded subset)' if len(leads) < len(all_leads) else ''}, {args.budget} calls "
        f"per lead, {model.path.stem}, refine {args.refine}, {args.workers} workers); published VJTNN+GAN 3.37 +- 1.81 / 1.53 +- 1.25")
    return 0


if __name__ == "__main__":
    sys.exit(main())
