"""Entry point of constrained, multi-objective and lead searches: run, write, summarise.

Example:
    >>> summary = optimize_search(model, grammar, spec, out_dir, checkpoint_path=path, leads=[(1, "CCO")])  # doctest: +SKIP
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from molshape.bo.folder import fresh_folder
from molshape.bo.lead_report import lead_summary, prior_summary, write_lead_outputs
from molshape.bo.leads import SearchSpec, optimise_prior, run_leads
from molshape.bo.pool import optimise_pool
from molshape.core.atomic import write_json
from molshape.core.runtime import json_safe
from molshape.grammar.representation import is_molecular


def optimize_search(model, grammar, spec: SearchSpec, out_dir: Path, *, checkpoint_path: str | Path,
                    leads: list[tuple[int, str]] | None = None, workers: int = 1, threads: int = 1,
                    progress: bool = False, record: dict[str, Any] | None = None) -> dict:
    """Search from each of ``leads`` (or from the prior when ``leads`` is None); write the files
    of :mod:`molshape.bo.lead_report` and ``summary.json`` into ``out_dir``; return the summary.

    ``out_dir`` must be empty or new; it is locked for the run and its settings go to
    ``config.json`` first, after ``record``'s entries (how the run was started).

    Raises:
        ValueError: ``leads`` is an empty list (nothing is created then).
        RunLocked: another process is writing to ``out_dir``.
        OutputRefused: ``out_dir`` is not empty.
    """
    if leads is not None and not leads:
        raise ValueError("no lead to optimise")
    settings = {"checkpoint": str(checkpoint_path), "target": [o.name for o in spec.objectives],
                "from": len(leads) if leads else None, "similarity": spec.similarity,
                "constraint": [str(c) for c in spec.constraints], "search": spec.cfg.to_dict(), "workers": workers}
    with fresh_folder(out_dir, {**(record or {}), **settings}):
        return _run_search(model, grammar, spec, Path(out_dir), checkpoint_path, leads, workers, threads, progress)


def _run_search(model, grammar, spec: SearchSpec, out_dir: Path, checkpoint_path: str | Path,
                leads: list[tuple[int, str]] | None, workers: int, threads: int, progress: bool) -> dict:
    start = time.perf_counter()
    if leads is None:
        if spec.cfg.search_space(len(spec.objectives), with_leads=False, molecular=is_molecular(grammar)) == "pool":
            result = optimise_pool(model, grammar, spec, progress=progress)
        else:
            result = optimise_prior(model, grammar, spec)
        summary = prior_summary(result, spec, out_dir)
    else:
        results = run_leads(model, grammar, leads, spec, checkpoint_path=checkpoint_path, workers=workers,
                            threads=threads, progress=progress)
        summary = write_lead_outputs(out_dir, results, spec, lead_summary(results, spec))
        summary["rows"] = [r["row"] for r in results]
    summary.update(checkpoint=str(checkpoint_path), wall_s=time.perf_counter() - start, workers=workers,
                   out=str(out_dir))
    write_json(out_dir / "summary.json", json_safe({k: v for k, v in summary.items() if k != "rows"}),
               allow_nan=False)
    return summary
