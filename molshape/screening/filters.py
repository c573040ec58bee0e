"""``--keep`` filters: ``COLUMN OP NUMBER`` (``qed>=0.6``, ``sa<=3``), parsed strictly, never evaluated.

Example:
    >>> f = parse_keep("qed >= 0.6")
    >>> f.column, f.op, f.value
    ('qed', '>=', 0.6)
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

#: comparison -> function (longest first, so ``>=`` is not read as ``>``)
OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt,
       "<": operator.lt}
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_PATTERN = re.compile(rf"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*({_NUMBER})\s*$")


class FilterError(ValueError):
    """A ``--keep`` expression that is not ``COLUMN OP NUMBER``, or names an unknown column."""


class Keep(NamedTuple):
    """One filter: rows with ``column OP value`` are kept (a ``nan`` score never passes)."""

    column: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.column}{self.op}{self.value:g}"

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        """``[N]`` bool: which rows of ``frame`` pass."""
        values = frame[self.column].to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            return OPS[self.op](values, self.value) & ~np.isnan(values)


def parse_keep(text: str, columns: Sequence[str] | None = None) -> Keep:
    """Parse one ``--keep`` expression.

    Args:
        columns: the known columns; when given, another name is refused.

    Raises:
        FilterError: not ``COLUMN OP NUMBER`` with OP one of ``>= <= > < == !=``, or an unknown column.
    """
    m = _PATTERN.match(text)
    if m is None:
        raise FilterError(f"--keep {text!r} is not COLUMN OP NUMBER (OP one of {', '.join(OPS)}), e.g. qed>=0.6")
    column, op, number = m.groups()
    if columns is not None and column not in columns:
        raise FilterError(f"--keep {text!r} names the unknown column {column!r}; known: {', '.join(columns)}")
    return Keep(column, op, float(number))


def apply(frame: pd.DataFrame, keeps: Sequence[Keep]) -> pd.DataFrame:
    """The rows of ``frame`` that pass every filter, in order."""
    if not keeps:
        return frame
    mask = np.ones(len(frame), dtype=bool)
    for k in keeps:
        mask &= k.mask(frame)
    return frame[mask]
