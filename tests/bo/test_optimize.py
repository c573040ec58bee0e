"""molshape.bo.loop and molshape.bo.run: the BO loop on a synthetic problem (no model), resume, TuRBO, report."""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np
import pytest
import torch

from molshape.bo.loop import OptimizeConfig, Problem
from molshape.bo.run import run_bo
from molshape.bo.surrogate import SurrogateConfig
from molshape.bo.trust_region import TrustRegion

CENTER = torch.tensor([0.5, -0.5, 0.25, 0.0], dtype=torch.float64)




def synthetic_problem(n: int = 40, higher_is_better: bool = True) -> Problem:
    """Latents in R^4; a "decoder" that fails for z[0] > 1.2 and a smooth score otherwise."""
    z = torch.randn(n, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    calls: list[int] = []

    def score(z: torch.Tensor) -> np.ndarray:
        s = -(z - CENTER).pow(2).sum(-1).numpy()
        s = np.where(z[:, 0].numpy() > 1.2, np.nan, s)
        return s if higher_is_better else -s

    def evaluate(zq: torch.Tensor) -> list[dict]:
        calls.append(len(zq))
        assert zq.dtype == torch.float64 and zq.shape[1] == 4
        out = []
        for v, z0 in zip(score(zq), zq[:, 0].tolist()):
            ok = math.isfinite(v)
            out.append({"string": f"s{v:.4f}" if ok else None, "score": float(v), "z0": z0})
        return out

    p = Problem(z=z, scores=score(z), evaluate=evaluate, higher_is_better=higher_is_better, source="synthetic")
    p.calls = calls  # type: ignore[attr-defined]
    return p


def small_config(**kw) -> OptimizeConfig:
    base = dict(seeds=2, iterations=2, batch=3, num_restarts=2, raw_samples=32, mc_samples=32, maxiter=20,
                surrogate=SurrogateConfig(kind="exact"))
    base.update(kw)
    return OptimizeConfig(**base)


def read_csv(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_bo_loop_counts_budget_and_writes_outputs(tmp_path):
    problem = synthetic_problem()
    summary = run_bo(problem, small_config(), tmp_path)
    assert problem.calls == [3, 3, 3, 3]  # seeds x iterations batches of 3
    rows = read_csv(tmp_path / "proposals.csv")
    assert len(rows) == 12 == summary["evaluations"]
    assert {(r["seed"], r["iteration"]) for r in rows} == {(s, i) for s in "01" for i in "01"}
    assert [r["index"] for r in rows[:3]] == ["0", "1", "2"]
    n_valid = sum(r["valid"] == "True" for r in rows)
    assert summary["valid"] == n_valid
    for r in rows:  # invalid rows have no string and no score
        assert (r["string"] == "") == (r["valid"] == "False") == (r["score"] == "")
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["evaluations"] == 12 and on_disk["initial_data"] == "synthetic"
    assert on_disk["fraction_valid"]["n"] == 2 and math.isfinite(on_disk["gp_test_rmse"]["mean"])
    assert (tmp_path / "best_vs_evaluations.png").read_bytes()[:4] == b"\x89PNG"
    top = summary["top"]
    assert [t["score"] for t in top] == sorted([t["score"] for t in top], reverse=True)
    # proposals stay inside the box of the initial latents, and a proposal is valid exactly
    # where the "decoder" succeeds (z[0] <= 1.2)
    z0 = [float(r["z0"]) for r in rows]
    lo, hi = problem.z[:, 0].min().item(), problem.z[:, 0].max().item()
    assert all(lo - 1e-9 <= v <= hi + 1e-9 for v in z0)
    assert [r["valid"] == "True" for r in rows] == [v <= 1.2 for v in z0]


def test_bo_improves_on_initial_data(tmp_path):
    problem = synthetic_problem(n=60)
    cfg = small_config(seeds=1, iterations=3, batch=4, num_restarts=4, raw_samples=128)
    summary = run_bo(problem, cfg, tmp_path)
    best_init = float(np.nanmax(problem.scores))
    assert summary["top"][0]["score"] > best_init  # a 4-d quadratic is easy for EI


def test_resume_continues_and_matches_uninterrupted_run(tmp_path):
    straight = run_bo(synthetic_problem(), small_config(seeds=1, iterations=2), tmp_path / "a")
    problem = synthetic_problem()
    run_bo(problem, small_config(seeds=1, iterations=1), tmp_path / "b")  # "killed" after 1 iteration
    resumed = run_bo(problem, small_config(seeds=1, iterations=2), tmp_path / "b")
    assert problem.calls == [3, 3]  # the finished iteration was not redone
    a, b = read_csv(tmp_path / "a" / "proposals.csv"), read_csv(tmp_path / "b" / "proposals.csv")
    assert [r["string"] for r in a] == [r["string"] for r in b]
    assert straight["top"] == resumed["top"]


def test_resume_refuses_other_settings(tmp_path):
    run_bo(synthetic_problem(), small_config(seeds=1, iterations=1), tmp_path)
    with pytest.raises(ValueError, match="different run"):
        run_bo(synthetic_problem(), small_config(seeds=1, iterations=1, batch=2), tmp_path)


def test_turbo_and_minimisation(tmp_path):
    problem = synthetic_problem(higher_is_better=False)
    summary = run_bo(problem, small_config(strategy="turbo", seeds=1), tmp_path)
    assert summary["strategy"] == "turbo" and summary["evaluations"] == 6
    top = [t["score"] for t in summary["top"]]
    assert top == sorted(top)  # lower is better
    state = torch.load(tmp_path / "state" / "seed_0.pt", weights_only=True)
    assert state["turbo"]["length"] > 0 and state["iteration"] == 2


def test_trust_region_rules():
    tr = TrustRegion.create(dim=56, batch=50, best_value=1.0)
    assert tr.failure_tolerance == 2
    lo, hi = tr.bounds(torch.full((56,), 0.5, dtype=torch.float64))
    assert torch.allclose(hi - lo, torch.full((56,), 0.8, dtype=torch.float64))
    ls = torch.ones(56, dtype=torch.float64)
    ls[0] = 4.0
    lo, hi = tr.bounds(torch.full((56,), 0.5, dtype=torch.float64), ls)
    assert (hi - lo)[0] > (hi - lo)[1] and torch.all(lo >= 0) and torch.all(hi <= 1)
    t = tr.update(0.5).update(0.5)  # two failures halve the region
    assert t.length == pytest.approx(0.4) and t.best_value == 1.0
    for v in (2.0, 3.0, 4.0):  # three successes double it (capped at 1.6)
        tr = tr.update(v)
    assert tr.length == pytest.approx(1.6) and tr.best_value == 4.0
    small = TrustRegion(length=0.5 ** 7, failure_tolerance=1)
    assert small.update(-1.0).restarts == 1 and small.update(-1.0).length == 0.8


def test_report_dedups_each_decoding_by_its_own_canonical_form():
    """Voted and argmax decodes of the same proposals are ranked separately, each deduplicated
    by its own canonical form (a voted string's form must not hide distinct argmax strings)."""
    from molshape.bo.report import outcome

    def rec(i, voted, argmax, score, a_score):
        return {"seed": 0, "iteration": 0, "index": i, "string": voted, "canonical": voted.upper(), "score": score,
                "argmax_string": argmax, "argmax_canonical": argmax.upper(), "argmax_score": a_score}

    records = [rec(0, "a", "x", 1.0, 5.0), rec(1, "A", "y", 2.0, 4.0), rec(2, "b", "X", 3.0, 6.0)]
    voted = outcome(records, True)
    assert [t["string"] for t in voted["top"]] == ["b", "A"]  # "a" and "A" are one molecule
    argmax = outcome(records, True, "argmax_string", "argmax_score")
    assert [t["string"] for t in argmax["top"]] == ["X", "y"]  # "x" and "X" are one; "y" is not hidden


def test_config_validation():
    with pytest.raises(ValueError, match="strategy"):
        OptimizeConfig(strategy="random")
    with pytest.raises(ValueError, match="batch"):
        OptimizeConfig(batch=0)
    with pytest.raises(ValueError, match="surrogate"):
        SurrogateConfig(kind="big")


# ---------------------------------------------------------------- with a real (tiny, untrained) model


def tiny_checkpoint(grammar: str, lines: list[str], out) -> tuple:
    """(checkpoint, data file) of an untrained small model whose split is the data file's."""
    from molshape.core.checkpoint import save_checkpoint
    from molshape.data.datasets import load_dataset
    from molshape.gvae.model import PRESETS, build_model

    data_file = out / "data.txt"
    data_file.write_text("\n".join(lines) + "\n")
    data = load_dataset(grammar, data_file, progress=False, workers=1)
    cfg = PRESETS[grammar]["cpu"].replace(dec_hidden=32, dec_layers=1, enc_dense=32)
    torch.manual_seed(0)
    model = build_model(cfg)
    ckpt = {"model": model.state_dict(), "model_config": cfg.to_dict(), "grammar": grammar,
            "grammar_hash": model.grammar.hash if hasattr(model, "grammar") else None, "kind": "grammar",
            "data": {"source": data.source, "sha256": data.source_sha256}, "split": data.split}
    from molshape.grammar.cfg import load_grammar

    ckpt["grammar_hash"] = load_grammar(grammar).hash
    path = save_checkpoint(ckpt, out / "best.pt")
    return path, data_file


def cli(*args: str) -> dict:
    from click.testing import CliRunner

    from molshape.cli import main

    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout[res.stdout.index("{"):])


def test_cli_expr_data_init_smoke_and_cache(expr_sample, tmp_path):
    from molshape.core.runtime import cache_dir

    ckpt, data = tiny_checkpoint("expr", expr_sample[:300], tmp_path)
    out = tmp_path / "bo"
    s = cli("optimize", "--checkpoint", str(ckpt), "--data", str(data), "--init", "data", "--smoke",
            "--surrogate", "exact", "--device", "cpu", "--out", str(out), "--json")
    assert s["initial_data"].startswith("data:data.txt") and s["n_initial"] == 64
    assert s["evaluations"] == 4 and s["target"] == "expr" and s["higher_is_better"] is False
    rows = read_csv(out / "proposals.csv")
    assert len(rows) == 4 and all(r["valid"] in ("True", "False") for r in rows)
    for r in rows:
        if r["valid"] == "True":  # the recorded score is the expression's own score
            from molshape.scoring.expr_score import expression_score

            assert float(r["score"]) == pytest.approx(expression_score(r["string"]))
    assert json.loads((out / "config.json").read_text())["n_init"] == 64
    cached = sorted(p.name.split("-")[0] for p in (cache_dir() / "optimize").iterdir())
    assert cached == ["latents", "scores"]
    # a second run with another seed reuses the encoded, scored initial data
    s2 = cli("optimize", "--checkpoint", str(ckpt), "--data", str(data), "--init", "data", "--smoke",
             "--surrogate", "exact", "--device", "cpu", "--out", str(tmp_path / "bo2"), "--json")
    assert s2["n_initial"] == 64 and len(list((cache_dir() / "optimize").iterdir())) == 2


def test_cli_expr_prior_init_with_attempts(tmp_path):
    ckpt, _ = tiny_checkpoint("expr", ["x+1", "sin(x)*2", "x*x", "exp(x)/3"] * 5, tmp_path)
    out = tmp_path / "bo"
    s = cli("optimize", "--checkpoint", str(ckpt), "--init", "prior", "--n-init", "40", "--smoke",
            "--attempts", "3", "--strategy", "turbo", "--surrogate", "exact", "--device", "cpu",
            "--out", str(out), "--json")
    assert s["initial_data"].startswith("prior (") and s["n_initial"] == 40
    assert s["attempts"] == 3 and s["argmax_decoding"]["evaluations"] == 4
    rows = read_csv(out / "proposals.csv")
    assert "argmax_string" in rows[0] and len(rows) == 4


@pytest.mark.slow
def test_cli_smiles_logp(zinc_sample, tmp_path):
    """Penalized logP end to end; an untrained decoder mostly fails, which must be counted, not crash."""
    ckpt, data = tiny_checkpoint("smiles", zinc_sample[:300], tmp_path)
    out = tmp_path / "bo"
    s = cli("optimize", "--checkpoint", str(ckpt), "--data", str(data), "--smoke", "--batch", "3",
            "--n-init", "40", "--surrogate", "svgp", "--device", "cpu", "--out", str(out), "--json")
    assert s["initial_data"].startswith("data:") and s["evaluations"] == 3 and s["target"] == "logp"
    rows = read_csv(out / "proposals.csv")
    assert len(rows) == 3
    assert all((r["valid"] == "True") == (r["reason"] == "") for r in rows)
    assert s["valid"] == sum(r["valid"] == "True" for r in rows)
    assert (out / "best_vs_evaluations.png").is_file()


def test_cli_workers_give_the_serial_run(expr_sample, tmp_path):
    """Seeds in 2 spawned processes: the same proposals as one process, and a resumable state per seed."""
    ckpt, data = tiny_checkpoint("expr", expr_sample[:300], tmp_path)
    common = ["optimize", "--checkpoint", str(ckpt), "--data", str(data), "--init", "data", "--smoke",
              "--seeds", "2", "--surrogate", "exact", "--device", "cpu", "--json"]
    serial = cli(*common, "--out", str(tmp_path / "serial"))
    parallel = cli(*common, "--workers", "2", "--out", str(tmp_path / "parallel"))
    rows_s, rows_p = read_csv(tmp_path / "serial" / "proposals.csv"), read_csv(tmp_path / "parallel" / "proposals.csv")
    assert len(rows_p) == 8 and sorted({r["seed"] for r in rows_p}) == ["0", "1"]
    assert [(r["seed"], r["string"], r["score"]) for r in rows_p] == [(r["seed"], r["string"], r["score"]) for r in rows_s]
    assert parallel["fraction_valid"] == serial["fraction_valid"]
    assert sorted(p.name for p in (tmp_path / "parallel" / "state").iterdir()) == ["seed_0.pt", "seed_1.pt"]
    from molshape.core.checkpoint import load_checkpoint

    pids = {m["pid"] for s in (0, 1) for m in load_checkpoint(tmp_path / "parallel" / "state" / f"seed_{s}.pt")["metrics"]}
    assert os.getpid() not in pids  # the iterations ran in the workers, not in this process


def test_data_init_starts_from_exactly_the_models_training_strings(tmp_path):
    """A model trained with --limit indexes the limited data; --init data must use those rows."""
    from molshape.bo.problem import build_problem, initial_rows
    from molshape.core.checkpoint import save_checkpoint
    from molshape.data.datasets import load_dataset
    from molshape.data.trained import training_strings
    from molshape.grammar.cfg import load_grammar
    from molshape.grammar.expressions import generate_expressions
    from molshape.gvae.checkpoint import ModelCheckpoint
    from molshape.gvae.generation import encode_strings
    from molshape.gvae.model import PRESETS, build_model

    grammar = load_grammar("expr")
    data_file = tmp_path / "data.txt"
    data_file.write_text("\n".join(generate_expressions(grammar, 3000, seed=0)) + "\n")
    limited = load_dataset("expr", data_file, limit=300, progress=False, workers=1)
    full = load_dataset("expr", data_file, progress=False, workers=1)
    cfg = PRESETS["expr"]["cpu"].replace(dec_hidden=32, dec_layers=1, enc_dense=32)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    ckpt = {"model": model.state_dict(), "model_config": cfg.to_dict(), "grammar": "expr", "kind": "grammar",
            "grammar_hash": grammar.hash, "train_config": {"limit": 300},
            "data": {"source": limited.source, "sha256": limited.source_sha256}, "split": limited.split}
    path = save_checkpoint(ckpt, tmp_path / "best.pt")
    ckpt = ModelCheckpoint.load(path)
    want = training_strings(ckpt, limited)
    assert len(want) == 300
    # the rows mean other strings in the full data set: the lookup must not use it
    assert sum(full.strings[int(i)] == s for i, s in zip(ckpt.split["train"], want)) < 300

    prepared, rows = initial_rows(ckpt, grammar, data_file, None, 0)
    assert [prepared.strings[int(i)] for i in rows] == want
    problem = build_problem(model, grammar, "expr", checkpoint=ckpt, checkpoint_path=path, init="data",
                            data=data_file)
    assert problem.source.endswith("(300 training rows)")
    assert torch.equal(problem.z, encode_strings(model, grammar, want).double())
