"""What a new user meets first: one-line model repr, complete tables, no stray files,
offline evaluation of a shipped model, neutralised output, ignored options named."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

import molshape
from molshape.api import Table
from molshape.cli import main
from molshape.core.rundir import LOCK_NAME, RunLock, runs_dir
from molshape.data.reference import HashedSet, shipped_reference, sorted_hashes


def test_model_repr_is_one_line():
    m = molshape.load("expr")
    text = repr(m)
    assert "\n" not in text and len(text) < 160
    assert text.startswith("Model(expr-gmm-cpu, grammar expr, latent 25, ") and "parameters" in text


def test_tables_print_complete_smiles():
    long = "CC(C)Cc1ccc(cc1)C(C)C(=O)NCCc1ccc(O)c(O)c1CCCCCCOc1ccccc1C(=O)N1CCN(CC1)c1ncccn1"
    table = molshape.score([long, "CCO"], target="qed")
    assert isinstance(table, Table)
    assert long in repr(table) and long in str(table)


def test_run_lock_is_removed_when_the_run_ends(tmp_path):
    lock = RunLock(tmp_path / "run").acquire()
    assert (tmp_path / "run" / LOCK_NAME).is_file()
    with pytest.raises(Exception, match="another run"):
        RunLock(tmp_path / "run").acquire()
    lock.release()
    assert not (tmp_path / "run" / LOCK_NAME).exists()
    with RunLock(tmp_path / "run"):  # free again
        pass
    assert list((tmp_path / "run").iterdir()) == []


def test_runs_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MOLSHAPE_RUNS_DIR", str(tmp_path / "elsewhere"))
    assert runs_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("MOLSHAPE_RUNS_DIR")
    assert runs_dir() == Path("runs")


def test_tests_never_use_the_user_cache():
    assert "molshape-tests-" in os.environ["MOLSHAPE_CACHE_DIR"] or "pytest" in os.environ["MOLSHAPE_CACHE_DIR"]


def test_hashed_novelty_set_knows_its_members():
    members = ["CCO", "c1ccccc1", "CC(=O)O"]
    s = HashedSet(sorted_hashes(members))
    assert all(m in s for m in members) and "CCN" not in s and None not in s


def test_shipped_reference_covers_the_default_model():
    ref = shipped_reference()
    assert ref is not None and ref.n_test == 5000
    m = molshape.load("zinc")
    assert len(ref.test_slice(m.checkpoint)) == 200
    assert len(ref.novelty_set(m.checkpoint)) > 50_000
    assert ref.novelty_set(molshape.load("expr").checkpoint) is None
    stats = ref.fcd_stats()
    assert stats["mu"].shape == (512,) and (stats["sigma"] == stats["sigma"].T).all()
    assert ref.fcd_floor(180) == (pytest.approx(ref.meta["fcd_floor"]["200"]), 200)


@pytest.mark.slow
def test_evaluate_runs_offline_on_the_shipped_reference(tmp_path, monkeypatch):
    monkeypatch.setenv("MOLSHAPE_DATA_DIR", str(tmp_path / "nodata"))
    (tmp_path / "nodata").mkdir()
    res = CliRunner().invoke(main, ["evaluate", "--n", "30", "--limit", "20", "--threads", "1",
                                    "--out", str(tmp_path / "ev"), "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert "evaluate: reconstruct 20 molecules of the shipped test slice" in res.stderr
    assert "expected about" in res.stderr
    r, m = s["reconstruction"], s["samples"]
    assert r["n_recon"] == 20 and "shipped slice" in r["held_out"]
    assert m["n_samples"] == 30 and m["validity"] == 1.0 and 0.9 <= m["novelty"] <= 1.0
    assert m["fcd"] > m["fcd_floor"] > 0 and m["fcd_floor_n"] == 100
    assert set(m["moses"]) == {"intdiv1", "intdiv2", "snn", "frag", "scaf"}
    assert 0.5 < m["moses"]["intdiv1"] < 1 and 0 < m["moses"]["snn"] < 1
    assert "statistics shipped" in m["fcd_reference"]
    assert sorted(p.name for p in (tmp_path / "ev").iterdir()) == [
        "config.json", "latent_interpolation.png", "latent_neighbourhood.png", "latents.png", "properties.png",
        "samples.png", "samples.txt", "summary.json"]
    assert s["latent"]["n"] == 20  # the latent metrics ran on the --limit molecules of the shipped slice


def test_decode_names_ignored_options_and_neutralises(tmp_path):
    mols = tmp_path / "mols.smi"
    mols.write_text("CC[NH3+] ethylammonium\nCC(=O)[O-] acetate\n")
    res = CliRunner().invoke(main, ["score", "--input", str(mols), "--target", "qed", "--neutralise"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].startswith("input,name,smiles,valid,score")
    assert lines[1].startswith("CC[NH3+],ethylammonium,CCN,True,") and lines[2].startswith("CC(=O)[O-],acetate,CC(=O)O,")
    res = CliRunner().invoke(main, ["decode", "--grammar", "expr", "--source", "interpolate", "--between", "x",
                                    "sin(x)", "--steps", "3", "--n", "7", "--threads", "1"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "--n is ignored with --source interpolate" in res.stderr
    assert len([line for line in res.stdout.splitlines() if not line.startswith("decoded")]) == 3
