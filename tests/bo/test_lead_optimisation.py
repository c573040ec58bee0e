"""Constrained, multi-objective and lead searches (molshape.bo.constrained / leads / pareto),
their CLI and API, and the lead-optimisation benchmark script, with tiny budgets."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import molshape
from molshape.bo.constrained import Region, SearchConfig, run_search
from molshape.bo.outcomes import parse_constraint
from molshape.bo.pareto import hypervolume, pareto_mask
from molshape.cli import main
from molshape.scoring.targets import resolve_objectives

LEAD = "CCOc1ccccc1C(=O)NC"
TINY = dict(budget=8, n_init=4, batch=4)


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def zinc_model():
    torch.set_num_threads(1)
    return molshape.load("zinc")


def test_parse_constraint_is_strict():
    c = parse_constraint(" qed >= 0.5 ")
    assert (c.name, c.op, c.bound) == ("qed", ">=", 0.5)
    assert list(c.satisfied(np.array([0.4, 0.5, np.nan]))) == [False, True, False]
    assert parse_constraint("sa<=4").slack(np.array([3.0])) == -1.0
    for bad in ("qed>0.5", "qed>=", "qed>=0.5;x", "__import__('os')>=1", "qed>=1+1", ""):
        with pytest.raises(ValueError, match="not of the form"):
            parse_constraint(bad)
    with pytest.raises(ValueError, match="unknown property 'mass'"):
        parse_constraint("mass<=500", ("qed", "sa"))


def test_targets_resolve_names_lists_and_functions():
    objs = resolve_objectives("plogp,qed,sa")
    assert [(o.name, o.higher_is_better) for o in objs] == [("plogp", True), ("qed", True), ("sa", False)]
    from molshape.scoring.chem import logp, ring_penalty, sa_score

    plogp = objs[0].values(["C1CCCCCCCCC1CC", None])
    assert ring_penalty("C1CCCCCCCCC1CC") == -4.0 and math.isnan(plogp[1])
    assert plogp[0] == pytest.approx(logp("C1CCCCCCCCC1CC") - sa_score("C1CCCCCCCCC1CC") - 4.0)
    fsum = resolve_objectives("math:fsum")[0]
    assert fsum.fn is math.fsum
    own = resolve_objectives(lambda smiles: [len(s) for s in smiles])[0]
    assert list(own.values(["CC", None])[:1]) == [2.0] and math.isnan(own.values(["CC", None])[1])
    for bad in ("banana", "os:path.join", "no_such_module_x:f", "math:pi"):
        with pytest.raises(ValueError):
            resolve_objectives(bad)


def test_pareto_mask_is_non_dominated():
    Y = np.random.default_rng(0).normal(size=(200, 2))
    Y[5] = np.nan
    mask = pareto_mask(Y)
    front, rest = Y[mask], Y[~mask & np.isfinite(Y).all(1)]
    assert 1 <= len(front) < 30 and not mask[5]
    for p in front:  # nothing dominates a front point
        assert not ((Y[np.isfinite(Y).all(1)] >= p).all(1) & (Y[np.isfinite(Y).all(1)] > p).any(1)).any()
    for p in rest:  # every other point is dominated by the front
        assert ((front >= p).all(1) & (front > p).any(1)).any()
    assert hypervolume(front, [-5, -5]) == pytest.approx(hypervolume(Y, [-5, -5]))
    assert hypervolume(np.array([[1.0, 1.0]]), [0, 0]) == pytest.approx(1.0)


def _synthetic(calls: list, with_constraint: bool = True):
    """4-d: maximise the sum of z; feasible only where z[0] <= -0.5 (a quarter of the box)."""

    def evaluate(z):
        calls.append(z.shape[0])
        obj = z.sum(-1).numpy()
        slack = (z[:, 0] + 0.5).numpy()
        recs = [{"string": f"{v:.3f}", "valid": True, "feasible": bool(s <= 0)} for v, s in zip(obj, slack)]
        return recs, (np.stack([obj, slack], 1) if with_constraint else obj[:, None])

    return evaluate


def test_constraint_is_modelled_by_the_acquisition():
    """The objective pulls out of the feasible quarter; with the slack modelled, the proposals
    after the initial design stay far more often feasible than without it (no filter exists)."""
    region = Region(lo=-torch.ones(4, dtype=torch.float64), hi=torch.ones(4, dtype=torch.float64),
                    centers=torch.zeros(1, 4, dtype=torch.float64))
    cfg = SearchConfig(budget=18, n_init=8, batch=5, num_restarts=2, raw_samples=64)
    shares = {}
    for modelled in (True, False):
        calls: list[int] = []
        res = run_search(_synthetic(calls, modelled), region, 1, cfg)
        assert calls == [8, 5, 5]
        shares[modelled] = np.mean([r["feasible"] for r in res["records"] if r["iteration"] > 0])
    assert shares[True] >= shares[False] + 0.3


def test_region_keeps_to_the_prior_ball():
    centers = torch.zeros(2, 56, dtype=torch.float64)
    centers[1, 0] = 4.0
    region = Region.around(centers, 1.0, quantile=0.99)
    far = torch.full((3, 56), 3.0, dtype=torch.float64)
    pulled = region.project(far)
    dist = torch.cdist(pulled, centers).min(1).values
    assert torch.all(dist <= region.ball + 1e-9) and region.ball == pytest.approx(math.sqrt(83.513), rel=1e-3)
    near = torch.zeros(1, 56, dtype=torch.float64)
    assert torch.equal(region.project(near), near)


def test_refined_lead_starts_from_a_latent_that_decodes_to_it(zinc_model, tmp_path):
    lead = "CC(C)CO"  # the encoder's latent decodes to another molecule; 50 refinement steps bring it back
    assert zinc_model.decode(zinc_model.encode([lead]))[0] != lead
    runs = {}
    for name, search in (("encoder", SearchConfig(**TINY, refine_lead=0)), ("default", SearchConfig(**TINY))):
        r = molshape.optimize(zinc_model, "plogp", tmp_path / name, from_=[lead], similarity=0.2, search=search)
        runs[name] = r.summary["rows"][0]
    assert runs["encoder"]["lead_decodes_to"] != lead and runs["default"]["lead_decodes_to"] == lead
    res = CliRunner().invoke(main, ["optimize", "--target", "plogp", "--refine-lead", "5", "--threads", "1"])
    assert res.exit_code == 2 and "--refine-lead needs --from" in res.output
    with pytest.raises(ValueError, match="refine_lead"):
        SearchConfig(refine_lead=-1)


@pytest.mark.slow
def test_lead_is_kept_feasible_and_constraint_respected(zinc_model, tmp_path):
    from molshape.scoring.chem import qed
    from molshape.scoring.similarity import tanimoto

    r = molshape.optimize(zinc_model, "plogp", tmp_path / "run", from_=[LEAD, "C1CC"], similarity=0.2,
                          constraint=["qed>=0.5"], search=SearchConfig(**TINY))
    leads = r.leads()
    assert list(leads["status"]) == ["ok", "invalid"] and "syntax" in leads["reason"][1]
    row = r.summary["rows"][0]
    assert row["oracle_calls"] == 8
    recs = read_csv(tmp_path / "run" / "proposals.csv")
    assert len(recs) == 8 and recs[0]["call"] == "1"
    for rec in recs:  # the feasible flag is exactly the constraints
        if rec["valid"] == "True":
            ok = float(rec["similarity"]) >= 0.2 and float(rec["qed"]) >= 0.5
            assert (rec["feasible"] == "True") == ok
    if row["best"]:
        assert tanimoto([row["best"]], LEAD)[0] >= 0.2 and qed(row["best"]) >= 0.5
        assert row["improvement"] == pytest.approx(max(0.0, row["best_score"] - row["lead_score"]))
    else:
        assert row["improvement"] == 0.0
    assert (tmp_path / "run" / "leads.png").read_bytes()[:4] == b"\x89PNG"
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["usable_leads"] == 1 and s["failed_leads"][0]["line"] == 2 and 0 <= s["feasible_share"] <= 1


@pytest.mark.slow
def test_cli_pareto_front_and_hypervolume(tmp_path):
    out = tmp_path / "mo"
    res = CliRunner().invoke(main, ["optimize", "--target", "clogp,qed", "--budget", "12", "--n-init", "6",
                                    "--batch", "3", "--space", "latent", "--threads", "1", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["space"] == "latent" and s["hypervolume"]["oracle_calls"] == [6, 9, 12]
    assert len(s["hypervolume"]["random_prior"]) == 3
    assert s["hypervolume"]["bo"] == sorted(s["hypervolume"]["bo"])  # never shrinks
    front = np.array([[float(r["clogp"]), float(r["qed"])] for r in read_csv(out / "pareto.csv")])
    props = np.array([[float(r["clogp"]), float(r["qed"])] for r in read_csv(out / "proposals.csv")
                      if r["valid"] == "True"])
    for p in front:
        assert not ((props >= p).all(1) & (props > p).any(1)).any()
    for name in ("pareto.png", "hypervolume.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args, message", [
    (["--from", "CCO", "--similarity", "1.5"], ">= 0 and <= 1"),
    (["--similarity", "0.4"], "needs --from"),
    (["--target", "banana"], "banana"),
    (["--target", "math:pi"], "not callable"),
    (["--target", "no_such_module_x:f"], "cannot import"),
    (["--constraint", "qed>0.5"], "NAME>=NUMBER"),
    (["--constraint", "weight<=500"], "unknown property"),
])
def test_cli_usage_errors_create_nothing(tmp_path, args, message):
    out = tmp_path / "never"
    res = CliRunner().invoke(main, ["optimize", *args, "--out", str(out)])
    assert res.exit_code == 2 and message in res.output
    assert not out.exists()


def test_cli_no_lead_is_no_work(tmp_path):
    empty = tmp_path / "leads.txt"
    empty.write_text("\n# only a comment\n")
    out = tmp_path / "never"
    res = CliRunner().invoke(main, ["optimize", "--from", str(empty), "--out", str(out)])
    assert res.exit_code == 2 and "no lead" in res.output and not out.exists()


@pytest.mark.slow
def test_cli_bad_lead_row_and_exit_3(tmp_path):
    leads = tmp_path / "leads.txt"
    leads.write_text(f"{LEAD} 1.0\nnot_a_smiles 2.0\n")
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["optimize", "--from", str(leads), "--similarity", "0.3", "--target", "plogp",
                                    "--budget", "4", "--n-init", "4", "--threads", "1", "--out", str(out), "--json"])
    assert res.exit_code == 3, res.output
    s = json.loads(res.stdout)
    assert s["failed_leads"] == [{"line": 2, "lead": "not_a_smiles", "reason": s["failed_leads"][0]["reason"]}]
    rows = read_csv(out / "leads.csv")
    assert [r["status"] for r in rows] == ["ok", "invalid"] and rows[1]["line"] == "2" and rows[1]["reason"]


def test_benchmark_script_refuses_big_budget(capsys, monkeypatch):
    import runpy

    monkeypatch.setattr("sys.argv", ["lead_optimisation.py", "--budget", "101"])
    with pytest.raises(SystemExit) as e:
        runpy.run_path("scripts/lead_optimisation.py", run_name="__main__")
    assert e.value.code == 2 and "budget" in capsys.readouterr().err
