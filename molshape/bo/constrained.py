"""Constrained and multi-objective latent BO inside a region where the prior has mass.

One search: an initial design (given latents, e.g. a lead's own, then a scrambled Sobol
fill of the region), then batches proposed by an acquisition over one exact GP per
outcome until ``budget`` oracle calls are spent. Outcomes are the objectives (to
maximise) followed by constraint slacks (feasible when ``<= 0``), so the surrogate models each constraint and the acquisition weighs proposals by their
probability of feasibility (BoTorch's outcome constraints), rather than filtering after
the fact:

* one objective: ``qLogNoisyExpectedImprovement`` with the constraints;
* several: ``qLogNoisyExpectedHypervolumeImprovement`` (``qnehvi``) or the cheaper
  ``qLogNParEGO`` (``qnparego``), with the constraints.

The region (:class:`Region`) is a box (a trust region around a lead, intersected with the
prior's central box) whose proposals are pulled back into the ball that holds
``prior_quantile`` of the mass of the nearest prior component, so the decoder is asked
only about latents like those it was trained on.

Example:
    >>> region = Region.around(prior_centers, 1.0, center=z_lead, radius=1.0, quantile=0.99)  # doctest: +SKIP
    >>> result = run_search(evaluate, region, n_objectives=1, cfg=SearchConfig(budget=30), start=z_lead[None])  # doctest: +SKIP
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from molshape.bo.surrogate import linear_algebra
from molshape.core.runtime import BO_STRIDE, seeded_globally
from molshape.latent.prior import pull_into_balls

#: multi-objective acquisitions
MO_METHODS = ("qnehvi", "qnparego")
#: where a search from the prior proposes: ``pool`` (decoded prior samples, a Tanimoto GP;
#: :mod:`molshape.bo.pool`), ``latent`` (the latent box), ``auto`` (see :func:`search_space`)
SPACES = ("auto", "pool", "latent")


@dataclass
class SearchConfig:
    """One search's budget and acquisition settings (sized for a CPU: seconds per batch)."""

    budget: int = 60               # oracle calls, initial design included
    n_init: int = 10               # initial design (given latents first, then Sobol in the region)
    batch: int = 10                # proposals per iteration
    radius: float = 1.0            # trust-region half-width around a lead, in prior standard deviations
    prior_quantile: float | None = 0.99  # keep proposals in this mass ball of the nearest component; None: off
    mo_method: str = "qnehvi"
    space: str = "auto"            # see SPACES and search_space()
    pool_size: int = 5000          # prior samples decoded into a candidate pool (space "pool")
    refine_lead: int = 300         # refine a lead's latent for up to this many steps until it decodes back (0: encoder's)
    num_restarts: int = 2
    raw_samples: int = 64
    mc_samples: int = 32
    maxiter: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        if self.budget < 1 or self.n_init < 1 or self.batch < 1:
            raise ValueError("budget, n_init and batch must be >= 1")
        if self.n_init > self.budget:
            self.n_init = self.budget
        if self.radius <= 0:
            raise ValueError(f"radius must be > 0, got {self.radius}")
        if self.prior_quantile is not None and not 0 < self.prior_quantile < 1:
            raise ValueError(f"prior_quantile must be in (0, 1), got {self.prior_quantile}")
        if self.mo_method not in MO_METHODS:
            raise ValueError(f"unknown multi-objective method {self.mo_method!r}; choose from {MO_METHODS}")
        if self.space not in SPACES:
            raise ValueError(f"unknown search space {self.space!r}; choose from {SPACES}")
        if self.refine_lead < 0:
            raise ValueError(f"refine_lead must be >= 0, got {self.refine_lead}")
        if self.pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {self.pool_size}")

    def search_space(self, n_objectives: int, with_leads: bool, molecular: bool = True) -> str:
        """``pool`` or ``latent``: what ``space`` means for a search of ``n_objectives``.

        ``auto`` is the pool for several objectives from the prior of a molecule model (it beats
        random prior sampling in hypervolume where the latent search does not; see
        docs/lead-optimisation.md), the latent box otherwise. A lead's search stays in the
        trust region around its latent.

        Raises:
            ValueError: ``pool`` asked for with leads, or for a model that writes no molecules.
        """
        if self.space == "pool" and with_leads:
            raise ValueError("the candidate pool searches from the prior; a search from leads stays in the "
                             "trust region around each lead's latent (space 'latent')")
        if self.space == "pool" and not molecular:
            raise ValueError("the candidate pool needs a molecule model (it compares Morgan fingerprints)")
        if self.space != "auto":
            return self.space
        return "pool" if n_objectives > 1 and not with_leads and molecular else "latent"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Region:
    """Where a search proposes: the box ``[lo, hi]`` (latent units, float64 ``[d]``) and, when
    ``ball`` is set, the ball of that radius around the nearest of ``centers [K x d]``."""

    lo: Tensor
    hi: Tensor
    centers: Tensor
    ball: float | None = None

    @classmethod
    def around(cls, centers: Tensor, std: float, center: Tensor | None = None, radius: float = 1.0,
               quantile: float | None = 0.99) -> Region:
        """The prior's central box (each coordinate within the two-sided ``quantile`` of every
        component), intersected with ``center +- radius * std`` when a center is given."""
        from scipy.stats import chi2, norm

        c = centers.detach().cpu().double()
        q = quantile if quantile is not None else 0.9999
        a = float(norm.ppf(1 - (1 - q) / 2)) * std
        lo, hi = c.min(0).values - a, c.max(0).values + a
        if center is not None:
            z = center.detach().cpu().double().reshape(-1)
            lo, hi = torch.maximum(lo, z - radius * std), torch.minimum(hi, z + radius * std)
            # a lead outside the prior box keeps a (thin) box around itself
            lo, hi = torch.minimum(lo, z), torch.maximum(hi, z)
            hi = torch.where(hi > lo, hi, lo + 1e-3 * std)
        ball = None if quantile is None else std * math.sqrt(float(chi2.ppf(quantile, c.shape[1])))
        return cls(lo, hi, c, ball)

    def to_unit(self, z: Tensor) -> Tensor:
        return (z.double() - self.lo) / (self.hi - self.lo)

    def from_unit(self, u: Tensor) -> Tensor:
        return self.lo + u.double() * (self.hi - self.lo)

    def project(self, z: Tensor) -> Tensor:
        """``z [n x d]`` pulled radially into the ball of its nearest component (no-op without a ball)."""
        if self.ball is None:
            return z
        return pull_into_balls(z.double(), self.centers, self.ball)


