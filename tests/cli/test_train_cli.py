"""``molshape train`` end to end: outputs, --json, --resume, errors, torchrun DDP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from molshape.core.checkpoint import load_checkpoint
from molshape.cli import main




def _args(expr_path, out, *extra: str) -> list[str]:
    return ["train", "--grammar", "expr", "--data", str(expr_path), "--limit", "200", "--batch-size", "50",
            "--hidden", "32", "--out", str(out), "--device", "cpu", "--no-progress", "--threads", "1", *extra]


def test_train_cli_writes_outputs_and_json(expr_path, tmp_path) -> None:
    out = tmp_path / "run"
    res = CliRunner().invoke(main, _args(expr_path, out, "--epochs", "1", "--json", "--model", "rae"))
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["epochs"] == 1 and summary["n_train"] == 200 and "test_recon_acc" in summary
    for name in ("config.json", "last.pt", "best.pt", "metrics.csv", "curves.png"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["model_config"]["objective"]["name"] == "rae" and config["model_config"]["dec_hidden"] == 32
    assert config["train_config"]["limit"] == 200

    # --resume with more epochs continues from epoch 1
    res = CliRunner().invoke(main, _args(expr_path, out, "--epochs", "2", "--json", "--model", "rae", "--resume"))
    assert res.exit_code == 0, res.output
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 2 and [h["epoch"] for h in ckpt["history"]] == [1, 2]


def test_resume_continues_on_the_subset_it_was_trained_on(expr_path, tmp_path) -> None:
    """The split holds row numbers of the --limit subset: resume reads that subset, or refuses another."""
    out = tmp_path / "run"
    res = CliRunner().invoke(main, _args(expr_path, out, "--epochs", "1"))
    assert res.exit_code == 0, res.output
    first = load_checkpoint(out / "last.pt")
    args = _args(expr_path, out, "--epochs", "2", "--resume", "--json")
    i = args.index("--limit")
    del args[i:i + 2]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["n_train"] == 200
    for k in ("train", "valid", "test"):
        assert load_checkpoint(out / "last.pt")["split"][k].tolist() == first["split"][k].tolist()
    res = CliRunner().invoke(main, [*args[:i], "--limit", "300", *args[i:]])
    assert res.exit_code == 2 and "--limit 200, not 300" in res.output


def test_train_cli_errors_name_the_problem(expr_path, tmp_path) -> None:
    res = CliRunner().invoke(main, _args(expr_path, tmp_path / "none", "--resume"))
    assert res.exit_code != 0 and "no checkpoint" in res.output
    res = CliRunner().invoke(main, _args(expr_path, tmp_path / "x", "--epochs", "0"))
    assert res.exit_code != 0 and "--epochs" in res.output
    res = CliRunner().invoke(main, ["train", "--help"])
    assert res.exit_code == 0 and "--preset" in res.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_ddp_two_processes_gloo(expr_path, tmp_path) -> None:
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "molshape", *_args(expr_path, out, "--epochs", "2", "--max-minutes", "0.002", "--json")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    # the time budget ends the run inside epoch 1 or before epoch 2; both ranks stop at the same
    # step (a rank that went on alone would hang in its next all-reduce)
    assert summary["world_size"] == 2 and summary["stopped_by_time_limit"]
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["train_config"]["batch_size"] == 50
