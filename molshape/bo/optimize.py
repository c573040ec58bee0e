"""Latent BO with a trained grammar autoencoder, into a run folder: hold the folder
(:func:`~molshape.bo.folder.run_folder`: lock, resume check, ``config.json``), build the
problem, run the seeds (in worker processes when asked) and write the report. The loop
itself (:mod:`molshape.bo.loop`) sees only a :class:`~molshape.bo.loop.Problem`.

Example:
    >>> summary = optimize(model, grammar, "logp", OptimizeConfig(seeds=1, iterations=2), out,  # doctest: +SKIP
    ...                    checkpoint=ckpt, checkpoint_path=path, init="prior", n_init=100)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from molshape.bo.config import OptimizeConfig
from molshape.bo.folder import run_folder
from molshape.bo.parallel import SeedJobSpec, run_seeds_in_workers
from molshape.bo.problem import build_problem
from molshape.bo.run import run_bo


def run_config(target: str, config: OptimizeConfig, *, checkpoint_path: str | Path, init: str, n_init: int | None,
               data: str | Path | None, attempts: int, constraints: str, device: torch.device | str, workers: int,
               prior_quantile: float | None, realism_gate: bool = True) -> dict[str, Any]:
    """What ``config.json`` records of a run (and what a resumed run must share with it)."""
    return {"checkpoint": str(checkpoint_path), "target": target, "init": init, "n_init": n_init,
            "data": None if data is None else str(data), "attempts": attempts, "constraints": constraints,
            "device": str(device), "workers": workers, "prior_quantile": prior_quantile,
            "realism_gate": realism_gate, "optimize": config.to_dict()}


def optimize(model, grammar, target: str, config: OptimizeConfig, out_dir: Path, *, checkpoint: dict,
             checkpoint_path: str | Path, init: str = "auto", n_init: int | None = None,
             data: str | Path | None = None, attempts: int = 1, device: torch.device | str = "cpu",
             progress: bool = False, workers: int = 1, worker_threads: int = 1, constraints: str = "auto",
             prior_quantile: float | None = None, realism_gate: bool = True,
             record: dict[str, Any] | None = None) -> dict:
    """Latent BO of ``target`` (``logp`` or ``expr``) with a trained grammar autoencoder.

    Proposals are decoded under ``constraints`` (``auto``: semantic wherever the model's
    grammar supports it, so every proposal is a valid molecule). With ``realism_gate`` (the
    default) a molecule raising a realism flag is rejected before it is scored
    (:mod:`molshape.bo.realism_gate`); ``realism_gate=False`` scores every decode.

    ``out_dir`` is locked for the run; a folder holding a run of the same settings is resumed
    (``seeds`` and ``iterations`` may grow), any other non-empty folder is refused. The
    settings go to ``config.json`` with ``record``'s entries first (how the run was started:
    ``argv``, ``command``, ...). See :func:`molshape.bo.problem.build_problem` for ``init`` /
    ``n_init`` / ``data`` / ``attempts`` and :func:`molshape.bo.run.run_bo` for the outputs. With
    ``workers > 1`` the seeds run in that many processes (:mod:`molshape.bo.parallel`) before
    the report is written.

    Returns:
        The summary dict.

    Raises:
        RunLocked: another process is writing to ``out_dir``.
        OutputRefused: ``out_dir`` holds other files or a run with other settings.
    """
    settings = run_config(target, config, checkpoint_path=checkpoint_path, init=init, n_init=n_init, data=data,
                          attempts=attempts, constraints=constraints, device=device, workers=workers,
                          prior_quantile=prior_quantile, realism_gate=realism_gate)
    with run_folder(out_dir, {**(record or {}), **settings}):
        problem = build_problem(model, grammar, target, checkpoint=checkpoint, checkpoint_path=checkpoint_path,
                                init=init, n_init=n_init, data=data, attempts=attempts, seed=config.seed,
                                progress=progress, constraints=constraints, prior_quantile=prior_quantile,
                                realism_gate=realism_gate)
        finished = None
        if workers > 1 and config.seeds > 1:
            spec = SeedJobSpec(str(checkpoint_path), target, config.to_dict(), str(out_dir), init, n_init,
                               None if data is None else str(data), attempts, str(device), worker_threads,
                               constraints, prior_quantile, realism_gate)
            finished = run_seeds_in_workers(spec, list(range(config.seed, config.seed + config.seeds)), workers,
                                            progress)
        return run_bo(problem, config, out_dir, progress=progress, device=device, finished=finished,
                      extra={"target": target, "attempts": attempts, "constraints": constraints,
                             "prior_quantile": prior_quantile})
