"""Candidate-pool search (molshape.bo.pool, molshape.bo.tanimoto) on real ZINC molecules: the
MinMax kernel, a Tanimoto GP that learns logP, the search's constraint and Pareto front, and
the CLI / API on the shipped model with a small pool."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy.stats import spearmanr

import molshape
from molshape.bo.constrained import SearchConfig
from molshape.bo.leads import SearchSpec, make_scorer
from molshape.bo.outcomes import parse_constraint
from molshape.bo.pareto import pareto_mask
from molshape.bo.pool import fit_pool_gp, pool_from_smiles, pool_order, run_pool_search
from molshape.bo.tanimoto import PoolTanimotoKernel, minmax_gram
from molshape.cli import main
from molshape.scoring.targets import resolve_objectives
from conftest import ZINC_SMALL


@pytest.fixture(scope="module")
def zinc_pool():
    smiles = [line.split()[0] for line in ZINC_SMALL.read_text().splitlines()[:1000]]
    return pool_from_smiles(smiles + [smiles[0], "not a smiles", "C1CCCCCCCCC1"])


def test_minmax_gram_is_the_count_tanimoto():
    c = torch.tensor(np.random.default_rng(0).integers(0, 4, size=(30, 12)), dtype=torch.float32)
    c[3] = 0  # an empty fingerprint is similar only to itself
    gram = minmax_gram(c)
    a, b = c[:, None, :], c[None, :, :]
    mx = torch.maximum(a, b).sum(-1)
    brute = torch.where(mx > 0, torch.minimum(a, b).sum(-1) / mx.clamp_min(1), torch.ones_like(mx))
    assert torch.allclose(gram, brute, atol=1e-6)
    assert torch.all(gram.diagonal() == 1) and torch.allclose(gram, gram.T)
    k = PoolTanimotoKernel(gram)
    x = torch.tensor([[[0.0], [5.0]], [[7.0], [3.0]]], dtype=torch.float64)  # batch 2 x 2 points
    assert torch.allclose(k(x, x).to_dense()[1, 0, 1], gram[7, 3].double())
    assert torch.allclose(k(x, x, diag=True), torch.ones(2, 2, dtype=torch.float64))


def test_pool_drops_repeats_invalid_and_unrealistic(zinc_pool):
    s = zinc_pool.stats
    assert (s["drawn"], s["invalid"], s["duplicates"], s["unrealistic"]) == (1003, 1, 1, 1)
    assert s["size"] == len(zinc_pool) == 1000 and zinc_pool.gram.shape == (1000, 1000)
    assert len(set(zinc_pool.smiles)) == len(zinc_pool)


def test_tanimoto_gp_ranks_held_out_logp(zinc_pool):
    """Fitted on 100 molecules, the GP's mean ranks 400 others by Crippen logP far better than
    chance (Spearman 0.66 here; chance is 0 +- 0.05)."""
    y = resolve_objectives("clogp")[0].values(zinc_pool.smiles)
    train, test = list(range(100)), list(range(100, 500))
    model = fit_pool_gp(zinc_pool, train, torch.tensor(y[train])[:, None])
    with torch.no_grad():
        mean = model.posterior(torch.tensor(test, dtype=torch.float64)[:, None]).mean[:, 0].numpy()
    assert spearmanr(mean, y[test]).correlation > 0.45


def test_pool_search_models_the_constraint_and_fronts_are_non_dominated(zinc_pool):
    """Maximising logP pulls away from QED >= 0.8; with the constraint modelled, far more of the
    chosen molecules meet it than without; every record's feasible flag is the constraint."""
    qed = resolve_objectives("qed")[0].values(zinc_pool.smiles)
    cfg = SearchConfig(budget=24, n_init=8, batch=8, seed=0)
    shares = {}
    for modelled in (True, False):
        spec = SearchSpec(resolve_objectives("clogp"), [parse_constraint("qed>=0.8")] if modelled else [], cfg=cfg)
        res = run_pool_search(make_scorer(spec, None), zinc_pool, 1, cfg)
        idx = [r["pool_index"] for r in res["records"]]
        assert len(set(idx)) == 24 and [r["iteration"] for r in res["records"]] == [0] * 8 + [1] * 8 + [2] * 8
        assert idx[:8] == list(pool_order(zinc_pool, 0)[:8])  # the random baseline's first molecules
        if modelled:
            assert all(r["feasible"] == (r["qed"] >= 0.8) for r in res["records"])
        shares[modelled] = float(np.mean(qed[idx[8:]] >= 0.8))
    assert shares[True] >= shares[False] + 0.2

    spec = SearchSpec(resolve_objectives("clogp,qed"), [parse_constraint("sa<=3")], cfg=cfg)
    res = run_pool_search(make_scorer(spec, None), zinc_pool, 2, cfg)
    Y = np.where(np.array([r["feasible"] for r in res["records"]])[:, None], res["Y"][:, :2], np.nan)
    front = Y[pareto_mask(Y)]
    assert len(front) >= 1 and all(r["sa"] <= 3 for r in res["records"] if r["feasible"])
    for p in front:  # no feasible proposal dominates a front point
        ok = np.isfinite(Y).all(1)
        assert not ((Y[ok] >= p).all(1) & (Y[ok] > p).any(1)).any()


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_cli_pool_search_writes_the_front_beside_random_pool_molecules(tmp_path):
    out = tmp_path / "pool"
    res = CliRunner().invoke(main, ["optimize", "--target", "clogp,qed", "--budget", "12", "--n-init", "6",
                                    "--batch", "3", "--pool-size", "200", "--constraint", "sa<=3.5",
                                    "--threads", "1", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["space"] == "pool" and s["pool"]["drawn"] == 200 and s["pool"]["size"] <= 200
    assert s["hypervolume"]["oracle_calls"] == [6, 9, 12] and s["hypervolume"]["bo"] == sorted(s["hypervolume"]["bo"])
    assert s["hypervolume"]["bo"][0] == pytest.approx(s["hypervolume"]["random_prior"][0])  # same initial design
    props = read_csv(out / "proposals.csv")
    assert len(props) == 12 and len({r["string"] for r in props}) == 12
    for r in props:
        assert (r["feasible"] == "True") == (float(r["sa"]) <= 3.5)
    front = np.array([[float(r["clogp"]), float(r["qed"])] for r in read_csv(out / "pareto.csv")])
    feasible = np.array([[float(r["clogp"]), float(r["qed"])] for r in props if r["feasible"] == "True"])
    for p in front:
        assert not ((feasible >= p).all(1) & (feasible > p).any(1)).any()
    assert s["realism"]["ring_over_8"] == 0 and s["random_prior"]["realism"]["triple_bond_in_ring"] == 0
    for name in ("pareto.png", "hypervolume.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_pool_refused_with_leads(tmp_path):
    out = tmp_path / "never"
    res = CliRunner().invoke(main, ["optimize", "--from", "CCO", "--space", "pool", "--out", str(out)])
    assert res.exit_code == 2 and "trust region" in res.output and not out.exists()
    with pytest.raises(ValueError, match="trust region"):
        SearchConfig(space="pool").search_space(2, with_leads=True)
    assert SearchConfig().search_space(2, with_leads=False) == "pool"
    assert SearchConfig().search_space(1, with_leads=False) == "latent"
    assert SearchConfig().search_space(2, with_leads=False, molecular=False) == "latent"


@pytest.mark.slow
def test_api_pool_search_matches_its_summary(tmp_path):
    torch.set_num_threads(1)
    m = molshape.load("zinc")
    r = molshape.optimize(m, "qed,sa", tmp_path / "api", search=SearchConfig(budget=8, n_init=4, batch=4, pool_size=100))
    assert r.summary["space"] == "pool" and len(r.proposals) == 8
    assert r.summary["baseline"].startswith("random molecules of the same pool")
