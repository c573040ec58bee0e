"""Molecule scores and RDKit helpers: the one module that imports RDKit.

Penalized logP, the GVAE benchmark score (higher is better), is the sum of three terms,
each standardised with its ZINC250k mean and standard deviation:

* logP: Crippen ``MolLogP``;
* -SA: minus the synthetic accessibility score of Ertl & Schuffenhauer (RDKit Contrib
  ``sascorer``, 1 easy .. 10 hard);
* cycle: ``-(largest ring size - 6)``, 0 when no ring is larger than 6, with ring sizes
  from ``networkx.cycle_basis`` of the adjacency graph exactly as GVAE computed them (a
  cycle basis, not RDKit's SSSR: for some fused systems it reports a larger ring).

Departures from GVAE's script: none in the formulas; the standardisation constants are
GVAE's ZINC250k statistics (``STANDARDISATION``) rather than recomputed per run. Invalid
SMILES give ``nan`` with a reason (:func:`invalid_reason`), never an exception, in batch use.

Example:
    >>> round(penalized_logp("CCCCCCCCCCCC"), 2)
    4.15
    >>> canonicalise("OCC")
    'CCO'
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Sequence

import networkx as nx
import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import QED, Crippen
from rdkit.Contrib.SA_Score import sascorer

from molshape.core.runtime import init_pool_worker

#: term -> (ZINC250k mean, standard deviation) used by GVAE to standardise each term.
STANDARDISATION: dict[str, tuple[float, float]] = {
    "logp": (2.4571, 1.4343),
    "neg_sa": (-3.0533, 0.8349),
    "cycle": (-0.0488, 0.2880),
}

#: Scoring targets understood by :func:`score_many` -> the :class:`MolScore` field holding each.
FIELDS = {"logp": "penalized_logp", "qed": "qed", "sa": "sa", "clogp": "logp", "plogp": "plogp",
          "logp_sa": "logp_sa"}
TARGETS = tuple(FIELDS)

#: Below this many molecules, batch scoring stays in-process (a pool costs ~1 s to start).
MIN_PARALLEL = 2000


@dataclass(frozen=True)
class MolScore:
    """All scores of one SMILES; numbers are ``nan`` and ``reason`` is set when invalid."""

    smiles: str
    valid: bool
    reason: str | None
    logp: float = math.nan
    sa: float = math.nan
    cycle: float = math.nan
    qed: float = math.nan
    penalized_logp: float = math.nan

    @property
    def plogp(self) -> float:
        """Unstandardised penalized logP, ``logP - SA - max(largest ring - 6, 0)``: the score of
        the lead-optimisation benchmark (JT-VAE, graph2graph)."""
        return self.logp - self.sa + self.cycle

    @property
    def logp_sa(self) -> float:
        """``logP - SA``: the score of the lead-optimisation file (JT-VAE's ``opt.test.logP-SA``)."""
        return self.logp - self.sa

    def as_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------- validity


def to_mol(smiles: str | None) -> tuple[Chem.Mol | None, str | None]:
    """Parse and sanitise ``smiles``: ``(mol, None)`` or ``(None, reason)``."""
    if smiles is None:
        return None, "no string (decoding failed or was incomplete)"
    if not isinstance(smiles, str) or not smiles.strip():
        return None, "empty SMILES"
    with rdBase.BlockLogs():  # RDKit would print every failure to stderr
        mol = Chem.MolFromSmiles(smiles, sanitize=False)
        if mol is None:
            return None, "RDKit: SMILES syntax error (unclosed ring or branch, or bad token)"
        if mol.GetNumAtoms() == 0:
            return None, "RDKit: no atoms"
        try:
            Chem.SanitizeMol(mol)
        except Exception as e:  # noqa: BLE001 - RDKit raises several sanitisation errors
            return None, "RDKit: " + str(e).strip().splitlines()[0]
    return mol, None


def invalid_reason(smiles: str | None) -> str | None:
    """``None`` when RDKit parses and sanitises ``smiles``, else a one-line reason."""
    return to_mol(smiles)[1]


def is_valid(smiles: str | None) -> bool:
    """RDKit parses and sanitises ``smiles``."""
    return to_mol(smiles)[0] is not None


def canonicalise(smiles: str | None) -> str | None:
    """RDKit canonical SMILES, or ``None`` if invalid."""
    mol, _ = to_mol(smiles)
    return None if mol is None else Chem.MolToSmiles(mol)


def kekule_smiles(smiles: str | None) -> str | None:
    """Canonical Kekulé SMILES without stereochemistry (no aromatic atoms), or None if invalid.

    The representation of the ``smiles_kekule`` grammar: with explicit double bonds,
    valence bookkeeping alone decides whether a string is a valid molecule.
    """
    mol, _ = to_mol(smiles)
    if mol is None:
        return None
    with rdBase.BlockLogs():
        try:
            Chem.Kekulize(mol, clearAromaticFlags=True)
        except Exception:  # noqa: BLE001 - RDKit raises a generic kekulization error
            return None
        return Chem.MolToSmiles(mol, isomericSmiles=False, kekuleSmiles=True)


def dropped_features(smiles: str) -> list[str]:
    """What :func:`kekule_smiles` drops from ``smiles`` (isotopes, stereo centres, double-bond
    stereo), one short phrase each; empty when nothing is lost."""
    if not any(c in smiles for c in "[@/\\"):  # each of these needs a bracket atom or a bond mark
        return []
    mol, _ = to_mol(smiles)
    if mol is None:
        return []
    found: list[str] = []
    isotopes = sorted({f"{a.GetIsotope()}{a.GetSymbol()}" for a in mol.GetAtoms() if a.GetIsotope()})
    if isotopes:
        found.append(f"isotope{'s' if len(isotopes) > 1 else ''} {', '.join(isotopes)}")
    centres = sum(a.GetChiralTag() != Chem.ChiralType.CHI_UNSPECIFIED for a in mol.GetAtoms())
    if centres:
        found.append(f"{centres} stereo centre{'s' if centres > 1 else ''}")
    marks = (Chem.BondDir.ENDUPRIGHT, Chem.BondDir.ENDDOWNRIGHT)
    if any(b.GetStereo() != Chem.BondStereo.STEREONONE or b.GetBondDir() in marks for b in mol.GetBonds()):
        found.append("double-bond stereo (E/Z)")
    return found


def neutralise(smiles: str | None) -> str | None:
    """Canonical SMILES with charges neutralised where a neutral form exists (RDKit's
    ``rdMolStandardize.Uncharger``: ``[NH3+]`` -> ``N``, ``C(=O)[O-]`` -> ``C(=O)O``; quaternary
    and nitro nitrogens keep their charges); None if invalid.

    Example:
        >>> neutralise("C[NH+](C)CC(=O)[O-]")
        'CN(C)CC(=O)O'
    """
    mol, _ = to_mol(smiles)
    if mol is None:
        return None
    from rdkit.Chem.MolStandardize import rdMolStandardize

    with rdBase.BlockLogs():
        return Chem.MolToSmiles(rdMolStandardize.Uncharger().uncharge(mol))


def _kekule_chunk(args: tuple[list[str | None]]) -> list[str | None]:
    return [kekule_smiles(s) for s in args[0]]


def kekule_many(smiles: Sequence[str | None], workers: int | None = None, progress: bool = False) -> list[str | None]:
    """:func:`kekule_smiles` of each string, spread over ``workers`` processes when large."""
    return _map_chunks(_kekule_chunk, smiles, (), workers, progress, "kekulize")


# ---------------------------------------------------------------------------- terms


def _mol_logp(mol: Chem.Mol) -> float:
    return float(Crippen.MolLogP(mol))


def _mol_sa(mol: Chem.Mol) -> float:
    return float(sascorer.calculateScore(mol))


def _mol_cycle(mol: Chem.Mol) -> float:
    # GVAE: nx.cycle_basis(nx.Graph(GetAdjacencyMatrix(mol))); the basis depends on the
    # node order, so build the graph the same way rather than from RDKit's ring info.
    graph = nx.from_numpy_array(Chem.GetAdjacencyMatrix(mol))
    largest = max((len(c) for c in nx.cycle_basis(graph)), default=0)
    return float(-max(largest - 6, 0))


def _mol_qed(mol: Chem.Mol) -> float:
    return float(QED.qed(mol))


def _standardise(term: str, value: float) -> float:
    mean, std = STANDARDISATION[term]
    return (value - mean) / std


def _combine(logp_: float, sa: float, cycle: float) -> float:
    return _standardise("logp", logp_) + _standardise("neg_sa", -sa) + _standardise("cycle", cycle)


def _on_mol(fn, smiles: str | None) -> float:
    mol, _ = to_mol(smiles)
    return math.nan if mol is None else fn(mol)


def logp(smiles: str | None) -> float:
    """Crippen logP (``nan`` if invalid)."""
    return _on_mol(_mol_logp, smiles)


def sa_score(smiles: str | None) -> float:
    """Synthetic accessibility, 1 (easy) .. 10 (hard) (``nan`` if invalid)."""
    return _on_mol(_mol_sa, smiles)


def ring_penalty(smiles: str | None) -> float:
    """GVAE cycle term ``-(largest cycle-basis ring - 6)``, 0 if none exceeds 6 (``nan`` if invalid)."""
    return _on_mol(_mol_cycle, smiles)


def qed(smiles: str | None) -> float:
    """Quantitative estimate of drug-likeness in [0, 1] (``nan`` if invalid)."""
    return _on_mol(_mol_qed, smiles)


def penalized_logp(smiles: str | None) -> float:
    """GVAE standardised penalized logP (``nan`` if invalid); higher is better."""
    mol, _ = to_mol(smiles)
    if mol is None:
        return math.nan
    return _combine(_mol_logp(mol), _mol_sa(mol), _mol_cycle(mol))


def score_one(smiles: str | None, with_qed: bool = True) -> MolScore:
    """Every score of one SMILES; never raises."""
    mol, reason = to_mol(smiles)
    if mol is None:
        return MolScore(smiles=smiles or "", valid=False, reason=reason)
    try:
        lp, sa, cyc = _mol_logp(mol), _mol_sa(mol), _mol_cycle(mol)
        q = _mol_qed(mol) if with_qed else math.nan
    except Exception as e:  # noqa: BLE001 - a descriptor failing on an odd molecule is a bad row
        return MolScore(smiles=smiles, valid=False, reason=f"scoring failed: {e}")
    return MolScore(smiles=smiles, valid=True, reason=None, logp=lp, sa=sa, cycle=cyc, qed=q,
                    penalized_logp=_combine(lp, sa, cyc))


# ---------------------------------------------------------------------------- batches


def _score_chunk(args: tuple[list[str | None], bool]) -> list[MolScore]:
    chunk, with_qed = args
    return [score_one(s, with_qed) for s in chunk]


def _canonical_chunk(args: tuple[list[str | None]]) -> list[str | None]:
    return [canonicalise(s) for s in args[0]]


def _map_chunks(fn: Callable[[tuple], list], items: Sequence, extra: tuple, workers: int | None, progress: bool,
                desc: str, chunk_size: int = 500) -> list:
    """``fn((chunk, *extra))`` over chunks of ``items``, order preserved, in a process pool when large."""
    from tqdm.auto import tqdm

    items = list(items)
    workers = (os.cpu_count() or 1) if workers is None else max(1, workers)
    tasks = [(items[i:i + chunk_size], *extra) for i in range(0, len(items), chunk_size)]
    bar = tqdm(total=len(items), desc=desc, unit="mol", disable=not progress, leave=False)
    out: list = []
    if workers == 1 or len(items) < MIN_PARALLEL:
        for task in tasks:
            out += fn(task)
            bar.update(len(task[0]))
    else:
        # forked workers: spawn would re-run the caller's script (and fails on one read from
        # stdin); the workers run RDKit only, never the parent's torch thread pool
        with get_context().Pool(min(workers, len(tasks)), initializer=init_pool_worker) as pool:
            for part in pool.imap(fn, tasks):
                out += part
                bar.update(len(part))
    bar.close()
    return out


def score_table(smiles: Sequence[str | None], workers: int | None = None, progress: bool = False,
                with_qed: bool = True, chunk_size: int = 500) -> list[MolScore]:
    """:func:`score_one` for many SMILES, order preserved; uses all cores for large batches.

    Args:
        smiles: SMILES strings (``None`` entries count as invalid).
        workers: processes; ``None`` = all cores; batches under ``MIN_PARALLEL`` run in-process.
        progress: show a tqdm bar (stderr).
        with_qed: also compute QED (about a third of the time).
        chunk_size: molecules per task sent to a worker.
    """
    return _map_chunks(_score_chunk, smiles, (with_qed,), workers, progress, "scoring", chunk_size)


def canonicalise_many(smiles: Sequence[str | None], workers: int | None = None,
                      progress: bool = False) -> list[str | None]:
    """:func:`canonicalise` for many SMILES, order preserved; all cores for large batches."""
    return _map_chunks(_canonical_chunk, smiles, (), workers, progress, "canonicalise")


def score_many(smiles: Sequence[str | None], target: str = "logp", workers: int | None = None,
               progress: bool = False) -> np.ndarray:
    """Scores of many SMILES as a float64 array ``[N]``, ``nan`` for invalid ones.

    Args:
        target: one of :data:`TARGETS` (``logp``: GVAE standardised penalized logP; ``qed``;
            ``sa``; ``clogp``: Crippen logP; ``plogp``: unstandardised penalized logP; ``logp_sa``:
            logP - SA).
    """
    if target not in TARGETS:
        raise ValueError(f"unknown molecule target {target!r}; choose from {TARGETS}")
    rows = score_table(smiles, workers=workers, progress=progress, with_qed=target == "qed")
    return np.array([getattr(r, FIELDS[target]) for r in rows], dtype=np.float64)


def score_columns(smiles: Sequence[str | None], targets: Sequence[str]) -> dict[str, np.ndarray]:
    """Several targets of the same molecules at once (each molecule parsed once): name -> ``[N]``."""
    for t in targets:
        if t not in TARGETS:
            raise ValueError(f"unknown molecule target {t!r}; choose from {TARGETS}")
    rows = [score_one(s, with_qed="qed" in targets) for s in smiles]
    return {t: np.array([getattr(r, FIELDS[t]) for r in rows], dtype=np.float64) for t in targets}


# ---------------------------------------------------------------------------- pictures


def draw_grid(smiles: Sequence[str | None], labels: Sequence[str] | None, path: str | Path,
              per_row: int = 4, size: int = 320, keep_invalid: bool = False) -> Path:
    """Draw the valid ``smiles`` as a PNG grid with ``labels`` under each; returns the path.

    Atom labels are drawn at least 14 px high and legends at 16 px, so a grid reads at 100 %.
    Invalid entries are skipped, or with ``keep_invalid`` left as blank cells (RDKit draws
    no legend there), so that rows and columns keep their meaning. Raises ``ValueError`` when none is valid.
    """
    from rdkit.Chem import Draw

    mols, legends = [], []
    for i, s in enumerate(smiles):
        mol, _ = to_mol(s)
        if mol is not None or keep_invalid:
            mols.append(mol)
            legends.append(labels[i] if labels is not None else (s or "")[:40])
    if not any(m is not None for m in mols):
        raise ValueError(f"draw_grid({path}): no valid molecule to draw")
    options = Draw.MolDrawOptions()
    options.minFontSize = 14
    options.legendFontSize = 16
    options.legendFraction = 0.12
    image = Draw.MolsToGridImage(mols, molsPerRow=min(per_row, len(mols)), subImgSize=(size, size),
                                 legends=legends, drawOptions=options)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(str(path))
    return path


def draw_pairs(pairs: Sequence[tuple[str | None, str | None]], labels: Sequence[tuple[str, str]], path: str | Path,
               size: int = 260) -> Path:
    """One row per pair (e.g. a lead beside its best molecule), each cell titled with its label;
    an invalid or missing molecule leaves its cell blank, with its label."""
    from matplotlib.figure import Figure
    from rdkit.Chem import Draw

    from molshape.core.atomic import save_figure  # matplotlib is slow to import: only for figures

    if not pairs:
        raise ValueError(f"draw_pairs({path}): nothing to draw")
    fig = Figure(figsize=(2 * size / 80, len(pairs) * size / 80))
    axes = fig.subplots(len(pairs), 2, squeeze=False)
    for row, ((a, b), (la, lb)) in enumerate(zip(pairs, labels)):
        for ax, s, label in ((axes[row, 0], a, la), (axes[row, 1], b, lb)):
            mol, _ = to_mol(s) if s else (None, None)
            if mol is not None:
                ax.imshow(Draw.MolToImage(mol, size=(size, size)))
            ax.set_title(label, fontsize=8)
            ax.axis("off")
    return save_figure(fig, path, close=True, dpi=100)
