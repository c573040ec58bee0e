"""Latent BO with a trained grammar autoencoder: build the problem, run the seeds (in
worker processes when asked), write the report. The loop itself (:mod:`molshape.bo.loop`)
sees only a :class:`~molshape.bo.loop.Problem`."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from molshape.bo.loop import OptimizeConfig, run_bo
from molshape.bo.parallel import SeedJobSpec, run_seeds_in_workers
from molshape.bo.problem import build_problem
from molshape.core.runtime import json_safe
from molshape.grammar.representation import MOLECULE_GRAMMARS


def _proposals(out_dir: Path) -> list[str]:
    import csv

    with open(Path(out_dir) / "proposals.csv", newline="") as f:
        return [r["string"] for r in csv.DictReader(f) if r["string"]]


def optimize(model, grammar, target: str, config: OptimizeConfig, out_dir: Path, *, checkpoint: dict,
             checkpoint_path: str | Path, init: str = "auto", n_init: int | None = None,
             data: str | Path | None = None, attempts: int = 1, device: torch.device | str = "cpu",
             progress: bool = False, workers: int = 1, worker_threads: int = 1, constraints: str = "auto",
             prior_quantile: float | None = None) -> dict:
    """Latent BO of ``target`` (``logp`` or ``expr``) with a trained grammar autoencoder.

    Proposals are decoded under ``constraints`` (``auto``: semantic wherever the model's
    grammar supports it, so every proposal is a valid molecule).

    See :func:`molshape.bo.problem.build_problem` for ``init`` / ``n_init`` / ``data`` /
    ``attempts`` and :func:`molshape.bo.loop.run_bo` for the outputs. With ``workers > 1`` the seeds run in
    that many processes (:mod:`molshape.bo.parallel`) before the report is written.
    Returns the summary dict.
    """
    problem = build_problem(model, grammar, target, checkpoint=checkpoint, checkpoint_path=checkpoint_path,
                            init=init, n_init=n_init, data=data, attempts=attempts, seed=config.seed,
                            progress=progress, constraints=constraints, prior_quantile=prior_quantile)
    if workers > 1 and config.seeds > 1:
        spec = SeedJobSpec(str(checkpoint_path), target, config.to_dict(), str(out_dir), init, n_init,
                           None if data is None else str(data), attempts, str(device), worker_threads,
                           constraints, prior_quantile)
        run_seeds_in_workers(spec, list(range(config.seed, config.seed + config.seeds)), workers, progress)
    summary = run_bo(problem, config, out_dir, progress=progress, device=device)
    summary["target"] = target
    summary["attempts"] = attempts
    summary["constraints"] = constraints
    summary["prior_quantile"] = prior_quantile
    if problem.kind in MOLECULE_GRAMMARS:
        from molshape.scoring.similarity import realism_shares  # RDKit is heavy: loaded only for molecules

        summary["realism"] = realism_shares(_proposals(out_dir))
    (Path(out_dir) / "summary.json").write_text(json.dumps(json_safe(summary), indent=2, allow_nan=False))
    return summary
