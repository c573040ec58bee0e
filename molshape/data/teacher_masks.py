"""Semantic teacher masks: computed once per molecule before training and carried in the batch.

Under semantic constraints the training loss normalises each step's softmax over the rules
that the constraints allow after the true rules before it
(:meth:`molshape.grammar.semantics.SmilesSemantics.teacher_masks`). Those masks depend on the
molecule alone, so they are computed once per row, in chunks (the step loop's fixed cost is
paid per chunk, not per training batch), and kept bit-packed: one int64 per step, bit ``r``
set when rule ``r`` is allowed. Grammars with semantic constraints have at most 64 rules
(``smiles_kekule`` has 40), so 50,000 molecules x 277 steps take 111 MB, against 554 MB as
bools. The model unpacks a batch's masks on its own device.

Example:
    >>> masks = TeacherMasks.build(grammar, data.rules, rows=data.split["train"])  # doctest: +SKIP
    >>> bits = masks[idx]          # [b x T] int64, what a batch carries     # doctest: +SKIP
    >>> unpack_masks(bits, grammar.n_productions).shape                     # doctest: +SKIP
    torch.Size([b, 277, 40])
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from multiprocessing import get_context

import torch
from torch import Tensor

from molshape.core.runtime import init_pool_worker
from molshape.grammar.cfg import Grammar
from molshape.grammar.semantics import semantics_for

#: rules one int64 mask word holds
MAX_RULES = 64
#: rows per step loop: large enough that the per-step overhead is spread, small enough that
#: a chunk's ``rows x T x R`` bool masks stay near 20 MB
CHUNK_ROWS = 2000


def pack_masks(masks: Tensor) -> Tensor:
    """``[... x R]`` bool -> ``[...]`` int64 with bit ``r`` set where rule ``r`` is allowed (``R <= 64``)."""
    n_rules = masks.shape[-1]
    if n_rules > MAX_RULES:
        raise ValueError(f"pack_masks: {n_rules} rules do not fit a {MAX_RULES}-bit mask word")
    weights = torch.ones(n_rules, dtype=torch.long, device=masks.device) << torch.arange(n_rules, device=masks.device)
    # distinct bits: their sum is their bitwise or (bit 63 wraps to the sign bit, as intended)
    return (masks.long() * weights).sum(-1)


def unpack_masks(bits: Tensor, n_rules: int) -> Tensor:
    """``[...]`` int64 mask words -> ``[... x n_rules]`` bool (the inverse of :func:`pack_masks`)."""
    shifts = torch.arange(n_rules, device=bits.device)
    return ((bits.unsqueeze(-1) >> shifts) & 1).bool()


def teacher_mask_bits(grammar: Grammar, rules: Tensor, chunk: int = CHUNK_ROWS,
                      workers: int | None = None) -> Tensor | None:
    """Bit-packed teacher masks ``[N x T]`` int64 of ``rules [N x T]``; None when ``grammar``
    has no semantic constraints (the grammar masks alone then apply).

    The replay costs about 1 ms per molecule on one core, so inputs of several chunks are
    computed in ``workers`` processes (None: all cores; 1: in this process).
    """
    if semantics_for(grammar) is None:
        return None
    parts = [(grammar, rules[i:i + chunk]) for i in range(0, rules.shape[0], chunk)]
    workers = (os.cpu_count() or 1) if workers is None else max(1, workers)
    if workers == 1 or len(parts) < 2:
        bits = [_bits_of(p) for p in parts]
    else:
        # forked workers: spawn would re-run the caller's script, which breaks scripts read from stdin
        with get_context().Pool(min(workers, len(parts)), initializer=init_pool_worker) as pool:
            bits = pool.map(_bits_of, parts)
    return torch.cat(bits) if bits else torch.empty(rules.shape, dtype=torch.long)


def _bits_of(part: tuple[Grammar, Tensor]) -> Tensor:
    grammar, rules = part
    return pack_masks(semantics_for(grammar).teacher_masks(rules.long())).cpu()


def first_violations(rules: Tensor, bits: Tensor) -> list[tuple[int, int]]:
    """Rows of ``rules [N x T]`` whose own rule is outside their teacher mask ``bits [N x T]``
    somewhere: ``(row, first such step)``."""
    ok = ((bits >> rules.long()) & 1).bool()
    return [(int(row), int((~ok[row]).nonzero()[0])) for row in (~ok.all(1)).nonzero().flatten()]


@dataclass
class TeacherMasks:
    """Bit-packed teacher masks of some rows of a data set, looked up by row index.

    Attributes:
        bits: ``M x T`` int64 mask words of the rows computed.
        slot: ``N`` long: each data-set row's index into ``bits`` (-1: not computed).
    """

    bits: Tensor
    slot: Tensor

    @classmethod
    def build(cls, grammar: Grammar, rules: Tensor, rows: Tensor | None = None,
              workers: int | None = None) -> TeacherMasks | None:
        """The masks of ``rows`` (default: all) of ``rules [N x T]``, each row computed once,
        in ``workers`` processes (:func:`teacher_mask_bits`).

        Returns None when ``grammar`` has no semantic constraints.
        """
        if semantics_for(grammar) is None:
            return None
        rows = torch.arange(len(rules)) if rows is None else torch.unique(rows)  # sorted, each once
        bits = teacher_mask_bits(grammar, rules[rows], workers=workers)
        slot = torch.full((len(rules),), -1, dtype=torch.long)
        slot[rows] = torch.arange(len(rows))
        return cls(bits, slot)

    def __getitem__(self, rows: Tensor) -> Tensor:
        """``[b x T]`` mask words of data-set ``rows [b]``."""
        where = self.slot[rows]
        if bool((where < 0).any()):
            raise KeyError(f"teacher masks were not computed for rows {rows[where < 0][:5].tolist()}")
        return self.bits[where]
