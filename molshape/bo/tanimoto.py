"""A MinMax (count Tanimoto) kernel over a fixed set of molecules, for GPs on a candidate pool.

The similarity of two molecules with Morgan count fingerprints ``a`` and ``b`` is
``sum(min(a, b)) / sum(max(a, b))``: Tanimoto similarity generalised to counts (equal to it
on bit vectors), a positive-definite kernel with no hyperparameter. It is what a chemist
means by "similar molecules", so a GP with it learns properties such as logP or QED from a
few dozen molecules, where a GP over the autoencoder's latents cannot (decodes of nearby
latents are not similar molecules).

A search over a pool only ever asks for similarities between pool members, so the kernel
takes pool *indices* as inputs (one float column) and looks them up in the pool's Gram
matrix, computed once: a BoTorch acquisition evaluates thousands of candidates jointly with
the training points, and recomputing 2,048-wide fingerprint products for each would cost
seconds per candidate batch.

Example:
    >>> gram = minmax_gram(torch.tensor([[1.0, 0.0, 2.0], [1.0, 1.0, 0.0]]))
    >>> [round(v, 4) for v in gram[0].tolist()]
    [1.0, 0.25]
    >>> k = PoolTanimotoKernel(gram)
    >>> k(torch.tensor([[0.0], [1.0]]), torch.tensor([[1.0]])).to_dense().tolist()
    [[0.25], [1.0]]
"""

from __future__ import annotations

import torch
from gpytorch.kernels import Kernel
from torch import Tensor


def minmax_gram(counts: Tensor) -> Tensor:
    """``[N x N]`` float32 MinMax similarities of the rows of ``counts`` (non-negative, ``[N x D]``).

    ``sum(min(a, b))`` is a sum over thresholds ``t`` of the dot products of the indicators
    ``a >= t`` and ``b >= t``, so the whole matrix is a few matrix products (one per count
    level, on the columns that reach it) instead of an ``N x N x D`` minimum.
    """
    c = counts.float()
    if (c < 0).any():
        raise ValueError("minmax_gram: counts must be non-negative")
    total = c.sum(1)
    common = torch.zeros(len(c), len(c))
    for t in range(1, int(c.max().item()) + 1 if len(c) else 1):
        hit = c >= t
        cols = hit.any(0)
        m = hit[:, cols].float()
        common += m @ m.T
    union = total[:, None] + total[None, :] - common
    gram = torch.where(union > 0, common / union.clamp_min(1e-12), torch.ones_like(union))
    return gram


class PoolTanimotoKernel(Kernel):
    """``k(i, j) = gram[i, j]`` for pool indices ``i``, ``j`` (inputs ``[..., n, 1]``, whole numbers).

    The Gram matrix is held as a plain attribute (not a buffer): it is data of the pool, not a
    parameter, and must not be copied into state dicts.
    """

    has_lengthscale = False

    def __init__(self, gram: Tensor, **kwargs) -> None:
        super().__init__(**kwargs)
        if gram.dim() != 2 or gram.shape[0] != gram.shape[1]:
            raise ValueError(f"PoolTanimotoKernel: gram must be N x N, got {tuple(gram.shape)}")
        self.gram = gram

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, **params) -> Tensor:
        i, j = x1[..., 0].round().long(), x2[..., 0].round().long()
        if diag:
            return self.gram[i, j].to(x1.dtype)
        return self.gram[i.unsqueeze(-1), j.unsqueeze(-2)].to(x1.dtype)
