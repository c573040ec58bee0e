"""Bayesian optimisation in the latent space (BoTorch), GVAE's protocol and a TuRBO variant.

Per seed: split the initial data 90/10 (the 10 % only measures the GP's test RMSE and
log-likelihood), normalise the training latents to the unit cube of their bounding box
in double precision, then ``iterations`` times: fit a GP (:mod:`molshape.bo.surrogate`),
propose ``batch`` points by greedy sequential ``qLogExpectedImprovement`` maximised with
``optimize_acqf`` inside the box (``strategy="ei"``) or inside a TuRBO trust region
(``strategy="turbo"``), decode and score them (:class:`Problem`), and add them to the
training data. An invalid proposal counts as an evaluation and enters the GP with the
worst objective of the training data, as in GVAE. After every iteration a state file
per seed is written atomically, so a killed run resumes from its last finished iteration.

The loop knows nothing of models or molecules: a :class:`Problem` supplies the initial
latents with their scores and an ``evaluate`` function for new latents
(:mod:`molshape.bo.problem` builds one from a checkpoint).

Example:
    >>> summary = run_bo(problem, OptimizeConfig(seeds=1, iterations=1, batch=4), out_dir)
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from botorch.acquisition.logei import qLogExpectedImprovement
from botorch.optim import optimize_acqf
from botorch.sampling import SobolQMCNormalSampler
from torch import Tensor
from tqdm.auto import tqdm

from molshape.core.checkpoint import load_checkpoint, save_checkpoint
from molshape.bo.config import OptimizeConfig
from molshape.bo.constrained import Region
from molshape.bo.surrogate import evaluate_surrogate, fit_surrogate, lengthscales, linear_algebra
from molshape.bo.report import write_report
from molshape.bo.trust_region import TrustRegion
from molshape.core.runtime import BO_STRIDE

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


def run_bo(problem: Problem, cfg: OptimizeConfig, out_dir: Path, progress: bool = False,
           device: torch.device | str = "cpu") -> dict:
    """Run (or resume) every seed, then write ``proposals.csv``, ``summary.json`` and plots.

    GP fitting and acquisition run on ``device``; state files hold CPU tensors.

    Returns:
        The summary dict (also written to ``out_dir/summary.json``).
    """
    out_dir = Path(out_dir)
    (out_dir / "state").mkdir(parents=True, exist_ok=True)
    fingerprint = problem_fingerprint(problem, cfg)
    states = []
    bar = tqdm(total=cfg.seeds * cfg.iterations, desc="BO iterations", disable=not progress)
    for s in range(cfg.seed, cfg.seed + cfg.seeds):
        states.append(run_seed(problem, cfg, s, out_dir / "state" / f"seed_{s}.pt", fingerprint, bar,
                               torch.device(device)))
    bar.close()
    return write_report(problem, cfg, states, out_dir)


def problem_fingerprint(problem: Problem, cfg: OptimizeConfig) -> str:
    """Hash of everything a state file must agree with before it is resumed."""
    z = problem.z.detach().cpu().double().contiguous().numpy()
    h = hashlib.sha256(z.tobytes())
    h.update(np.nan_to_num(problem.scores, nan=-1e300).astype(np.float64).tobytes())
    h.update(problem.key.encode())
    keep = {k: v for k, v in cfg.to_dict().items() if k not in ("seeds", "seed", "iterations")}
    h.update(json.dumps(keep, sort_keys=True).encode())
    return h.hexdigest()


def run_seed(problem: Problem, cfg: OptimizeConfig, seed: int, state_path: Path, fingerprint: str,
             bar=None, device: torch.device = torch.device("cpu")) -> dict:
    """All iterations of one seed, resuming from ``state_path`` when it exists."""
    state = _load_state(state_path, fingerprint, seed) or _initial_state(problem, cfg, seed, fingerprint)
    if bar is not None:
        bar.update(min(state["iteration"], cfg.iterations))
    X, Y = state["X"], state["Y"]
    lo, hi = state["lo"], state["hi"]
    while state["iteration"] < cfg.iterations:
        it = state["iteration"]
        torch.manual_seed(seed * BO_STRIDE + it)  # optimize_acqf draws its raw samples from torch's RNG
        gen = torch.Generator().manual_seed(seed * BO_STRIDE + it)
        t0 = time.perf_counter()
        model = fit_surrogate(X.to(device), Y.to(device), cfg.surrogate, gen)
        t_fit = time.perf_counter() - t0
        metrics = evaluate_surrogate(model, state["X_test"].to(device), state["Y_test"].to(device))
        trust = TrustRegion.from_dict(state["turbo"]) if state["turbo"] else None
        t0 = time.perf_counter()
        with linear_algebra():
            cand = propose(model, X.to(device), Y.to(device), cfg, trust).cpu()  # [q x d] unit cube
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
        worst = float(Y.min())
        y_fill = torch.tensor(np.where(np.isfinite(y_new), y_new, worst), dtype=torch.float64).unsqueeze(-1)
        X, Y = torch.cat([X, cand]), torch.cat([Y, y_fill])
        if trust is not None:
            state["turbo"] = trust.update(float(y_fill.max())).to_dict()
        for j, r in enumerate(records):
            r.update(seed=seed, iteration=it, index=j, valid=r.get("string") is not None and bool(np.isfinite(scores[j])))
        state["records"] += [_plain(r) for r in records]
        state["metrics"].append({"iteration": it, **metrics, "fit_s": t_fit, "acquisition_s": t_acq,
                                 "evaluate_s": t_eval, "n_train": int(X.shape[0] - cfg.batch),
                                 "pid": os.getpid()})
        state.update(X=X, Y=Y, iteration=it + 1)
        save_checkpoint(state, state_path)
        log.info("seed %d iteration %d: valid %d/%d, test RMSE %.3f, fit %.1fs, acq %.1fs", seed, it,
                 int(np.isfinite(y_new).sum()), cfg.batch, metrics["rmse"], t_fit, t_acq)
        if bar is not None:
            bar.update(1)
    return state


def _initial_state(problem: Problem, cfg: OptimizeConfig, seed: int, fingerprint: str) -> dict:
    z = problem.z.detach().cpu().double()
    y = problem.objective(np.asarray(problem.scores, dtype=np.float64))
    finite = np.isfinite(y)
    if not finite.any():
        raise ValueError("optimize: none of the initial points is valid; nothing to fit a GP to")
    # GVAE: invalid points carry the worst observed objective
    y = torch.tensor(np.where(finite, y, y[finite].min()), dtype=torch.float64).unsqueeze(-1)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(z.shape[0], generator=gen)
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

    return {
        "fingerprint": fingerprint, "seed": seed, "iteration": 0,
        "lo": lo, "hi": hi, "X": unit(z[train]), "Y": y[train], "X_test": unit(z[test]), "Y_test": y[test],
        "initial_best": float(y[train].max()),
        "turbo": TrustRegion.create(z.shape[1], cfg.batch, float(y[train].max())).to_dict()
        if cfg.strategy == "turbo" else None,
        "records": [], "metrics": [],
    }


def _load_state(path: Path, fingerprint: str, seed: int) -> dict | None:
    if not path.exists():
        return None
    state = load_checkpoint(path)
    if state.get("fingerprint") != fingerprint:
        raise ValueError(f"{path}: state of a different run (other checkpoint, data or settings); "
                         "use a new output folder or delete the state folder to start over")
    log.info("seed %d: resuming after iteration %d", seed, state["iteration"])
    return state


def propose(model, X: Tensor, Y: Tensor, cfg: OptimizeConfig, trust: TrustRegion | None = None) -> Tensor:
    """``cfg.batch`` new points ``[q x d]`` in the unit cube by greedy sequential qLogEI.

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
