"""Morgan-fingerprint Tanimoto similarity between molecules, pair by pair.

The fingerprint is the usual one for "how close is this decode to that molecule": Morgan
(ECFP4-like) of radius 2 folded to 2,048 bits. A molecule that RDKit cannot read has no
fingerprint and scores 0 against anything.

Example:
    >>> tanimoto_pairs(["CCO", "c1ccccc1"], ["CCO", None]).tolist()
    [1.0, 0.0]
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
from rdkit import DataStructs
from rdkit.Chem import rdFingerprintGenerator

from molshape.scoring.chem import to_mol

RADIUS = 2
BITS = 2048


@lru_cache(maxsize=1)
def _generator():
    return rdFingerprintGenerator.GetMorganGenerator(radius=RADIUS, fpSize=BITS)


def fingerprints(smiles: Sequence[str | None]) -> list[object | None]:
    """Morgan fingerprints (radius 2, 2,048 bits) of ``smiles``; None where RDKit cannot read one.

    Each distinct string is fingerprinted once.
    """
    seen: dict[str, object | None] = {}
    out: list[object | None] = []
    for s in smiles:
        if s is None:
            out.append(None)
            continue
        if s not in seen:
            mol, _ = to_mol(s)
            seen[s] = None if mol is None else _generator().GetFingerprint(mol)
        out.append(seen[s])
    return out


def tanimoto_pairs(a: Sequence[str | None] | list[object | None], b: Sequence[str | None]) -> np.ndarray:
    """Tanimoto similarity of ``a[i]`` and ``b[i]`` for each ``i`` (0 where either is not a molecule).

    Args:
        a: SMILES, or their :func:`fingerprints` (to reuse them against several ``b``).
        b: SMILES of the same length.

    Returns:
        ``[N]`` float64 in [0, 1].
    """
    if len(a) != len(b):
        raise ValueError(f"tanimoto_pairs: {len(a)} and {len(b)} molecules")
    fa = a if not any(isinstance(x, str) for x in a) else fingerprints(a)
    fb = fingerprints(b)
    return np.array([DataStructs.TanimotoSimilarity(x, y) if x is not None and y is not None else 0.0
                     for x, y in zip(fa, fb)], dtype=np.float64)
