"""Run the seeds of a BO protocol in parallel worker processes.

Seeds are independent, so ``molshape optimize --workers N`` hands them to ``N`` spawned
processes. Each worker rebuilds the model and the :class:`~molshape.bo.loop.Problem`
from the checkpoint (the parent has already filled the encoding and scoring caches, so
this is a file read), runs its seeds as a serial run does (saving each seed's state after
every iteration, so a killed parallel run resumes like a serial one) and returns each
seed's final :class:`~molshape.bo.state.SeedState`. The parent collects those states and
writes one report, so the outputs are those of a serial run: on CPU the proposals are
identical.

Spawned (not forked) workers keep CUDA usable in every process; each worker gets
``threads`` torch threads (default 1: the workers themselves are the parallelism).
"""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import torch
from molshape.bo.config import OptimizeConfig
from molshape.bo.loop import problem_fingerprint
from molshape.bo.problem import build_problem
from molshape.bo.run import run_seed_saved
from molshape.bo.state import SeedState
from molshape.gvae.checkpoint import load_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeedJobSpec:
    """Everything a worker needs to rebuild the parent's problem (plain, picklable values)."""

    checkpoint_path: str
    target: str
    config: dict
    out_dir: str
    init: str
    n_init: int | None
    data: str | None
    attempts: int
    device: str
    threads: int = 1
    constraints: str = "auto"
    prior_quantile: float | None = None
    realism_gate: bool = True


_WORKER: dict = {}


def _init_worker(spec: SeedJobSpec) -> None:
    torch.set_num_threads(spec.threads)
    logging.basicConfig(level=logging.WARNING)
    model, grammar, ckpt = load_model(spec.checkpoint_path, spec.device)
    cfg = OptimizeConfig(**spec.config)
    problem = build_problem(model, grammar, spec.target, checkpoint=ckpt, checkpoint_path=spec.checkpoint_path,
                            init=spec.init, n_init=spec.n_init, data=spec.data, attempts=spec.attempts,
                            seed=cfg.seed, constraints=spec.constraints, prior_quantile=spec.prior_quantile,
                            realism_gate=spec.realism_gate)
    _WORKER.update(problem=problem, cfg=cfg, fingerprint=problem_fingerprint(problem, cfg))


def _run_one(spec: SeedJobSpec, seed: int) -> SeedState:
    w = _WORKER
    return run_seed_saved(w["problem"], w["cfg"], seed, spec.out_dir, w["fingerprint"], torch.device(spec.device))


def run_seeds_in_workers(spec: SeedJobSpec, seeds: list[int], workers: int,
                         progress: bool = False) -> dict[int, SeedState]:
    """Run ``seeds`` in ``workers`` spawned processes; returns each seed's final state.

    Raises:
        RuntimeError: a worker failed (its exception is chained).
    """
    from tqdm.auto import tqdm

    (Path(spec.out_dir) / "state").mkdir(parents=True, exist_ok=True)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(seeds)), mp_context=ctx, initializer=_init_worker,
                             initargs=(spec,)) as pool:
        futures = {pool.submit(_run_one, spec, s): s for s in seeds}
        states: dict[int, SeedState] = {}
        for fut in tqdm(as_completed(futures), total=len(futures), desc=f"seeds ({workers} workers)",
                        disable=not progress):
            try:
                states[futures[fut]] = fut.result()
            except Exception as e:  # noqa: BLE001 - re-raised with the seed named
                for other in futures:
                    other.cancel()
                raise RuntimeError(f"optimize: seed {futures[fut]} failed in a worker: {e}") from e
            log.info("seed %d finished", futures[fut])
    return states
