"""TuRBO-style trust region for latent-space BO (Eriksson et al., NeurIPS 2019).

A box around the best point so far, stretched per dimension by the GP's ARD
lengthscales; it doubles after ``success_tolerance`` improving batches in a row, halves
after ``failure_tolerance`` non-improving ones and restarts at ``length_init`` when it
shrinks below ``length_min``. All coordinates are in the unit cube.

Example:
    >>> tr = TrustRegion.create(dim=56, batch=50)  # doctest: +SKIP
    >>> lo, hi = tr.bounds(center, lengthscales)   # 2 tensors [d] inside [0, 1]  # doctest: +SKIP
    >>> tr = tr.update(new_best=float(y_batch.max()))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
from torch import Tensor


@dataclass(frozen=True)
class TrustRegion:
    length: float = 0.8
    length_init: float = 0.8
    length_min: float = 0.5 ** 7
    length_max: float = 1.6
    success_tolerance: int = 3
    failure_tolerance: int = 2
    successes: int = 0
    failures: int = 0
    best_value: float = -math.inf
    restarts: int = 0

    @classmethod
    def create(cls, dim: int, batch: int, best_value: float = -math.inf) -> TrustRegion:
        """TuRBO's defaults: ``failure_tolerance = ceil(max(4 / batch, dim / batch))``."""
        return cls(failure_tolerance=math.ceil(max(4.0 / batch, dim / batch)), best_value=best_value)

    def bounds(self, center: Tensor, lengthscales: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Lower and upper corners ``[d]`` of the region around ``center [d]``, clipped to [0, 1].

        Lengthscales ``[d]`` are normalised to geometric mean 1, so the volume is ``length^d``.
        """
        if lengthscales is None:
            weights = torch.ones_like(center)
        else:
            w = lengthscales.to(center)
            w = w / w.mean()
            weights = w / torch.prod(w.pow(1.0 / w.numel()))
        half = weights * self.length / 2
        return (center - half).clamp(0.0, 1.0), (center + half).clamp(0.0, 1.0)

    def update(self, new_best: float) -> TrustRegion:
        """State after a batch whose best objective (higher is better) was ``new_best``."""
        improved = new_best > self.best_value + 1e-3 * abs(self.best_value)
        successes = self.successes + 1 if improved else 0
        failures = 0 if improved else self.failures + 1
        length = self.length
        if successes >= self.success_tolerance:
            length, successes = min(2.0 * length, self.length_max), 0
        elif failures >= self.failure_tolerance:
            length, failures = length / 2.0, 0
        state = replace(self, length=length, successes=successes, failures=failures,
                        best_value=max(self.best_value, new_best))
        if state.length < self.length_min:  # collapsed: start a fresh region (data are kept)
            state = replace(state, length=self.length_init, successes=0, failures=0, restarts=self.restarts + 1)
        return state

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrustRegion:
        return cls(**d)
