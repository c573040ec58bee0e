"""The score columns of a screen: which target computes which column, and computing them.

Molecule targets come from one RDKit pass per molecule (:func:`molshape.scoring.chem.score_table`):
``logp`` (the GVAE target) gives ``penalized_logp`` and its terms ``logp`` (Crippen),
``sa`` and ``cycle``; ``qed`` gives ``qed``. Expression models get ``expr`` (lower is better).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from molshape.scoring.targets import TARGETS, get_target

#: column -> the target that computes it
COLUMNS: dict[str, str] = {"penalized_logp": "logp", "logp": "logp", "sa": "logp", "cycle": "logp",
                           "qed": "qed", "expr": "expr"}
#: target -> the column its score is in (what ``--top`` ranks by)
SCORE_COLUMN: dict[str, str] = {"logp": "penalized_logp", "qed": "qed", "expr": "expr"}


def columns_of(targets: Iterable[str]) -> list[str]:
    """The score columns ``targets`` produce, in table order."""
    wanted = set(targets)
    return [c for c, t in COLUMNS.items() if t in wanted]


def targets_for(targets: Sequence[str], columns: Iterable[str]) -> tuple[str, ...]:
    """``targets`` plus those that compute ``columns`` (in :data:`TARGETS` order, no repeats).

    Raises:
        ValueError: an unknown target or column, naming the known ones.
    """
    for t in targets:
        get_target(t)
    needed = set(targets)
    for c in columns:
        if c not in COLUMNS:
            raise ValueError(f"unknown score column {c!r}; known: {', '.join(COLUMNS)}")
        needed.add(COLUMNS[c])
    return tuple(t for t in TARGETS if t in needed)


def score_columns(targets: Sequence[str], strings: Sequence[str]) -> dict[str, np.ndarray]:
    """Column -> float64 values ``[N]`` for valid decoded ``strings`` (``nan`` where scoring failed)."""
    out: dict[str, np.ndarray] = {}
    molecular = [t for t in targets if get_target(t).molecular]
    if molecular:
        from molshape.scoring.chem import score_table  # RDKit is heavy: loaded only when molecules are involved

        rows = score_table(list(strings), workers=1, with_qed="qed" in molecular)
        fields = {"penalized_logp": "penalized_logp", "logp": "logp", "sa": "sa", "cycle": "cycle", "qed": "qed"}
        for column in columns_of(molecular):
            out[column] = np.array([getattr(r, fields[column]) for r in rows], dtype=np.float64)
    if "expr" in targets:
        from molshape.scoring.expr_score import score_many  # numpy grid evaluation, only for expression runs

        out["expr"] = np.asarray(score_many(list(strings)), dtype=np.float64)
    return out
