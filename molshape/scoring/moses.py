"""MOSES distribution metrics of generated molecules against a reference set.

Definitions follow MOSES (Polykovskiy et al., 2020, ``moses/metrics``), computed on the
valid generated molecules (duplicates kept, as MOSES does):

- **IntDiv_p** = 1 - mean_j (mean_i T(m_i, m_j)^p)^(1/p) over all pairs of generated
  molecules, i = j included; T is the Tanimoto similarity of Morgan fingerprints (radius 2,
  1,024 bits), taken as 1 when both fingerprints are empty. IntDiv1 (p = 1), IntDiv2 (p = 2).
- **SNN** = mean over generated molecules of the largest Tanimoto similarity to a reference molecule.
- **Frag** = cosine similarity of the BRICS-fragment count vectors (every fragment of every
  molecule counted) of the generated and reference sets.
- **Scaf** = cosine similarity of the Bemis-Murcko scaffold count vectors (scaffolds with at
  least 2 rings; others are not counted).

Frag and Scaf are NaN when either side has no fragment / scaffold.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import rdFingerprintGenerator
from rdkit.Chem.Scaffolds import MurckoScaffold

#: MOSES's fingerprint: Morgan, radius 2, 1,024 bits
MORGAN_RADIUS = 2
MORGAN_BITS = 1024
#: scaffolds with fewer rings are not counted (MOSES ``min_rings``)
SCAFFOLD_MIN_RINGS = 2
_BLOCK = 2000  # generated molecules per similarity block: bounds memory at 2,000 x N floats


def _mols(smiles: Iterable[str]) -> list[Chem.Mol]:
    with rdBase.BlockLogs():
        mols = [Chem.MolFromSmiles(s) for s in smiles]
    return [m for m in mols if m is not None]


def fingerprints(smiles: Sequence[str]) -> np.ndarray:
    """``N x 1024`` uint8 Morgan bit vectors (radius 2) of the valid molecules among ``smiles``."""
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=MORGAN_RADIUS, fpSize=MORGAN_BITS)
    mols = _mols(smiles)
    out = np.zeros((len(mols), MORGAN_BITS), dtype=np.uint8)
    for i, m in enumerate(mols):
        out[i] = gen.GetFingerprintAsNumPy(m)
    return out


def _tanimoto_rows(ref: np.ndarray, gen: np.ndarray) -> Iterable[np.ndarray]:
    """Tanimoto matrices ``[block x N_ref]`` of blocks of ``gen`` against ``ref`` (1 where both are empty)."""
    r = ref.astype(np.float32)
    r_sum = r.sum(1)
    for i in range(0, len(gen), _BLOCK):
        g = gen[i:i + _BLOCK].astype(np.float32)
        both = g @ r.T
        union = g.sum(1, keepdims=True) + r_sum[None, :] - both
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.where(union > 0, both / np.maximum(union, 1e-12), 1.0)
        yield t


def internal_diversity(fps: np.ndarray, p: int = 1) -> float:
    """MOSES IntDiv_p of fingerprints ``fps [N x bits]`` (N >= 1)."""
    if len(fps) == 0:
        return float("nan")
    per = [((t ** p).mean(1)) ** (1 / p) for t in _tanimoto_rows(fps, fps)]
    return float(1 - np.concatenate(per).mean())


def snn(gen_fps: np.ndarray, ref_fps: np.ndarray) -> float:
    """MOSES SNN: mean over generated molecules of the highest Tanimoto similarity to the reference."""
    if len(gen_fps) == 0 or len(ref_fps) == 0:
        return float("nan")
    return float(np.concatenate([t.max(1) for t in _tanimoto_rows(ref_fps, gen_fps)]).mean())


def fragments(smiles: Iterable[str]) -> Counter:
    """BRICS fragments of each molecule, counted over the set (MOSES ``compute_fragments``)."""
    out: Counter = Counter()
    for m in _mols(smiles):
        out.update(Chem.MolToSmiles(Chem.FragmentOnBRICSBonds(m)).split("."))
    return out


def _scaffold(mol: Chem.Mol) -> str | None:
    try:
        scaffold = MurckoScaffold.GetScaffoldForMol(mol)
    except (ValueError, RuntimeError):
        return None
    smiles = Chem.MolToSmiles(scaffold)
    if smiles == "" or scaffold.GetRingInfo().NumRings() < SCAFFOLD_MIN_RINGS:
        return None
    return smiles


def scaffolds(smiles: Iterable[str]) -> Counter:
    """Bemis-Murcko scaffolds with at least 2 rings, counted over the set (MOSES ``compute_scaffolds``)."""
    return Counter(s for s in map(_scaffold, _mols(smiles)) if s is not None)


def cosine_similarity(ref: dict[str, int], gen: dict[str, int]) -> float:
    """Cosine similarity of two count dictionaries over the union of their keys (NaN if one is empty)."""
    if not ref or not gen:
        return float("nan")
    keys = sorted(set(ref) | set(gen))
    a = np.array([ref.get(k, 0) for k in keys], dtype=np.float64)
    b = np.array([gen.get(k, 0) for k in keys], dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def moses_metrics(generated: Sequence[str], reference: Sequence[str] | None = None,
                  reference_fps: np.ndarray | None = None, reference_fragments: dict[str, int] | None = None,
                  reference_scaffolds: dict[str, int] | None = None) -> dict[str, float]:
    """IntDiv1, IntDiv2, SNN, Frag and Scaf of valid ``generated`` SMILES.

    The reference is given as SMILES, or as its precomputed parts (fingerprints, fragment
    and scaffold counts); a part given precomputed is not recomputed.
    """
    gen_fps = fingerprints(generated)
    if reference_fps is None:
        reference_fps = fingerprints(reference or [])
    if reference_fragments is None:
        reference_fragments = fragments(reference or [])
    if reference_scaffolds is None:
        reference_scaffolds = scaffolds(reference or [])
    return {"intdiv1": internal_diversity(gen_fps, 1), "intdiv2": internal_diversity(gen_fps, 2),
            "snn": snn(gen_fps, reference_fps),
            "frag": cosine_similarity(reference_fragments, fragments(generated)),
            "scaf": cosine_similarity(reference_scaffolds, scaffolds(generated))}
