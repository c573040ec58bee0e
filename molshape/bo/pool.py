"""Search a pool of decoded prior samples with a Tanimoto GP: the multi-objective search a
chemist would run with a generative model.

Decoding is free; scoring a molecule is the oracle call. So the model first writes a pool
(``pool_size`` prior samples decoded, kept once per canonical SMILES, without the molecules
that raise a realism flag), and the search spends its ``budget`` oracle calls on pool
members: an initial design of ``n_init`` random members, then batches chosen by the
acquisition of :func:`molshape.bo.constrained.acquisition` (qNEHVI, qNParEGO or qLogNEI, with
the constraints as modelled outcomes), greedily over the members not yet scored
(``optimize_acqf_discrete``). The surrogate is one exact GP per outcome with the MinMax
kernel over Morgan count fingerprints (:mod:`molshape.bo.tanimoto`): similar molecules have
similar properties, which the latent space does not give (decodes of nearby latents are not
similar molecules).

Random prior sampling at the same budget, the baseline, draws from the same pool in the same
seeded order: its first ``n_init`` molecules are the search's initial design, the rest are
random pool members, so both see the same candidates.

Example:
    >>> pool = decode_pool(model, grammar, 5000, seed=0)                     # doctest: +SKIP
    >>> result = run_pool_search(make_scorer(spec, None), pool, 2, SearchConfig(budget=60))  # doctest: +SKIP
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from molshape.bo.constrained import SearchConfig, acquisition, filled_outcomes, fit_outcomes, reference_point
from molshape.bo.leads import Score, SearchSpec, make_scorer
from molshape.bo.surrogate import linear_algebra
from molshape.bo.tanimoto import PoolTanimotoKernel, minmax_gram
from molshape.core.runtime import BO_STRIDE, seeded_globally
from molshape.gvae.generation import decode_latents, prior_latents


@dataclass
class CandidatePool:
    """Distinct molecules (canonical SMILES) and their ``[N x N]`` MinMax Gram matrix; ``stats``
    counts what was drawn and dropped."""

    smiles: list[str]
    gram: Tensor
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.smiles)


def pool_from_smiles(smiles: list[str | None], stats: dict | None = None) -> CandidatePool:
    """The pool of ``smiles``: invalid ones, repeats (by canonical SMILES) and molecules with a
    realism flag (ring of more than 8 atoms, triple bond in a ring, 3-membered aromatic ring) dropped."""
    # RDKit is heavy: loaded only when molecules are involved
    from molshape.scoring.chem import canonicalise
    from molshape.scoring.similarity import count_fingerprints, realism_flags

    start = time.perf_counter()
    canonical = [canonicalise(s) for s in smiles]
    unique = list(dict.fromkeys(c for c in canonical if c is not None))
    kept = [s for s in unique if not any(realism_flags(s).values())]
    gram = minmax_gram(torch.from_numpy(count_fingerprints(kept)))
    counts = {"drawn": len(smiles), "invalid": sum(c is None for c in canonical),
              "duplicates": sum(c is not None for c in canonical) - len(unique),
              "unrealistic": len(unique) - len(kept), "size": len(kept),
              "build_s": time.perf_counter() - start}
    return CandidatePool(kept, gram, {**(stats or {}), **counts})


def decode_pool(model, grammar, size: int, seed: int, constraints: str = "auto",
                progress: bool = False) -> CandidatePool:
    """:func:`pool_from_smiles` of ``size`` prior samples (seeded by ``seed``), argmax-decoded."""
    start = time.perf_counter()
    z = prior_latents(model, size, torch.Generator().manual_seed(seed))
    smiles = list(decode_latents(model, grammar, z, mode="argmax", constraints=constraints, progress=progress))
    pool = pool_from_smiles(smiles, {"decode_s": time.perf_counter() - start})
    pool.stats["build_s"] += pool.stats["decode_s"]
    return pool


def pool_order(pool: CandidatePool, seed: int) -> np.ndarray:
    """The seeded random order of the pool: its first ``n_init`` members are the initial design,
    its first ``budget`` the random-sampling baseline."""
    return np.random.default_rng(seed).permutation(len(pool))


def run_pool_search(score: Score, pool: CandidatePool, n_objectives: int, cfg: SearchConfig,
                    progress: Callable[[int], None] | None = None) -> dict:
    """Spend ``min(cfg.budget, len(pool))`` oracle calls on pool members; returns ``records`` (one
    per call, with ``iteration`` and ``pool_index``), ``Y`` (``n x (m + k)``: objectives to
    maximise, then slacks) and ``ref_point``, as :func:`molshape.bo.constrained.run_search` does.

    Batch ``it`` draws its random numbers from ``cfg.seed * BO_STRIDE + it`` alone.
    """
    if len(pool) == 0:
        raise ValueError("the candidate pool is empty: no decoded prior sample was a usable molecule")
    budget = min(cfg.budget, len(pool))
    chosen = [int(i) for i in pool_order(pool, cfg.seed)[: min(cfg.n_init, budget)]]
    records, Y = _call(score, pool, chosen, 0)
    if progress:
        progress(len(records))
    ref = reference_point(Y[:, :n_objectives])
    it = 1
    while len(chosen) < budget:
        q = min(cfg.batch, budget - len(chosen))
        with seeded_globally(cfg.seed * BO_STRIDE + it):  # BoTorch draws sampler seeds globally
            picked = propose_from_pool(pool, chosen, filled_outcomes(Y, n_objectives), n_objectives, q, cfg, ref)
        new, y = _call(score, pool, picked, it)
        records += new
        chosen += picked
        Y = np.concatenate([Y, y])
        if progress:
            progress(len(new))
        it += 1
    return {"records": records, "Y": Y, "ref_point": ref.tolist()}


def _call(score: Score, pool: CandidatePool, indices: list[int], iteration: int) -> tuple[list[dict], np.ndarray]:
    records, y = score([pool.smiles[i] for i in indices])
    y = np.asarray(y, dtype=np.float64).reshape(len(records), -1)
    for j, (r, i) in enumerate(zip(records, indices)):
        r.update(iteration=iteration, index=j, pool_index=int(i))
    return records, y


def fit_pool_gp(pool: CandidatePool, chosen: list[int], Y: Tensor):
    """One exact GP per column of ``Y`` (``[len(chosen) x m]``, float64) at the pool members
    ``chosen``, with a scaled :class:`~molshape.bo.tanimoto.PoolTanimotoKernel`; its inputs are
    pool indices (``[n x 1]`` float64)."""
    from gpytorch.kernels import ScaleKernel

    X = torch.tensor(chosen, dtype=torch.float64)[:, None]
    return fit_outcomes(X, Y, kernel=lambda batch: ScaleKernel(PoolTanimotoKernel(pool.gram, batch_shape=batch),
                                                               batch_shape=batch))


def propose_from_pool(pool: CandidatePool, chosen: list[int], Y: Tensor, n_objectives: int, q: int,
                      cfg: SearchConfig, ref_point: np.ndarray) -> list[int]:
    """``q`` pool indices not in ``chosen``, picked greedily (each conditioned on the ones before)
    by the acquisition of a Tanimoto GP fitted to ``Y`` (``[len(chosen) x (m + k)]``) at ``chosen``."""
    from botorch.optim import optimize_acqf_discrete

    X = torch.tensor(chosen, dtype=torch.float64)[:, None]
    model = fit_pool_gp(pool, chosen, Y)
    rest = np.setdiff1d(np.arange(len(pool)), np.array(chosen))
    with linear_algebra(), warnings.catch_warnings():
        # inputs are pool indices, not unit-cube points, and no point may be feasible yet (the
        # constrained acquisition then seeks feasibility first): BoTorch's warnings are noise here
        warnings.simplefilter("ignore")
        acq = acquisition(model, X, n_objectives, Y.shape[1] - n_objectives, cfg, ref_point)
        cand, _ = optimize_acqf_discrete(acq, q=min(q, len(rest)), choices=torch.tensor(rest, dtype=torch.float64)[:, None],
                                         max_batch_size=1024)
    return [int(round(v)) for v in cand[:, 0].tolist()]


def optimise_pool(model, grammar, spec: SearchSpec, progress: bool = False) -> dict:
    """A pool search from the prior (no lead), plus random sampling of the same pool at the same budget."""
    cfg = spec.cfg
    pool = decode_pool(model, grammar, cfg.pool_size, cfg.seed, spec.decode_constraints, progress)
    score = make_scorer(spec, None)
    result = run_pool_search(score, pool, len(spec.objectives), cfg)
    order = pool_order(pool, cfg.seed)[: len(result["records"])]
    base, base_y = _call(score, pool, [int(i) for i in order], 0)
    for k, r in enumerate(base):
        r.update(call=k + 1)
    for k, r in enumerate(result["records"]):
        r.update(call=k + 1)
    return {**result, "random": base, "random_Y": base_y, "pool": pool.stats,
            "baseline": f"random molecules of the same pool of {len(pool)} (the first {min(cfg.n_init, len(order))} "
                        "are the search's initial design)"}
