"""MOSES metrics (IntDiv1/2, SNN, Frag, Scaf) on small sets whose values are known by hand,
and against RDKit's own Tanimoto for the fingerprint metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

from molshape.scoring.moses import (cosine_similarity, fingerprints, fragments, internal_diversity, moses_metrics,
                                    scaffolds, snn)


def _rdkit_tanimoto(a: str, b: str) -> float:
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    fa, fb = (gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in (a, b))
    return DataStructs.TanimotoSimilarity(fa, fb)


def test_internal_diversity_of_known_sets():
    # identical molecules: every pair has similarity 1
    assert internal_diversity(fingerprints(["CCO", "CCO", "OCC"]), 1) == pytest.approx(0.0)
    # two molecules with similarity t: pairs (1, t, t, 1), so IntDiv1 = 1 - (1 + t) / 2 and
    # IntDiv2 = 1 - sqrt((1 + t^2) / 2)
    a, b = "CCOc1ccccc1", "CCN"
    t = _rdkit_tanimoto(a, b)
    assert 0 < t < 1
    fps = fingerprints([a, b])
    assert internal_diversity(fps, 1) == pytest.approx(1 - (1 + t) / 2, abs=1e-6)
    assert internal_diversity(fps, 2) == pytest.approx(1 - math.sqrt((1 + t * t) / 2), abs=1e-6)


def test_snn_is_the_mean_nearest_neighbour_similarity():
    ref = ["CCOc1ccccc1", "CCN", "c1ccc2ccccc2c1"]
    gen = ["CCOc1ccccc1C", "CCCN"]
    expected = np.mean([max(_rdkit_tanimoto(g, r) for r in ref) for g in gen])
    assert snn(fingerprints(gen), fingerprints(ref)) == pytest.approx(expected, abs=1e-6)
    assert snn(fingerprints(ref), fingerprints(ref)) == pytest.approx(1.0)


def test_fragment_and_scaffold_similarity():
    # BRICS cuts the ester and the ring attachment: four fragments
    assert sorted(fragments(["CCOC(=O)c1ccccc1"])) == sorted(["[1*]C([6*])=O", "[16*]c1ccccc1", "[3*]O[3*]", "[4*]CC"])
    naphthalenes = ["CCc1ccc2ccccc2c1", "Oc1ccc2ccccc2c1"]
    assert scaffolds(naphthalenes) == {"c1ccc2ccccc2c1": 2}
    assert scaffolds(["CCc1ccccc1"]) == {}  # one ring: below MOSES's min_rings = 2
    # same scaffold counts up to scale: cosine 1; disjoint scaffolds: 0; none at all: NaN
    m = moses_metrics(["Nc1ccc2ccccc2c1"], naphthalenes)
    assert m["scaf"] == pytest.approx(1.0)
    assert moses_metrics(["c1ccc(-c2ccccc2)cc1"], naphthalenes)["scaf"] == pytest.approx(0.0)
    assert math.isnan(moses_metrics(["CCO"], naphthalenes)["scaf"])
    # Frag: counts {a: 2, b: 1} against {a: 1, b: 1}: cosine 3 / (sqrt(5) sqrt(2))
    assert cosine_similarity({"a": 2, "b": 1}, {"a": 1, "b": 1}) == pytest.approx(3 / math.sqrt(10))
    assert moses_metrics(naphthalenes, naphthalenes)["frag"] == pytest.approx(1.0)


def test_moses_metrics_accept_precomputed_references():
    ref = ["CCOc1ccccc1", "CCN", "c1ccc2ccccc2c1CC"]
    gen = ["CCOc1ccccc1C", "CCCN", "CCO"]
    direct = moses_metrics(gen, ref)
    pre = moses_metrics(gen, reference_fps=fingerprints(ref), reference_fragments=dict(fragments(ref)),
                        reference_scaffolds=dict(scaffolds(ref)))
    assert direct == pytest.approx(pre, nan_ok=True)
    assert set(direct) == {"intdiv1", "intdiv2", "snn", "frag", "scaf"}
