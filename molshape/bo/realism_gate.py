"""The realism gate of latent BO: decoded molecules that a chemist would not draw are
rejected before the oracle scores them.

A proposal is rejected when it raises a realism flag
(:func:`~molshape.scoring.similarity.realism_flags`: a ring of more than 8 atoms, a triple
bond in a ring, a 3-membered aromatic ring). Checking the flags costs one RDKit parse; the
oracle is the budget, so a rejected proposal is never scored. It is recorded with no score,
as an invalid decode is, and so enters the surrogate with the worst objective so far: the
search learns that the region writes unrealistic chemistry.

Example:
    >>> rejections(["CCO", "C1CCCCCCCCC1", None])
    [None, 'ring_over_8', None]
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def rejections(strings: Sequence[str | None]) -> list[str | None]:
    """Per string, the realism flags it raises joined by ``+`` (``None``: passes the gate,
    or not a molecule, which the decoder already reports as invalid)."""
    from molshape.scoring.similarity import realism_flags  # RDKit is heavy: loaded only for molecules

    out: list[str | None] = []
    for s in strings:
        flags = realism_flags(s) if s is not None else None
        raised = [k for k, v in (flags or {}).items() if v]
        out.append("+".join(raised) if raised else None)
    return out


def gated_scores(score: Callable[[list], np.ndarray], strings: Sequence[str | None],
                 gate: bool) -> tuple[np.ndarray, list[str | None]]:
    """``(scores [N], rejected [N])``: ``score`` (the oracle) called once on the strings that
    pass the gate; a rejected one scores ``nan``. With ``gate=False`` every string is scored
    as it is, in one call, and nothing is rejected."""
    strings = list(strings)
    if not gate:
        return score(strings), [None] * len(strings)
    rejected = rejections(strings)
    keep = [i for i, why in enumerate(rejected) if why is None]
    scores = np.full(len(strings), np.nan, dtype=np.float64)
    if keep:
        scores[keep] = score([strings[i] for i in keep])
    return scores, rejected
