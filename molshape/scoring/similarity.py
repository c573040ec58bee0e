"""Morgan-fingerprint Tanimoto similarity, and the realism flags of proposed molecules (RDKit).

The fingerprint is the usual one for "how close is this molecule to that one", as in the
lead-optimisation benchmark (JT-VAE, graph2graph): Morgan (ECFP4-like) of radius 2 folded
to 2,048 bits. A molecule that RDKit cannot read has no fingerprint. The realism flags name
chemistry a decoder can write but a chemist would not draw: a ring of more than 8 atoms, a
triple bond inside a ring, a 3-membered aromatic ring.

Example:
    >>> tanimoto_pairs(["CCO", "c1ccccc1"], ["CCO", None]).tolist()
    [1.0, 0.0]
    >>> tanimoto(["CCO", None], "CCO").tolist()
    [1.0, nan]
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import numpy as np
from rdkit import DataStructs
from rdkit.Chem import rdFingerprintGenerator

from molshape.scoring.chem import to_mol

RADIUS = 2
BITS = 2048
#: realism flags, in the order :func:`realism_flags` returns them
FLAGS = ("ring_over_8", "triple_bond_in_ring", "aromatic_3_ring")


@lru_cache(maxsize=1)
def _generator():
    return rdFingerprintGenerator.GetMorganGenerator(radius=RADIUS, fpSize=BITS)


def fingerprint(smiles: str | None):
    """Morgan fingerprint (radius 2, 2,048 bits) of ``smiles``, ``None`` when invalid."""
    mol, _ = to_mol(smiles)
    return None if mol is None else _generator().GetFingerprint(mol)


def fingerprints(smiles: Sequence[str | None]) -> list[object | None]:
    """:func:`fingerprint` of each of ``smiles``; each distinct string is fingerprinted once."""
    seen: dict[str, object | None] = {}
    out: list[object | None] = []
    for s in smiles:
        if s is None:
            out.append(None)
            continue
        if s not in seen:
            seen[s] = fingerprint(s)
        out.append(seen[s])
    return out


def count_fingerprints(smiles: Sequence[str]) -> np.ndarray:
    """Morgan count fingerprints ``[N x 2048]`` float32 (radius 2, folded as :func:`fingerprint`):
    how often each folded environment occurs, the input of a MinMax (count Tanimoto) kernel.

    Raises:
        ValueError: one of ``smiles`` is not a molecule.
    """
    out = np.zeros((len(smiles), BITS), dtype=np.float32)
    for i, s in enumerate(smiles):
        mol, reason = to_mol(s)
        if mol is None:
            raise ValueError(f"{s!r} is not a molecule ({reason})")
        out[i] = _generator().GetCountFingerprintAsNumPy(mol)
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


def tanimoto(smiles: Sequence[str | None], reference: str) -> np.ndarray:
    """Tanimoto similarity ``[N]`` of each SMILES to ``reference`` (``nan`` where invalid)."""
    ref = fingerprint(reference)
    if ref is None:
        raise ValueError(f"reference {reference!r} is not a valid molecule")
    return np.array([math.nan if fp is None else DataStructs.TanimotoSimilarity(fp, ref)
                     for fp in fingerprints(smiles)], dtype=np.float64)


def realism_flags(smiles: str | None) -> dict[str, bool] | None:
    """Which :data:`FLAGS` a molecule raises; ``None`` when invalid."""
    mol, _ = to_mol(smiles)
    if mol is None:
        return None
    info = mol.GetRingInfo()
    rings = info.AtomRings()
    triple = any(b.GetBondTypeAsDouble() == 3.0 and info.NumBondRings(b.GetIdx()) > 0 for b in mol.GetBonds())
    arom3 = any(len(r) == 3 and all(mol.GetAtomWithIdx(a).GetIsAromatic() for a in r) for r in rings)
    return {"ring_over_8": any(len(r) > 8 for r in rings), "triple_bond_in_ring": triple, "aromatic_3_ring": arom3}


def realism_shares(smiles: Sequence[str | None]) -> dict[str, float]:
    """Share of the valid molecules raising each flag, plus ``n_valid``."""
    flags = [f for f in (realism_flags(s) for s in smiles) if f is not None]
    n = len(flags)
    out: dict[str, float] = {k: (sum(f[k] for f in flags) / n if n else math.nan) for k in FLAGS}
    out["n_valid"] = n
    return out
