"""Run a BO protocol into a folder: every seed from its saved state (or from the start),
each new state saved before the next iteration, then the report.

The steps themselves are :func:`molshape.bo.loop.step`; this module adds the files:
``state/seed_<s>.pt`` after every iteration (so a killed run resumes from its last finished
iteration) and, through :func:`molshape.bo.report.write_report`, the outputs.

Example:
    >>> summary = run_bo(problem, OptimizeConfig(seeds=1, iterations=1, batch=4), out_dir)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from molshape.bo.config import OptimizeConfig
from molshape.bo.loop import Problem, initial_state, problem_fingerprint, run_seed
from molshape.bo.report import write_report
from molshape.bo.state import SeedState, load_state, save_state, state_path


def resume_or_start(problem: Problem, cfg: OptimizeConfig, seed: int, out_dir: str | Path,
                    fingerprint: str) -> SeedState:
    """Seed ``seed``'s saved state in ``out_dir``, or its initial state when none is saved.

    Raises:
        ValueError: the saved state belongs to another run (see :func:`~molshape.bo.state.load_state`).
    """
    return load_state(state_path(out_dir, seed), fingerprint) or initial_state(problem, cfg, seed, fingerprint)


def run_seed_saved(problem: Problem, cfg: OptimizeConfig, seed: int, out_dir: str | Path, fingerprint: str,
                   device: torch.device | str = "cpu", bar: Any = None) -> SeedState:
    """One seed to the end, resumed from and saved to its state file after every iteration."""
    path = state_path(out_dir, seed)
    state = resume_or_start(problem, cfg, seed, out_dir, fingerprint)
    if bar is not None:
        bar.update(min(state.iteration, cfg.iterations))

    def saved(new: SeedState) -> None:
        save_state(new, path)
        if bar is not None:
            bar.update(1)

    return run_seed(problem, cfg, state, device, on_step=saved)


def run_seeds(problem: Problem, cfg: OptimizeConfig, out_dir: str | Path, *, progress: bool = False,
              device: torch.device | str = "cpu", finished: dict[int, SeedState] | None = None) -> list[SeedState]:
    """Every seed's final state, in seed order; seeds in ``finished`` (run elsewhere, e.g. by
    :mod:`molshape.bo.parallel`'s workers) are taken as they are.

    Raises:
        ValueError: a finished state is of another problem or settings, or a saved one is.
    """
    out_dir = Path(out_dir)
    (out_dir / "state").mkdir(parents=True, exist_ok=True)
    fingerprint = problem_fingerprint(problem, cfg)
    finished = finished or {}
    states = []
    bar = tqdm(total=cfg.seeds * cfg.iterations, desc="BO iterations", disable=not progress)
    for s in range(cfg.seed, cfg.seed + cfg.seeds):
        if s in finished:
            state = finished[s]
            if state.fingerprint != fingerprint or state.iteration < cfg.iterations:
                raise ValueError(f"optimize: seed {s} came back from a worker for another problem or unfinished")
            bar.update(cfg.iterations)
        else:
            state = run_seed_saved(problem, cfg, s, out_dir, fingerprint, torch.device(device), bar)
        states.append(state)
    bar.close()
    return states


def run_bo(problem: Problem, cfg: OptimizeConfig, out_dir: str | Path, progress: bool = False,
           device: torch.device | str = "cpu", finished: dict[int, SeedState] | None = None,
           extra: dict[str, Any] | None = None) -> dict:
    """Run (or resume) every seed, then write ``proposals.csv``, ``summary.json`` and plots.

    Args:
        finished: final states of seeds already run (see :func:`run_seeds`).
        extra: entries appended to the summary (the run's settings).

    Returns:
        The summary dict (also written to ``out_dir/summary.json``).
    """
    states = run_seeds(problem, cfg, out_dir, progress=progress, device=device, finished=finished)
    return write_report(problem, cfg, states, Path(out_dir), extra)
