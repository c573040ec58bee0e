"""Bayesian optimisation in the latent space (BoTorch), GVAE's protocol and a TuRBO variant.

Per seed: split the initial data 90/10 (the 10 % only measures the GP's test RMSE and
log-likelihood), normalise the training latents to the unit cube of their bounding box
in double precision (:func:`initial_state`), then ``iterations`` times :func:`step`: fit a
GP (:mod:`molshape.bo.surrogate`), propose ``batch`` points by greedy sequential
``qLogExpectedImprovement`` maximised with ``optimize_acqf`` inside the box
(``strategy="ei"``) or inside a TuRBO trust region (``strategy="turbo"``), evaluate them
(:class:`Problem`), and add them to the training data. An invalid proposal counts as an
evaluation and enters the GP with the worst objective of the training data, as in GVAE.

:func:`step` maps one :class:`~molshape.bo.state.SeedState` to the next and depends only
on it, the problem and the settings: iteration ``it`` of seed ``s`` draws its random
numbers from ``s * BO_STRIDE + it`` (:func:`~molshape.core.runtime.seeded_globally`), so the
caller's global generators are left as they were and a resumed seed continues exactly.
The loop writes no file and knows nothing of models or molecules: a :class:`Problem`
supplies the initial latents with their scores and an ``evaluate`` function for new
latents (:mod:`molshape.bo.problem` builds one that decodes with a model);
:mod:`molshape.bo.run` saves the states and :mod:`molshape.bo.report` writes the outputs.

Example:
    >>> state = initial_state(problem, OptimizeConfig(iterations=1, batch=4), seed=0)  # doctest: +SKIP
    >>> state = step(problem, OptimizeConfig(iterations=1, batch=4), state)  # doctest: +SKIP
    >>> state.iteration, len(state.records)  # doctest: +SKIP
    (1, 4)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from botorch.acquisition.logei import qLogExpectedImprovement
from botorch.optim import optimize_acqf
from botorch.sampling import SobolQMCNormalSampler
from torch import Tensor

from molshape.bo.config import OptimizeConfig
from molshape.bo.constrained import Region
from molshape.bo.state import SeedState
from molshape.bo.surrogate import evaluate_surrogate, fit_surrogate, lengthscales, linear_algebra
from molshape.bo.trust_region import TrustRegion
from molshape.core.runtime import BO_STRIDE, seeded_globally

log = logging.getLogger(__name__)


@dataclass
class Problem:
    """What the loop optimises.

    Attributes:
        z: ``N x d`` initial latents.
        scores: ``N`` float64 scores of the initial points (``nan`` = invalid).
        evaluate: latents ``q x d`` (float64, original scale) -> one record per latent, a
            dict with at least ``string`` (``None`` when invalid) and ``score`` (``nan``
            when invalid); extra keys become CSV columns.
        higher_is_better: ``True`` for penalized logP, ``False`` for the expression score.
        source: where the initial data came from (e.g. ``data:zinc250k``, ``prior``).
        key: identifies the problem in state files (checkpoint + data hashes).
        kind: ``smiles`` or ``expr`` (``smiles`` adds a molecule grid to the report).
        target: the score's name (``logp``, ``qed``, ``expr``), named in the report's pictures.
        region: where the prior has mass (:class:`~molshape.bo.constrained.Region`); when set,
            the search box is intersected with its box and proposals are pulled into its ball.
    """

    z: Tensor
    scores: np.ndarray
    evaluate: Callable[[Tensor], list[dict]]
    higher_is_better: bool = True
    source: str = "custom"
    key: str = ""
    kind: str = ""
    target: str = ""
    region: Region | None = None

    def objective(self, scores: np.ndarray) -> np.ndarray:
        """Scores -> values to maximise (``nan`` stays ``nan``)."""
        return scores if self.higher_is_better else -scores


def problem_fingerprint(problem: Problem, cfg: OptimizeConfig) -> str:
    """Hash of everything a state file must agree with before it is resumed."""
    z = problem.z.detach().cpu().double().contiguous().numpy()
    h = hashlib.sha256(z.tobytes())
    h.update(np.nan_to_num(problem.scores, nan=-1e300).astype(np.float64).tobytes())
    h.update(problem.key.encode())
    keep = {k: v for k, v in cfg.to_dict().items() if k not in ("seeds", "seed", "iterations")}
    h.update(json.dumps(keep, sort_keys=True).encode())
    return h.hexdigest()


def initial_state(problem: Problem, cfg: OptimizeConfig, seed: int, fingerprint: str = "") -> SeedState:
    """Seed ``seed`` before its first iteration: the seeded train/test split of the initial
    data in the unit cube of the training latents' box (intersected with the problem's region).

    Raises:
        ValueError: no initial point is valid, or too few are left for training.
    """
    z = problem.z.detach().cpu().double()
    y = problem.objective(np.asarray(problem.scores, dtype=np.float64))
    finite = np.isfinite(y)
    if not finite.any():
        raise ValueError("optimize: none of the initial points is valid; nothing to fit a GP to")
    # GVAE: invalid points carry the worst observed objective
    y = torch.tensor(np.where(finite, y, y[finite].min()), dtype=torch.float64).unsqueeze(-1)
    perm = torch.randperm(z.shape[0], generator=torch.Generator().manual_seed(seed))
    n_test = int(round(cfg.test_fraction * z.shape[0]))
    if z.shape[0] - n_test < 2:
        raise ValueError(f"optimize: {z.shape[0]} initial points leave too few for training")
    test, train = perm[:n_test], perm[n_test:]
    lo, hi = z[train].min(0).values, z[train].max(0).values
    if problem.region is not None:
        lo, hi = torch.maximum(lo, problem.region.lo), torch.minimum(hi, problem.region.hi)
    hi = torch.where(hi > lo, hi, lo + 1e-6)  # a constant dimension still gets a (tiny) box

    def unit(v: Tensor) -> Tensor:
        return (v - lo) / (hi - lo)

    best = float(y[train].max())
    turbo = TrustRegion.create(z.shape[1], cfg.batch, best) if cfg.strategy == "turbo" else None
    return SeedState(fingerprint=fingerprint, seed=seed, iteration=0, lo=lo, hi=hi, X=unit(z[train]), Y=y[train],
                     X_test=unit(z[test]), Y_test=y[test], initial_best=best, turbo=turbo)


def step(problem: Problem, cfg: OptimizeConfig, state: SeedState,
         device: torch.device | str = "cpu") -> SeedState:
    """One iteration: fit the GP, propose ``cfg.batch`` points, evaluate them, add them to the
    data (invalid ones with the worst objective so far), update the trust region and record.

    ``state`` is left as it was; the new state is returned. Random draws come from
    ``state.seed * BO_STRIDE + state.iteration`` alone. GP fitting and acquisition run on
    ``device``; the state holds CPU tensors.

    Raises:
        RuntimeError: ``problem.evaluate`` returned a record count other than ``cfg.batch``.
    """
    device = torch.device(device)
    it, X, Y, lo, hi = state.iteration, state.X, state.Y, state.lo, state.hi
    step_seed = state.seed * BO_STRIDE + it
    with seeded_globally(step_seed):  # BoTorch draws restarts and sampler seeds from the global generator
        t0 = time.perf_counter()
        model = fit_surrogate(X.to(device), Y.to(device), cfg.surrogate, torch.Generator().manual_seed(step_seed))
        t_fit = time.perf_counter() - t0
        metrics = evaluate_surrogate(model, state.X_test.to(device), state.Y_test.to(device))
        t0 = time.perf_counter()
        with linear_algebra():
            cand = propose(model, X.to(device), Y.to(device), cfg, state.turbo).cpu()  # [q x d] unit cube
        t_acq = time.perf_counter() - t0
        if problem.region is not None:  # keep to where the prior has mass; the GP sees the point evaluated
            cand = (problem.region.project(lo + cand * (hi - lo)) - lo) / (hi - lo)
        t0 = time.perf_counter()
        records = problem.evaluate(lo + cand * (hi - lo))
        t_eval = time.perf_counter() - t0
    if len(records) != cfg.batch:
        raise RuntimeError(f"evaluate returned {len(records)} records for {cfg.batch} latents")
    scores = np.array([r["score"] for r in records], dtype=np.float64)
    y_new = problem.objective(scores)
    y_fill = torch.tensor(np.where(np.isfinite(y_new), y_new, float(Y.min())), dtype=torch.float64).unsqueeze(-1)
    turbo = None if state.turbo is None else state.turbo.update(float(y_fill.max()))
    recorded = [_plain({**r, "seed": state.seed, "iteration": it, "index": j,
                        "valid": r.get("string") is not None and bool(np.isfinite(scores[j]))})
                for j, r in enumerate(records)]
    metric = {"iteration": it, **metrics, "fit_s": t_fit, "acquisition_s": t_acq, "evaluate_s": t_eval,
              "n_train": int(X.shape[0]), "pid": os.getpid()}
    log.info("seed %d iteration %d: valid %d/%d, test RMSE %.3f, fit %.1fs, acq %.1fs", state.seed, it,
             int(np.isfinite(y_new).sum()), cfg.batch, metrics["rmse"], t_fit, t_acq)
    return dataclasses.replace(state, iteration=it + 1, X=torch.cat([X, cand]), Y=torch.cat([Y, y_fill]),
                               turbo=turbo, records=state.records + recorded, metrics=state.metrics + [metric])


def run_seed(problem: Problem, cfg: OptimizeConfig, state: SeedState, device: torch.device | str = "cpu",
             on_step: Callable[[SeedState], None] | None = None) -> SeedState:
    """:func:`step` until ``cfg.iterations`` iterations are done; ``on_step`` sees each new
    state (the caller saves it there, and moves a progress bar)."""
    while state.iteration < cfg.iterations:
        state = step(problem, cfg, state, device)
        if on_step is not None:
            on_step(state)
    return state


def propose(model, X: Tensor, Y: Tensor, cfg: OptimizeConfig, trust: TrustRegion | None = None) -> Tensor:
    """``cfg.batch`` new points ``[q x d]`` in the unit cube by greedy sequential qLogEI.

    Draws from torch's global generator (BoTorch offers no other for the restarts); call it
    inside :func:`~molshape.core.runtime.seeded_globally` to make it depend on a seed alone.

    Args:
        X: ``n x d`` training inputs (unit cube); Y: ``n x 1`` objective (maximised).
        trust: restrict the search to this trust region around the best point (TuRBO).
    """
    d = X.shape[1]
    lower, upper = X.new_zeros(d), X.new_ones(d)
    if trust is not None:
        lower, upper = trust.bounds(X[Y[:, 0].argmax()], lengthscales(model))
    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([cfg.mc_samples]))
    acq = qLogExpectedImprovement(model, best_f=Y.max(), sampler=sampler)
    cand, _ = optimize_acqf(
        acq, bounds=torch.stack([lower, upper]), q=cfg.batch, num_restarts=cfg.num_restarts,
        raw_samples=cfg.raw_samples, sequential=True,  # GVAE's greedy batch: one point at a time
        options={"maxiter": cfg.maxiter, "batch_limit": cfg.num_restarts},
    )
    return cand.detach().clamp(0.0, 1.0)


def _plain(record: dict) -> dict:
    """A record of plain Python values (state files are loaded with ``weights_only=True``)."""
    out = {}
    for k, v in record.items():
        if isinstance(v, (np.floating, np.integer, np.bool_)):
            v = v.item()
        if isinstance(v, float) and math.isnan(v):
            v = None  # nan is not JSON; None means "no score"
        out[k] = v
    return out
