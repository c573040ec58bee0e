"""molshape.scoring.chem: golden scores (data/chem_golden.csv), validity reasons, batch scoring."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from molshape.scoring import chem

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "chem_golden.csv"


def golden_rows() -> list[dict]:
    with open(GOLDEN) as f:
        return list(csv.DictReader(f))


def test_gvae_check_values():
    assert round(chem.penalized_logp("CCCCCCCCCCCC"), 2) == 4.15
    assert round(chem.penalized_logp("CCCCCc1cccc(c1)"), 2) == 3.11


@pytest.mark.parametrize("row", golden_rows(), ids=lambda r: r["smiles"][:30])
def test_golden_scores(row):
    s = chem.score_one(row["smiles"])
    assert s.valid
    assert f"{s.logp:.3f}" == row["logp"]
    assert f"{s.sa:.3f}" == row["sa"]
    assert s.cycle == float(row["cycle"])
    assert f"{s.qed:.3f}" == row["qed"]
    assert abs(s.penalized_logp - float(row["penalized_logp"])) <= 5e-4
    assert chem.penalized_logp(row["smiles"]) == s.penalized_logp


def test_golden_file_covers_ring_penalty():
    cycles = {float(r["cycle"]) for r in golden_rows()}
    assert 0.0 in cycles and -1.0 in cycles and -2.0 in cycles


def test_ring_penalty_uses_largest_ring():
    assert chem.ring_penalty("C1CCCCCCC1") == -2.0  # cyclooctane
    assert chem.ring_penalty("c1ccccc1") == 0.0
    assert chem.ring_penalty("CCO") == 0.0


@pytest.mark.parametrize("bad,fragment", [
    ("C1CC", "syntax"),
    ("N(C)(C)(C)(C)C", "valence"),
    ("", "empty"),
    (None, "no string"),
    ("c1cccc1", "RDKit"),
])
def test_invalid_gives_nan_and_reason(bad, fragment):
    assert math.isnan(chem.penalized_logp(bad))
    assert math.isnan(chem.qed(bad))
    assert not chem.is_valid(bad)
    assert chem.canonicalise(bad) is None
    assert fragment in chem.invalid_reason(bad)
    row = chem.score_one(bad)
    assert not row.valid and fragment in row.reason


def test_canonicalise():
    assert chem.canonicalise("OCC") == "CCO"
    assert chem.canonicalise("C(C)O") == chem.canonicalise("CCO")


def test_score_many_mixed_in_process(zinc_sample):
    smiles = zinc_sample[:40] + ["C1CC", None, "xyz"]
    scores = chem.score_many(smiles, "logp", workers=1)
    assert scores.shape == (43,) and scores.dtype == np.float64
    assert np.isnan(scores[-3:]).all() and np.isfinite(scores[:40]).all()
    assert scores[5] == chem.penalized_logp(smiles[5])
    q = chem.score_many(smiles[:10], "qed", workers=1)
    assert ((q > 0) & (q < 1)).all()
    with pytest.raises(ValueError, match="unknown molecule target"):
        chem.score_many(smiles, "banana")


def test_score_table_pool_matches_serial(zinc_sample, monkeypatch):
    monkeypatch.setattr(chem, "MIN_PARALLEL", 0)
    smiles = zinc_sample[:60] + ["C1CC"]
    pooled = chem.score_table(smiles, workers=2, chunk_size=16, with_qed=False)
    serial = [chem.score_one(s, with_qed=False) for s in smiles]
    assert [r.smiles for r in pooled] == smiles
    assert [r.penalized_logp for r in pooled[:60]] == [r.penalized_logp for r in serial[:60]]
    assert not pooled[-1].valid


def test_canonicalise_many_pool_matches_serial(zinc_sample, monkeypatch):
    monkeypatch.setattr(chem, "MIN_PARALLEL", 0)
    smiles = zinc_sample[:1200] + ["C1CC", None]
    pooled = chem.canonicalise_many(smiles, workers=2)
    assert pooled == [chem.canonicalise(s) for s in smiles]  # order kept across the 3 chunks
    assert pooled[-2:] == [None, None]
    assert all(c == chem.canonicalise(c) for c in pooled[:50])  # canonical forms are fixed points


def test_zinc_statistics_close_to_gvae_constants(zinc_sample):
    rows = chem.score_table(zinc_sample[:1000], workers=1, with_qed=False)
    lp = np.array([r.logp for r in rows])
    neg_sa = -np.array([r.sa for r in rows])
    # 1,000 molecules: the means lie within a few standard errors of GVAE's 250k statistics
    assert abs(lp.mean() - 2.4571) < 4 * 1.4343 / np.sqrt(1000)
    assert abs(neg_sa.mean() - -3.0533) < 4 * 0.8349 / np.sqrt(1000)
    assert abs(lp.std() - 1.4343) < 0.15


def test_draw_grid(tmp_path):
    path = chem.draw_grid(["CCO", "C1CC", "c1ccccc1"], ["a", "b", "c"], tmp_path / "g.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no valid molecule"):
        chem.draw_grid(["C1CC"], None, tmp_path / "h.png")


def test_score_cli_csv_json_and_bad_rows(tmp_path):
    import json

    from click.testing import CliRunner

    from molshape.cli import main

    inp = tmp_path / "in.smi"
    inp.write_text("smiles\nCCCCCCCCCCCC id1\nC1CC\n\nCCCCCc1cccc(c1)\n")
    out = tmp_path / "scores.csv"
    res = CliRunner().invoke(main, ["score", "--input", str(inp), "-o", str(out), "--json"], catch_exceptions=False)
    assert res.exit_code == 3, res.output  # some rows are invalid
    summary = json.loads(res.stdout)
    assert (summary["n"], summary["valid"], summary["invalid"]) == (4, 2, 2)
    assert [r["row"] for r in summary["invalid_rows"]] == [2, 3]
    rows = list(csv.DictReader(out.open()))
    assert [r["input"] for r in rows] == ["CCCCCCCCCCCC", "C1CC", "", "CCCCCc1cccc(c1)"]
    assert round(float(rows[0]["score"]), 2) == 4.15 and rows[1]["score"] == "" and "syntax" in rows[1]["reason"]
    assert set(rows[0]) >= {"logp", "sa", "cycle", "valid", "reason"}
    assert [r["name"] for r in rows] == ["id1", "", "", ""]  # names kept, as parse keeps them
    assert not (tmp_path / "scores.csv.config.json").exists() and summary["config"]["target"] == "logp"
    res = CliRunner().invoke(main, ["score", "--target", "qed", "CCO"], catch_exceptions=False)
    assert res.exit_code == 0 and "CCO,True,0.40" in res.stdout
    res = CliRunner().invoke(main, ["score"])
    assert res.exit_code != 0 and "either as arguments" in res.output
