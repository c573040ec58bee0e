"""Image metrics: Frechet distance between feature sets and clustering accuracy.

- Frechet distance (the formula behind FID) between Gaussians fitted to two feature
  sets:  |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)).
- Clustering accuracy: the best one-to-one matching of clusters to labels (Hungarian
  algorithm on the contingency table), then the share of items whose matched cluster
  is their label. With more clusters than labels the extra clusters count as errors.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import linalg
from scipy.optimize import linear_sum_assignment


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def feature_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[F]`` and covariance ``[F x F]`` (float64, unbiased) of ``features [N x F]``."""
    f = _as_numpy(features).astype(np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be [N x F] with N >= 2, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _sqrtm(m: np.ndarray) -> np.ndarray:
    # A singular product only warns; the finiteness check of the caller handles it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        return np.asarray(linalg.sqrtm(m))


def frechet_distance_from_stats(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray,
                                eps: float = 1e-6) -> float:
    """Frechet distance between N(mu_a, cov_a) and N(mu_b, cov_b)."""
    diff = mu_a - mu_b
    covmean = _sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():
        # Singular product (few samples, dead features): regularise both sides slightly.
        offset = np.eye(cov_a.shape[0]) * eps
        covmean = _sqrtm((cov_a + offset) @ (cov_b + offset))
    covmean = np.real(covmean)  # sqrtm returns tiny imaginary parts from rounding
    return float(max(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean), 0.0))


def frechet_distance(features_a: np.ndarray | torch.Tensor, features_b: np.ndarray | torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to ``features_a [N x F]`` and ``features_b [M x F]``.

    Example:
        >>> a = np.random.default_rng(0).normal(size=(500, 8))
        >>> round(frechet_distance(a, a), 6)
        0.0
    """
    return frechet_distance_from_stats(*feature_statistics(features_a), *feature_statistics(features_b))


def clustering_accuracy(labels: np.ndarray | torch.Tensor, clusters: np.ndarray | torch.Tensor
                        ) -> tuple[float, dict[int, int]]:
    """Accuracy of ``clusters [N]`` against ``labels [N]`` under the best one-to-one matching.

    Returns:
        ``(accuracy in [0, 1], {cluster: label})`` for the matched clusters.
    """
    y, c = _as_numpy(labels).astype(np.int64).ravel(), _as_numpy(clusters).astype(np.int64).ravel()
    if y.shape != c.shape or y.size == 0:
        raise ValueError(f"labels and clusters must be non-empty and equally long, got {y.shape} and {c.shape}")
    if y.min() < 0 or c.min() < 0:
        raise ValueError("labels and clusters must be non-negative integers")
    table = np.zeros((c.max() + 1, y.max() + 1), dtype=np.int64)
    np.add.at(table, (c, y), 1)  # table[k, l] = items of cluster k with label l
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / y.size), {int(r): int(l) for r, l in zip(rows, cols)}
