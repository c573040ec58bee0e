"""One-off: write data/chem_golden.csv, reference molecule scores for tests/scoring/test_chem.py.

Computed along GVAE's own straightforward path (its
``molecule_optimization/latent_features_and_targets_grammar`` script), independent of
``molshape.scoring.chem``: canonicalise, ``Descriptors.MolLogP``, ``sascorer.calculateScore``,
``networkx.cycle_basis(nx.Graph(adjacency))``, ``QED.qed``; then standardise each term with
GVAE's ZINC250k statistics. Picks the first 30 ZINC250k molecules, the first 8 with a ring
larger than 6, and the two check molecules of the GVAE paper.

Usage: python scripts/make_chem_golden.py [ZINC_SMI_GZ] [OUT_CSV]
"""

import csv
import gzip
import sys
from pathlib import Path

import networkx as nx
from rdkit import Chem
from rdkit.Chem import QED, Descriptors, rdmolops
from rdkit.Contrib.SA_Score import sascorer

ROOT = Path(__file__).resolve().parent.parent
zinc = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data" / "zinc250k.smi.gz"
out = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "data" / "chem_golden.csv"


def cycle_score(mol):
    cycles = nx.cycle_basis(nx.Graph(rdmolops.GetAdjacencyMatrix(mol)))
    length = max([len(c) for c in cycles]) if cycles else 0
    return -(length - 6) if length > 6 else 0


def row(smiles):
    mol = Chem.MolFromSmiles(Chem.MolToSmiles(Chem.MolFromSmiles(smiles)))
    lp = Descriptors.MolLogP(mol)
    sa = sascorer.calculateScore(mol)
    cyc = cycle_score(mol)
    total = (lp - 2.4571) / 1.4343 + (-sa - -3.0533) / 0.8349 + (cyc - -0.0488) / 0.2880
    return [smiles, f"{lp:.3f}", f"{sa:.3f}", str(cyc), f"{QED.qed(mol):.3f}", f"{total:.3f}"]


with gzip.open(zinc, "rt") as f:
    lines = [line.split()[0] for _, line in zip(range(100_000), f) if line.strip()]
picked = lines[:30]
picked += [s for s in lines[30:] if cycle_score(Chem.MolFromSmiles(s)) < 0][:8]
picked += ["CCCCCCCCCCCC", "CCCCCc1cccc(c1)"]
rows = [row(s) for s in picked]
with open(out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["smiles", "logp", "sa", "cycle", "qed", "penalized_logp"])
    w.writerows(rows)
print(f"wrote {len(rows)} rows to {out}")
print("check values:", [r[-1] for r in rows[-2:]], "(GVAE: 4.15, 3.11)")
