"""Pareto fronts and hypervolumes of multi-objective searches (all objectives maximised).

Example:
    >>> mask = pareto_mask(Y)                      # Y [n x m], True on the non-dominated rows  # doctest: +SKIP
    >>> hypervolume(Y[mask], ref_point)             # dominated volume above ref_point  # doctest: +SKIP
    >>> hypervolume_curve(Y, feasible, ref, steps)  # after each of the first steps[i] calls  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from molshape.core.atomic import save_figure


def pareto_mask(Y: np.ndarray) -> np.ndarray:
    """Boolean ``[n]``: rows of ``Y [n x m]`` no other row dominates (``nan`` rows never)."""
    Y = np.asarray(Y, dtype=np.float64)
    ok = np.isfinite(Y).all(1)
    mask = np.zeros(len(Y), dtype=bool)
    for i in np.flatnonzero(ok):
        others = Y[ok]
        dominated = ((others >= Y[i]).all(1) & (others > Y[i]).any(1)).any()
        mask[i] = not dominated
    return mask


def hypervolume(Y: np.ndarray, ref_point: Sequence[float]) -> float:
    """Volume dominated by the finite rows of ``Y`` above ``ref_point`` (0 when none is above it)."""
    from botorch.utils.multi_objective.box_decompositions.dominated import DominatedPartitioning

    Y = np.asarray(Y, dtype=np.float64)
    ref = np.asarray(ref_point, dtype=np.float64)
    Y = Y[np.isfinite(Y).all(1) & (Y > ref).all(1)]
    if len(Y) == 0:
        return 0.0
    part = DominatedPartitioning(ref_point=torch.tensor(ref), Y=torch.tensor(Y))
    return float(part.compute_hypervolume())


def hypervolume_curve(Y: np.ndarray, feasible: np.ndarray, ref_point: Sequence[float],
                      steps: Sequence[int]) -> list[float]:
    """Hypervolume of the feasible rows among the first ``s`` rows, for each ``s`` in ``steps``."""
    Y = np.where(np.asarray(feasible, dtype=bool)[:, None], Y, np.nan)
    return [hypervolume(Y[:s], ref_point) for s in steps]


def plot_front(Y: np.ndarray, front: np.ndarray, prior: np.ndarray | None, names: Sequence[str],
               path: Path, title: str = "") -> Path:
    """Scatter of the first two objectives: prior samples in grey, proposals, the front joined."""
    from matplotlib.figure import Figure  # matplotlib is slow to import: only for figures

    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    if prior is not None and len(prior):
        ax.scatter(prior[:, 0], prior[:, 1], s=8, c="0.75", label="prior samples", zorder=1)
    ax.scatter(Y[:, 0], Y[:, 1], s=12, c="tab:blue", alpha=0.6, label="proposals", zorder=2)
    f = Y[front]
    f = f[np.argsort(f[:, 0])]
    ax.plot(f[:, 0], f[:, 1], "o-", c="tab:red", ms=5, label="Pareto front", zorder=3)
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def plot_hypervolume(calls: Sequence[int], bo: Sequence[float], random: Sequence[float], path: Path,
                     title: str = "", random_label: str = "random prior samples") -> Path:
    """Hypervolume against oracle calls: BO beside random prior sampling (``random_label``)."""
    from matplotlib.figure import Figure  # matplotlib is slow to import: only for figures

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(calls, bo, "o-", label="BO")
    ax.plot(calls, random, "s--", c="0.4", label=random_label)
    ax.set_xlabel("oracle calls")
    ax.set_ylabel("hypervolume (feasible proposals)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)