Evaluate = Callable[[Tensor], tuple[list[dict], np.ndarray]]


def run_search(evaluate: Evaluate, region: Region, n_objectives: int, cfg: SearchConfig,
               start: Tensor | None = None, progress: Callable[[int], None] | None = None) -> dict:
    """Spend ``cfg.budget`` oracle calls; returns ``records`` (one per call, with ``iteration``),
    ``Y`` (``n x (m + k)``: objectives to maximise, then slacks; ``nan`` where invalid) and ``ref_point``.

    Args:
        evaluate: latents ``q x d`` (float64) -> (records, outcomes ``q x (m + k)``).
        start: latents evaluated first (a lead's own), inside the initial design.
        progress: called with the number of new oracle calls after each batch.

    Batch ``it`` draws its random numbers from ``cfg.seed * BO_STRIDE + it`` alone; the
    caller's global generators are left as they were.
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    d = region.lo.shape[0]
    parts = [] if start is None else [region.to_unit(start.reshape(-1, d))]
    n_fill = cfg.n_init - sum(p.shape[0] for p in parts)
    if n_fill > 0:
        sobol = torch.quasirandom.SobolEngine(d, scramble=True, seed=int(torch.randint(2**31, (1,), generator=gen)))
        parts.append(sobol.draw(n_fill, dtype=torch.float64))
    U = torch.cat(parts)[: cfg.n_init]
    U = region.to_unit(region.project(region.from_unit(U)))
    records, Y = _call(evaluate, region, U, 0)
    if progress:
        progress(len(records))
    X = U
    ref = reference_point(Y[:, :n_objectives])
    it = 1
    while X.shape[0] < cfg.budget:
        q = min(cfg.batch, cfg.budget - X.shape[0])
        with seeded_globally(cfg.seed * BO_STRIDE + it):  # BoTorch draws restarts and sampler seeds globally
            u = propose_constrained(X, filled_outcomes(Y, n_objectives), n_objectives, q, cfg, ref)
            u = region.to_unit(region.project(region.from_unit(u)))
            new, y = _call(evaluate, region, u, it)
        records += new
        X, Y = torch.cat([X, u]), np.concatenate([Y, y])
        if progress:
            progress(len(new))
        it += 1
    return {"records": records, "Y": Y, "ref_point": ref.tolist()}


def _call(evaluate: Evaluate, region: Region, U: Tensor, iteration: int) -> tuple[list[dict], np.ndarray]:
    records, y = evaluate(region.from_unit(U))
    y = np.asarray(y, dtype=np.float64).reshape(len(records), -1)
    for j, r in enumerate(records):
        r.update(iteration=iteration, index=j)
    return records, y


def reference_point(Y: np.ndarray) -> np.ndarray:
    """Hypervolume reference: a little below the worst valid initial value of each objective."""
    lo, hi = np.nanmin(np.where(np.isfinite(Y), Y, np.inf), 0), np.nanmax(np.where(np.isfinite(Y), Y, -np.inf), 0)
    lo, hi = np.where(np.isfinite(lo), lo, 0.0), np.where(np.isfinite(hi), hi, 1.0)
    return lo - 0.1 * np.maximum(hi - lo, 1e-3)


def filled_outcomes(Y: np.ndarray, n_objectives: int) -> Tensor:
    """Invalid calls enter the GP as the worst objective and a clearly infeasible slack."""
    out = Y.copy()
    for j in range(Y.shape[1]):
        col, ok = Y[:, j], np.isfinite(Y[:, j])
        if j < n_objectives:
            fill = col[ok].min() if ok.any() else 0.0
        else:
            fill = (max(col[ok].max(), 0.0) + 0.1 * (np.ptp(col[ok]) + 1e-3)) if ok.any() else 1.0
        out[~ok, j] = fill
    return torch.tensor(out, dtype=torch.float64)


def fit_outcomes(X: Tensor, Y: Tensor, kernel: Callable[[torch.Size], object] | None = None):
    """One exact GP per column of ``Y`` (a batched ``SingleTaskGP``, standardised outcomes).

    The default kernel is isotropic RBF with BoTorch's dimension-scaled lengthscale prior:
    with at most a hundred points in 56 dimensions, one lengthscale per dimension cannot be
    learned, and the isotropic fit is several times faster.

    Args:
        kernel: builds the covariance module for a batch shape (one GP per outcome) instead.
    """
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.outcome import Standardize
    from gpytorch.kernels import RBFKernel
    from gpytorch.mlls import ExactMarginalLogLikelihood
    from gpytorch.priors import LogNormalPrior

    d, m = X.shape[1], Y.shape[1]
    batch = torch.Size([m]) if m > 1 else torch.Size([])
    if kernel is not None:
        kernel = kernel(batch)
    else:
        kernel = RBFKernel(batch_shape=batch,
                           lengthscale_prior=LogNormalPrior(math.sqrt(2) + 0.5 * math.log(d), math.sqrt(3)))
    with warnings.catch_warnings():
        # inputs pulled into the prior's ball may leave the unit cube a little, and an
        # ill-conditioned fit is retried by BoTorch: both warnings are noise here
        warnings.simplefilter("ignore")
        model = SingleTaskGP(X, Y, covar_module=kernel, outcome_transform=Standardize(m=m))
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    return model.eval()


def acquisition(model, X: Tensor, n_objectives: int, n_constraints: int, cfg: SearchConfig, ref_point: np.ndarray):
    """The acquisition for ``n_objectives`` objectives with ``n_constraints`` modelled constraints."""
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
    from botorch.acquisition.multi_objective.objective import IdentityMCMultiOutputObjective
    from botorch.acquisition.multi_objective.parego import qLogNParEGO
    from botorch.acquisition.objective import GenericMCObjective
    from botorch.sampling import SobolQMCNormalSampler

    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([cfg.mc_samples]))
    constraints = [(lambda Y, j=j: Y[..., n_objectives + j]) for j in range(n_constraints)] or None
    if n_objectives == 1:
        return qLogNoisyExpectedImprovement(model, X_baseline=X, sampler=sampler, constraints=constraints,
                                            objective=GenericMCObjective(lambda Y, X=None: Y[..., 0]),
                                            prune_baseline=True)
    objective = IdentityMCMultiOutputObjective(outcomes=list(range(n_objectives)))
    if cfg.mo_method == "qnparego":
        return qLogNParEGO(model, X_baseline=X, sampler=sampler, objective=objective, constraints=constraints,
                           prune_baseline=True)
    return qLogNoisyExpectedHypervolumeImprovement(model, ref_point=ref_point.tolist(), X_baseline=X, sampler=sampler,
                                                   objective=objective, constraints=constraints, prune_baseline=True)


def propose_constrained(X: Tensor, Y: Tensor, n_objectives: int, q: int, cfg: SearchConfig,
                        ref_point: np.ndarray) -> Tensor:
    """``q`` new points ``[q x d]`` in the unit cube.

    One objective (and qNParEGO): the ``q`` points are optimised jointly, several times cheaper
    than greedy sequential optimisation on a CPU. qNEHVI: greedily one at a time, each
    conditioned on the ones before (BoTorch's recommendation), because its joint value sums over
    all 2^q subsets of the batch.
    """
    from botorch.optim import optimize_acqf

    model = fit_outcomes(X, Y)
    d = X.shape[1]
    with linear_algebra(), warnings.catch_warnings():
        # BoTorch warns when no point is feasible yet (the constrained acquisition then seeks
        # feasibility first, which is what is wanted) and on restarts that stop early
        warnings.simplefilter("ignore")
        acq = acquisition(model, X, n_objectives, Y.shape[1] - n_objectives, cfg, ref_point)
        cand, _ = optimize_acqf(acq, bounds=torch.stack([X.new_zeros(d), X.new_ones(d)]), q=q,
                                num_restarts=cfg.num_restarts, raw_samples=cfg.raw_samples,
                                sequential=n_objectives > 1 and cfg.mo_method == "qnehvi",
                                options={"maxiter": cfg.maxiter, "batch_limit": cfg.num_restarts})
    return cand.detach().clamp(0.0, 1.0)
