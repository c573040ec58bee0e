"""Property constraints (``qed>=0.5``) parsed strictly, and the outcome table a constrained
search models: objectives first, then one column per constraint as a slack that is
feasible when ``<= 0`` (BoTorch's convention for outcome constraints).

Example:
    >>> c = parse_constraint("sa<=4")      # Constraint(name='sa', op='<=', bound=4.0)  # doctest: +SKIP
    >>> c.slack(np.array([3.0, 5.0]))      # array([-1.,  1.])  # doctest: +SKIP
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_PATTERN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*")


@dataclass(frozen=True)
class Constraint:
    """``name op bound``: the outcome ``name`` must be ``>=`` or ``<=`` ``bound``."""

    name: str
    op: str
    bound: float

    def slack(self, values: np.ndarray) -> np.ndarray:
        """``<= 0`` where satisfied (``nan`` stays ``nan``)."""
        values = np.asarray(values, dtype=np.float64)
        return self.bound - values if self.op == ">=" else values - self.bound

    def satisfied(self, values: np.ndarray) -> np.ndarray:
        """Boolean ``[N]``; ``nan`` (invalid) is never satisfied."""
        s = self.slack(values)
        return np.isfinite(s) & (s <= 0)

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.bound:g}"


def parse_constraint(text: str, known: tuple[str, ...] | None = None) -> Constraint:
    """``"qed>=0.5"`` -> :class:`Constraint` (no ``eval``: one name, ``>=`` or ``<=``, one number).

    Args:
        known: the names allowed (the scoring targets); ``None`` allows any identifier.

    Raises:
        ValueError: malformed, or a name that is not known.
    """
    m = _PATTERN.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"constraint {text!r} is not of the form NAME>=NUMBER or NAME<=NUMBER (e.g. 'qed>=0.5')")
    name, op, bound = m.group(1), m.group(2), float(m.group(3))
    if known is not None and name not in known:
        raise ValueError(f"constraint {text!r}: unknown property {name!r}; choose from {', '.join(known)}")
    return Constraint(name, op, bound)
