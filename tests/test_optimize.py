"""molshape.optimize: the BO loop on a synthetic problem (no model), resume, TuRBO, report."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from molshape.optimize import OptimizeConfig, Problem, run_bo
from molshape.surrogate import SurrogateConfig
from molshape.trust_region import TrustRegion

CENTER = torch.tensor([0.5, -0.5, 0.25, 0.0], dtype=torch.float64)


@pytest.fixture(autouse=True)
def _one_thread():
    # the 2 shared cores are oversubscribed: OpenMP spinning makes small GP fits 5x slower
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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
        for v in score(zq):
            ok = math.isfinite(v)
            out.append({"string": f"s{v:.4f}" if ok else None, "score": float(v)})
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
    # proposals stay inside the box of the training latents: their scores are plausible
    valid_scores = [float(r["score"]) for r in rows if r["valid"] == "True"]
    assert max(valid_scores) <= 0.0


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


def test_config_validation():
    with pytest.raises(ValueError, match="strategy"):
        OptimizeConfig(strategy="random")
    with pytest.raises(ValueError, match="batch"):
        OptimizeConfig(batch=0)
    with pytest.raises(ValueError, match="surrogate"):
        SurrogateConfig(kind="big")
