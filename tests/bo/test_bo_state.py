"""molshape.bo.state / loop.step / folder: seed states, the pure step, the run folder's rules."""

from __future__ import annotations

import json

import pytest
import torch

from molshape.bo.folder import check_resume, fresh_folder, run_folder
from molshape.bo.loop import initial_state, problem_fingerprint, step
from molshape.core.runtime import seeded_globally
from molshape.bo.state import SeedState, load_state, save_state
from molshape.core.errors import OutputRefused
from molshape.core.rundir import RunLock, RunLocked
from test_optimize import small_config, synthetic_problem


def test_step_is_pure_and_depends_on_the_state_alone() -> None:
    problem, cfg = synthetic_problem(), small_config(seeds=1, iterations=2, strategy="turbo")
    s0 = initial_state(problem, cfg, seed=3, fingerprint="f")
    X0, Y0, turbo0 = s0.X.clone(), s0.Y.clone(), s0.turbo
    torch.manual_seed(123)
    before = torch.get_rng_state()
    s1 = step(problem, cfg, s0)
    # the caller's global generator is where it was: the step drew from its own seed
    assert torch.equal(torch.get_rng_state(), before)
    # the input state is untouched
    assert s0.iteration == 0 and s0.records == [] and s0.metrics == [] and s0.turbo == turbo0
    assert torch.equal(s0.X, X0) and torch.equal(s0.Y, Y0)
    assert s1.iteration == 1 and len(s1.records) == cfg.batch and s1.X.shape[0] == X0.shape[0] + cfg.batch
    assert [r["index"] for r in s1.records] == [0, 1, 2] and {r["seed"] for r in s1.records} == {3}
    assert s1.turbo is not None and s1.turbo.best_value >= turbo0.best_value
    # the same state steps to the same proposals, whatever the global generator holds
    torch.manual_seed(999)
    again = step(problem, cfg, s0)
    assert torch.equal(again.X, s1.X) and [r["string"] for r in again.records] == [r["string"] for r in s1.records]


def test_seeded_globally_restores_the_callers_generator() -> None:
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    with seeded_globally(11):
        inside = torch.rand(3)
    assert torch.equal(torch.rand(3), expected)
    with seeded_globally(11):
        assert torch.equal(torch.rand(3), inside)


def test_seed_state_round_trip_and_strict_keys(tmp_path) -> None:
    problem, cfg = synthetic_problem(), small_config(seeds=1, iterations=1, strategy="turbo")
    fp = problem_fingerprint(problem, cfg)
    state = step(problem, cfg, initial_state(problem, cfg, 0, fp))
    d = state.to_dict()
    assert set(d) == {"fingerprint", "seed", "iteration", "lo", "hi", "X", "Y", "X_test", "Y_test", "initial_best",
                      "turbo", "records", "metrics"}
    assert isinstance(d["turbo"], dict)  # the file holds plain values (weights_only loading)
    path = save_state(state, tmp_path / "seed_0.pt")
    back = load_state(path, fp)
    assert back.turbo == state.turbo and back.records == state.records and torch.equal(back.X, state.X)
    with pytest.raises(ValueError, match="unknown keys \\['extra'\\]"):
        SeedState.from_dict({**d, "extra": 1})
    with pytest.raises(ValueError, match="missing keys \\['metrics'\\]"):
        SeedState.from_dict({k: v for k, v in d.items() if k != "metrics"})
    with pytest.raises(ValueError, match="different run"):
        load_state(path, "another fingerprint")
    assert load_state(tmp_path / "absent.pt", fp) is None


def test_a_state_file_of_another_format_is_refused_with_a_sentence(tmp_path) -> None:
    from molshape.bo.run import run_bo
    from molshape.core.checkpoint import load_checkpoint, save_checkpoint

    problem, cfg = synthetic_problem(), small_config(seeds=1, iterations=1)
    run_bo(problem, cfg, tmp_path)
    path = tmp_path / "state" / "seed_0.pt"
    raw = load_checkpoint(path)
    raw["format"] = 2
    save_checkpoint(raw, path)
    with pytest.raises(ValueError, match="seed_0.pt: not a BO seed state of this molshape version"):
        run_bo(problem, small_config(seeds=1, iterations=2), tmp_path)


def test_run_folder_resumes_the_same_run_and_refuses_others(tmp_path) -> None:
    out = tmp_path / "run"
    config = {"api": "molshape.optimize", "checkpoint": str(tmp_path / "m.pt"), "target": "expr", "device": "cpu",
              "optimize": {"batch": 3, "seeds": 1, "iterations": 1}}
    with run_folder(out, config) as resuming:
        assert not resuming and (out / ".lock").is_file()
        with pytest.raises(RunLocked):
            RunLock(out).acquire()
        (out / "summary.json").write_text("{}")
    assert json.loads((out / "config.json").read_text())["optimize"]["batch"] == 3
    # the CLI's record of how it ran, another device, more iterations: the same run
    same = {**config, "argv": ["molshape"], "command": "optimize", "device": "cuda",
            "optimize": {"batch": 3, "seeds": 2, "iterations": 4}}
    del same["api"]
    with run_folder(out, same) as resuming:
        assert resuming
    assert json.loads((out / "config.json").read_text())["optimize"]["iterations"] == 4
    with pytest.raises(OutputRefused, match=r"other settings \(optimize.batch\)"):
        check_resume(out, {**config, "optimize": {"batch": 5}})
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(OutputRefused, match="no optimize run"):
        check_resume(other, config)
    with pytest.raises(OutputRefused, match="not empty"):
        with fresh_folder(other, config):
            pass
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_api_optimize_locks_checks_and_records_its_folder(tmp_path) -> None:
    """molshape.optimize into a folder: config.json written, the same call resumes, other settings refused."""
    import molshape

    m = molshape.load("expr")
    opts = dict(init="prior", n_init=20, seeds=1, iterations=1, batch=2, num_restarts=1, raw_samples=8,
                mc_samples=8, maxiter=5, surrogate={"kind": "exact"})
    out = tmp_path / "bo"
    first = molshape.optimize(m, "expr", out, **opts)
    config = json.loads((out / "config.json").read_text())
    assert config["api"] == "molshape.optimize" and config["optimize"]["surrogate"]["kind"] == "exact"
    grown = molshape.optimize(m, "expr", out, **{**opts, "iterations": 2})
    assert len(grown.proposals) == 4 and grown.proposals.head(2).equals(first.proposals)
    with pytest.raises(OutputRefused, match="other settings"):
        molshape.optimize(m, "expr", out, **{**opts, "batch": 3})
    with RunLock(out), pytest.raises(RunLocked):
        molshape.optimize(m, "expr", out, **opts)


def test_library_default_surrogate_is_the_gvae_protocols() -> None:
    from molshape.bo.config import OptimizeConfig, SurrogateConfig
    from molshape.cli.optimize import PROTOCOLS

    assert SurrogateConfig().kind == "svgp" == PROTOCOLS["gvae"]["surrogate"]
    assert OptimizeConfig().surrogate.kind == "svgp"


def test_a_run_from_before_the_realism_gate_resumes_ungated(tmp_path) -> None:
    out = tmp_path / "old"
    out.mkdir()
    old = {"target": "logp", "optimize": {"batch": 3}}  # written before config.json had realism_gate
    (out / "config.json").write_text(json.dumps(old))
    (out / "summary.json").write_text("{}")
    assert check_resume(out, {**old, "realism_gate": False})
    with pytest.raises(OutputRefused, match=r"other settings \(realism_gate\)"):
        check_resume(out, {**old, "realism_gate": True})
