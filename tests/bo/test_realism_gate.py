"""The realism gate of latent BO: a flagged decode is rejected before the oracle, recorded
as rejected (not valid) and enters the GP as an invalid decode does; the opt-out scores it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from molshape.bo import problem as problem_module
from molshape.bo.loop import Problem, initial_state, step
from molshape.bo.realism_gate import gated_scores, rejections
from molshape.bo.run import run_bo
from tests.bo.test_optimize import read_csv, small_config

MACROCYCLE = "C1CCCCCCCCC1"  # a 10-membered ring


def test_rejections_name_the_flags():
    assert rejections(["CCO", MACROCYCLE, "C1#CCCCCCC1", "c1ccccc1", None]) == [
        None, "ring_over_8", "triple_bond_in_ring", None, None]


def test_gated_scores_call_the_oracle_only_on_what_passes():
    calls: list[list] = []

    def oracle(strings: list) -> np.ndarray:
        calls.append(list(strings))
        return np.array([float(len(s)) if s else np.nan for s in strings])

    scores, rejected = gated_scores(oracle, ["CCO", MACROCYCLE, None], gate=True)
    assert calls == [["CCO", None]] and rejected == [None, "ring_over_8", None]
    assert scores[0] == 3.0 and np.isnan(scores[1]) and np.isnan(scores[2])
    calls.clear()
    assert gated_scores(oracle, [MACROCYCLE], gate=False)[0].tolist() == [12.0]
    assert calls == [[MACROCYCLE]]
    calls.clear()
    assert np.isnan(gated_scores(oracle, [MACROCYCLE], gate=True)[0]).all() and calls == []


class _Decoded(list):
    def __init__(self, strings):
        super().__init__(strings)
        self.reasons = [None] * len(strings)


@pytest.fixture
def stub_problem(monkeypatch):
    """A molecule problem whose "decoder" writes the macrocycle for the first latent of every
    batch and chains of growing length otherwise; its oracle (chain length) logs its inputs."""
    from molshape.grammar.cfg import load_grammar

    scored: list[str] = []
    counter = iter(range(10_000))

    def decode(model, grammar, z, mode="argmax", constraints="auto", **kw):
        return _Decoded([MACROCYCLE if j == 0 else "C" * (2 + next(counter) % 7) for j in range(len(z))])

    def oracle(target, strings, **kw):
        scored.extend(strings)
        return np.array([float(len(s)) for s in strings])

    monkeypatch.setattr(problem_module, "decode_latents", decode)
    monkeypatch.setattr(problem_module, "score_values", oracle)
    grammar = load_grammar("smiles")

    def build(gate: bool) -> Problem:
        z = torch.randn(30, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        scores = -(z - 0.3).pow(2).sum(-1).numpy()
        evaluate = problem_module.make_evaluate(None, grammar, "logp", realism_gate=gate)
        return Problem(z, scores, evaluate, source="stub", kind="smiles", target="logp")

    return build, scored


def test_gate_rejects_a_flagged_proposal_unscored(stub_problem, tmp_path):
    build, scored = stub_problem
    problem, cfg = build(True), small_config(seeds=1, iterations=2, batch=3)
    state = initial_state(problem, cfg, seed=0)
    after = step(problem, cfg, state)
    first = after.records[0]
    assert first["string"] == MACROCYCLE and first["rejected"] == "ring_over_8"
    assert first["valid"] is False and first["score"] is None and first["reason"] == "unrealistic: ring_over_8"
    assert MACROCYCLE not in scored and len(scored) == 2
    # the surrogate sees the rejected point as an invalid decode: the worst objective so far
    assert float(after.Y[state.Y.shape[0]]) == float(state.Y.min())

    scored.clear()
    summary = run_bo(problem, cfg, tmp_path / "gated")
    gate = summary["realism_gate"]
    assert gate["enabled"] and gate["rejected"] == 2 and gate["rejected_by_flag"]["ring_over_8"] == 2
    assert summary["valid"] == 4 and summary["realism"]["ring_over_8"] == 0.0
    assert gate["decoded_realism"]["ring_over_8"] == pytest.approx(2 / 6)
    assert MACROCYCLE not in scored
    rows = read_csv(tmp_path / "gated" / "proposals.csv")
    assert [r["rejected"] for r in rows if r["string"] == MACROCYCLE] == ["ring_over_8"] * 2
    assert all(r["valid"] == "False" and r["score"] == "" for r in rows if r["string"] == MACROCYCLE)


def test_opt_out_scores_every_decode(stub_problem, tmp_path):
    build, scored = stub_problem
    summary = run_bo(build(False), small_config(seeds=1, iterations=2, batch=3), tmp_path / "open")
    assert scored.count(MACROCYCLE) == 2
    assert summary["valid"] == 6 and not summary["realism_gate"]["enabled"]
    assert summary["realism_gate"]["rejected"] == 0 and summary["realism"]["ring_over_8"] == pytest.approx(2 / 6)
    assert any(t["string"] == MACROCYCLE for t in summary["top"])  # 12 atoms: the stub oracle's best
    rows = read_csv(tmp_path / "open" / "proposals.csv")
    assert "rejected" not in rows[0]  # an ungated run writes the columns it always wrote


def test_cli_records_the_gate_and_its_opt_out(zinc_sample, tmp_path):
    """``--allow-unrealistic`` reaches the run: config.json and the summary say which way it ran."""
    import json

    from tests.bo.test_optimize import cli, tiny_checkpoint

    ckpt, data = tiny_checkpoint("smiles", zinc_sample[:300], tmp_path)
    for flag, gated in (([], True), (["--allow-unrealistic"], False)):
        out = tmp_path / f"bo-{gated}"
        s = cli("optimize", "--checkpoint", str(ckpt), "--data", str(data), "--smoke", "--batch", "3",
                "--n-init", "40", "--surrogate", "exact", "--device", "cpu", "--out", str(out), "--json", *flag)
        assert s["realism_gate"]["enabled"] is gated and s["evaluations"] == 3
        assert json.loads((out / "config.json").read_text())["realism_gate"] is gated
        rows = read_csv(out / "proposals.csv")
        assert ("rejected" in rows[0]) is gated
        assert all((r["valid"] == "True") == (r["reason"] == "") for r in rows)
