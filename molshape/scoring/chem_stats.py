"""Is a set of generated molecules realistic? Failure categories and distribution checks.

Validity can be bought with molecules no chemist would draw: giant rings, long CH2
chains. This module measures that against real data:

- :func:`failure_category` names why a decoded SMILES is not a molecule (the table the
  docs/results.md reports for grammar-only against semantic decoding);
- :func:`molecule_stats` computes per-molecule properties (logP, SA, QED, weight, rings,
  largest ring, longest CH2 run);
- :func:`realism` compares samples with a reference set: macrocycle and long-chain
  shares, rings per molecule and the Wasserstein-1 distance of each property;
- :func:`plot_property_histograms` draws samples over data.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import Crippen, Descriptors, QED, rdMolDescriptors

from molshape.scoring.chem import _map_chunks, _mol_sa, to_mol

#: A ring of more than this many atoms counts as a macrocycle (ZINC250k: 0.03 % of molecules).
MACROCYCLE = 8
#: This many CH2 in a row (outside rings) count as a long alkyl chain (ZINC250k: 0.005 %).
LONG_CHAIN = 8
PROPERTIES = ("logp", "sa", "qed", "mw", "rings")
CATEGORIES = ("valid", "unclosed ring bond", "kekulization failure", "incomplete", "valence violation",
              "aromatic atom outside any ring", "duplicate ring bond", "other")
_CH2_RUN = Chem.MolFromSmarts("-".join(["[CH2X4;!R]"] * LONG_CHAIN))
_RING_NUMBER = re.compile(r"\[[^\]]*\]|%\d\d|\d")


def _unclosed_ring(smiles: str) -> bool:
    """Some ring-bond number is used an odd number of times (bracket atoms skipped)."""
    counts = Counter(t for t in _RING_NUMBER.findall(smiles) if not t.startswith("["))
    return any(c % 2 for c in counts.values())


def failure_category(smiles: str | None) -> str:
    """One of :data:`CATEGORIES` for a decoded string (None = incomplete derivation)."""
    if smiles is None:
        return "incomplete"
    mol, reason = to_mol(smiles)
    if mol is not None:
        return "valid"
    if _unclosed_ring(smiles):
        return "unclosed ring bond"
    reason = reason or ""
    if "kekulize" in reason:
        return "kekulization failure"
    if "valence" in reason:
        return "valence violation"
    if "marked aromatic" in reason:
        return "aromatic atom outside any ring"
    if "syntax" in reason:  # the grammar rules out other syntax errors: a ring closure onto a bonded atom
        return "duplicate ring bond"
    return "other"


def failure_table(raw: Sequence[str | None]) -> dict[str, float]:
    """Share of each :data:`CATEGORIES` entry among decoded strings (None = incomplete)."""
    counts = Counter(failure_category(s) for s in raw)
    n = max(len(raw), 1)
    return {c: counts.get(c, 0) / n for c in CATEGORIES}


def _longest_ring(mol: Chem.Mol) -> int:
    return max((len(r) for r in mol.GetRingInfo().AtomRings()), default=0)


def _stats_one(smiles: str | None) -> tuple[float, ...] | None:
    mol, _ = to_mol(smiles)
    if mol is None:
        return None
    with rdBase.BlockLogs():
        return (Crippen.MolLogP(mol), _mol_sa(mol), QED.qed(mol), Descriptors.MolWt(mol),
                float(rdMolDescriptors.CalcNumRings(mol)), float(_longest_ring(mol)),
                float(mol.HasSubstructMatch(_CH2_RUN)))


def _stats_chunk(args: tuple[list[str | None]]) -> list:
    return [_stats_one(s) for s in args[0]]


def molecule_stats(smiles: Sequence[str | None], workers: int | None = None, progress: bool = False) -> np.ndarray:
    """``N x 7`` float array: logp, sa, qed, mw, rings, largest ring, has a long CH2 chain.

    Invalid molecules are dropped (the array has a row per valid molecule).
    """
    rows = [r for r in _map_chunks(_stats_chunk, smiles, (), workers, progress, "properties") if r is not None]
    return np.asarray(rows, dtype=float).reshape(len(rows), 7)


def realism(samples: np.ndarray, reference: np.ndarray, floor: np.ndarray | None = None) -> dict[str, float]:
    """Compare :func:`molecule_stats` of samples with a reference set.

    Args:
        samples: stats of generated molecules; reference: of real ones (e.g. the test split);
        floor: stats of other real molecules (e.g. training molecules): their distances to
            the reference are what sampling noise alone gives.

    Returns:
        ``macrocycle_share`` (a ring of more than 8 atoms), ``long_chain_share`` (8 or more
        CH2 in a row), ``rings_per_molecule``, and ``w1_<property>`` for each property (with
        ``floor_`` versions when ``floor`` is given; ``ref_`` versions for the reference).
    """
    from scipy.stats import wasserstein_distance

    def shares(x: np.ndarray, prefix: str) -> dict[str, float]:
        if len(x) == 0:
            return {}
        return {f"{prefix}macrocycle_share": float((x[:, 5] > MACROCYCLE).mean()),
                f"{prefix}long_chain_share": float(x[:, 6].mean()),
                f"{prefix}rings_per_molecule": float(x[:, 4].mean())}

    out = {**shares(samples, ""), **shares(reference, "ref_")}
    for j, name in enumerate(PROPERTIES):
        if len(samples):
            out[f"w1_{name}"] = float(wasserstein_distance(samples[:, j], reference[:, j]))
        if floor is not None and len(floor):
            out[f"floor_w1_{name}"] = float(wasserstein_distance(floor[:, j], reference[:, j]))
    if floor is not None:
        out.update(shares(floor, "floor_"))
    return out


def plot_property_histograms(samples: np.ndarray, reference: np.ndarray, path: str | Path,
                             title: str = "prior samples over test molecules") -> Path:
    """PNG of the five property histograms, samples drawn over the reference."""
    from matplotlib.figure import Figure

    labels = {"logp": "logP", "sa": "SA score", "qed": "QED", "mw": "molecular weight", "rings": "rings"}
    fig = Figure(figsize=(4 * len(PROPERTIES), 3.2))
    axes = fig.subplots(1, len(PROPERTIES))
    for j, (ax, name) in enumerate(zip(axes, PROPERTIES)):
        both = np.concatenate([samples[:, j], reference[:, j]]) if len(samples) else reference[:, j]
        lo, hi = np.percentile(both, [0.5, 99.5])
        bins = np.arange(-0.5, hi + 1.5) if name == "rings" else np.linspace(lo, hi, 40)
        ax.hist(reference[:, j], bins=bins, density=True, alpha=0.5, label="data", color="tab:gray")
        if len(samples):
            ax.hist(samples[:, j], bins=bins, density=True, histtype="step", lw=1.8, label="samples",
                    color="tab:blue")
        ax.set_xlabel(labels[name])
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return Path(path)
