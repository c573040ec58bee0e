"""Similarity to a lead and the realism flags of proposed molecules (RDKit).

Similarity is the Tanimoto coefficient of Morgan fingerprints (radius 2, 2,048 bits), as
in the lead-optimisation benchmark (JT-VAE, graph2graph). The realism flags name
chemistry a decoder can write but a chemist would not draw: a ring of more than 8 atoms,
a triple bond inside a ring, a 3-membered aromatic ring.

Example:
    >>> tanimoto(["CCO", "CCN", None], "CCO")   # array([1.0, 0.33, nan])
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from rdkit import DataStructs
from rdkit.Chem import rdFingerprintGenerator

from molshape.scoring.chem import to_mol

RADIUS, BITS = 2, 2048
#: realism flags, in the order :func:`realism_flags` returns them
FLAGS = ("ring_over_8", "triple_bond_in_ring", "aromatic_3_ring")
_GENERATOR = None


def fingerprint(smiles: str | None):
    """Morgan fingerprint (radius 2, 2,048 bits) of ``smiles``, ``None`` when invalid."""
    global _GENERATOR
    mol, _ = to_mol(smiles)
    if mol is None:
        return None
    if _GENERATOR is None:
        _GENERATOR = rdFingerprintGenerator.GetMorganGenerator(radius=RADIUS, fpSize=BITS)
    return _GENERATOR.GetFingerprint(mol)


def tanimoto(smiles: Sequence[str | None], reference: str) -> np.ndarray:
    """Tanimoto similarity ``[N]`` of each SMILES to ``reference`` (``nan`` where invalid)."""
    ref = fingerprint(reference)
    if ref is None:
        raise ValueError(f"reference {reference!r} is not a valid molecule")
    out = np.full(len(smiles), math.nan)
    for i, s in enumerate(smiles):
        fp = fingerprint(s)
        if fp is not None:
            out[i] = DataStructs.TanimotoSimilarity(fp, ref)
    return out


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
