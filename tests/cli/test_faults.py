"""Nothing lost, no tracebacks: every failure case as a test.

Each failing case asserts the exit status, exactly one ``Error:`` line (no traceback) and
that no file that existed before the command changed. Read-only folders and full disks
need a file system to refuse writes: as a normal user a ``chmod``-ed folder does; as root
(who ignores permissions) a tiny read-only or full tmpfs is mounted where root may mount,
else the test is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

from molshape.cli import main

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_EXPR = ROOT / "molshape" / "pretrained" / "expr-gmm-cpu.pt"
TRAIN = ("train", "--grammar", "expr", "--limit", "200", "--batch-size", "50", "--hidden", "32", "--device", "cpu",
         "--no-progress", "--threads", "1")


# -- helpers ----------------------------------------------------------------------------
def cli(*args: object, input: str | bytes | None = None) -> Result:
    """Run molshape in-process (as the console script would, exceptions included)."""
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def error_line(res: Result) -> str:
    """The one ``Error:`` line of a failed command; fails on a traceback or several lines."""
    assert "Traceback" not in res.output, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    lines = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, res.stderr
    return lines[0]


def snapshot(*roots: Path) -> dict[Path, str]:
    """sha256 of every file under ``roots``."""
    files = [p for root in roots for p in ([root] if root.is_file() else sorted(root.rglob("*"))) if p.is_file()]
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def assert_unchanged(before: dict[Path, str]) -> None:
    for path, digest in before.items():
        assert path.is_file(), f"{path} was removed"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{path} changed"


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if ".tmp" in p.name]


def first_lines(src: Path, n: int, dest: Path) -> Path:
    """The first ``n`` lines of ``src`` (plain or .gz) as the plain file ``dest``."""
    from conftest import read_lines

    dest.write_text("\n".join(read_lines(src, n)) + "\n")
    return dest


def spawn(*args: object, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "molshape", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill_after(proc: subprocess.Popen, seconds: float) -> bool:
    """SIGKILL ``proc`` after ``seconds`` unless it ended first; whether it was killed."""
    try:
        proc.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def _mount_allowed() -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    probe = Path(os.environ.get("TMPDIR", "/tmp")) / f"molshape-mount-probe-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)]
    ok = subprocess.run(mount, capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", str(probe)], capture_output=True)
    probe.rmdir()
    return ok


MOUNT = _mount_allowed()


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder that refuses writes, holding ``old.txt`` and a copy of the shipped expression model.

    chmod for a normal user; as root a read-only tmpfs (root ignores permissions).
    """
    folder = tmp_path / "ro"
    if os.geteuid() != 0:
        folder.mkdir()
        (folder / "old.txt").write_text("old\n")
        shutil.copy(SHIPPED_EXPR, folder / "model.pt")
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if not MOUNT:
        pytest.skip("running as root, which chmod does not stop, and mounting a read-only file system is not allowed")
    with tmpfs(folder, "16m"):
        (folder / "old.txt").write_text("old\n")
        shutil.copy(SHIPPED_EXPR, folder / "model.pt")
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield folder


@pytest.fixture
def full_dir(tmp_path: Path) -> Iterator[Path]:
    """A 64 kB tmpfs, nearly full, holding a small ``old.jsonl`` (root only)."""
    if not MOUNT:
        pytest.skip("a full disk needs a tiny file system, and mounting one needs root (not available here)")
    with tmpfs(tmp_path / "full", "64k") as folder:
        (folder / "old.jsonl").write_text('{"line": 1}\n')
        (folder / "filler").write_bytes(b"\0" * 40_000)  # about 20 kB stay free
        yield folder


@pytest.fixture(scope="module")
def expr_data(expr_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,300 expressions as a plain data file (the standard split holds out 1,000)."""
    return first_lines(expr_path, 1300, tmp_path_factory.mktemp("data") / "expr.txt")


@pytest.fixture(scope="module")
def trained(expr_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch gmm run folder (copy it before changing anything)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    res = cli(*TRAIN, "--data", expr_data, "--epochs", "1", "--out", out)
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture
def run_copy(trained: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    return out


@pytest.fixture(scope="module")
def smiles_file(zinc_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return first_lines(zinc_path, 400, tmp_path_factory.mktemp("smi") / "mols.smi")


# -- data loss --------------------------------------------------------------------------
def test_fresh_train_into_a_run_folder_refuses(run_copy: Path, expr_data: Path) -> None:
    before = snapshot(run_copy)
    res = cli(*TRAIN, "--data", expr_data, "--epochs", "1", "--out", run_copy)
    assert res.exit_code == 2
    line = error_line(res)
    assert "--resume" in line and "--force" in line
    assert_unchanged(before)


def test_force_starts_over(run_copy: Path, expr_data: Path) -> None:
    (run_copy / "notes.txt").write_text("mine\n")
    res = cli(*TRAIN, "--data", expr_data, "--epochs", "1", "--model", "ae", "--out", run_copy, "--force")
    assert res.exit_code == 0, res.output
    assert json.loads((run_copy / "config.json").read_text())["model_config"]["objective"]["name"] == "ae"
    assert (run_copy / "notes.txt").read_text() == "mine\n"  # only the run's own files are replaced


def test_second_concurrent_train_refuses(run_copy: Path, expr_data: Path) -> None:
    from molshape.core.rundir import RunLock

    before = snapshot(run_copy)
    with RunLock(run_copy):  # a run in progress holds the folder's lock
        res = cli(*TRAIN, "--data", expr_data, "--epochs", "2", "--out", run_copy, "--resume")
    assert res.exit_code == 2 and "another run is writing" in error_line(res)
    assert_unchanged(before)


@pytest.mark.parametrize("extra, message", [
    (["--model", "vae"], "model 'gmm', not 'vae'"),
    (["--hidden", "64"], "hidden 32, not 64"),
    (["--components", "5"], "components 10, not 5"),
    (["--grammar", "smiles"], "grammar 'expr', not 'smiles'"),
])
def test_refused_resume_changes_nothing(run_copy: Path, expr_data: Path, extra: list[str], message: str) -> None:
    before = snapshot(run_copy)
    res = cli(*TRAIN, "--data", expr_data, "--epochs", "2", "--out", run_copy, "--resume", *extra)
    assert res.exit_code == 2 and message in error_line(res)
    assert_unchanged(before)  # config.json included


def test_resume_with_other_data_refuses(run_copy: Path, expr_data: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.txt"
    lines = expr_data.read_text().splitlines()
    other.write_text("\n".join(lines[1:] + lines[:1]) + "\n")
    before = snapshot(run_copy)
    res = cli(*TRAIN, "--data", other, "--epochs", "2", "--out", run_copy, "--resume")
    assert res.exit_code == 2 and "other data" in error_line(res)
    assert_unchanged(before)


def test_resume_cleans_stale_temp_files(run_copy: Path, expr_data: Path) -> None:
    (run_copy / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    res = cli(*TRAIN, "--data", expr_data, "--epochs", "2", "--out", run_copy, "--resume")
    assert res.exit_code == 0, res.output
    assert temp_files(run_copy) == []


def test_best_is_written_before_last(expr_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import molshape.training.fit as train_module

    order: list[str] = []
    real = train_module.save_checkpoint

    def recording(obj: dict, path: Path) -> Path:
        order.append(Path(path).name)
        return real(obj, path)

    monkeypatch.setattr(train_module, "save_checkpoint", recording)
    res = cli(*TRAIN, "--data", expr_data, "--epochs", "2", "--out", tmp_path / "run")
    assert res.exit_code == 0, res.output
    assert order[:2] == ["best.pt", "last.pt"] and order.count("last.pt") == 2  # epoch 1 always improves
    assert all(order[i + 1] == "last.pt" for i, name in enumerate(order) if name == "best.pt")


def test_refused_optimize_resume_keeps_its_config(tmp_path: Path) -> None:
    out = tmp_path / "bo"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"checkpoint": str(SHIPPED_EXPR), "target": "expr", "init": "prior",
                                                 "n_init": 99, "data": None, "attempts": 1,
                                                 "optimize": {"strategy": "turbo"}}))
    before = snapshot(out)
    res = cli("optimize", "--grammar", "expr", "--smoke", "--init", "prior", "--device", "cpu", "--threads", "1",
              "--out", out)
    assert res.exit_code == 2 and "other settings" in error_line(res)
    assert_unchanged(before)


@pytest.mark.parametrize("command", ["parse", "score", "decode"])
def test_output_equal_to_an_input_is_refused(command: str, tmp_path: Path) -> None:
    same = tmp_path / "same.txt"
    same.write_text("x+1\nsin(x)\n")
    before = snapshot(same)
    args = {"parse": ["parse", "--grammar", "expr", same, "-o", same],
            "score": ["score", "--target", "expr", "--input", same, "-o", same],
            "decode": ["decode", "--grammar", "expr", "--input", same, "-o", same, "--threads", "1"]}[command]
    res = cli(*args)
    assert res.exit_code == 2 and "is also an input" in error_line(res)
    assert_unchanged(before)


def test_failed_parse_leaves_an_existing_output(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"line": 1, "input": "CCO", "rules": [0]}\n')
    bad = tmp_path / "bad.smi"
    bad.write_bytes(b"CCO\nC\xff\xfeC\n")
    before = snapshot(tmp_path)
    res = cli("parse", bad, "-o", out)
    assert res.exit_code == 1 and "bad.smi: not UTF-8 text" in error_line(res) and "line 2" in error_line(res)
    assert_unchanged(before)
    assert temp_files(tmp_path) == []


def test_concurrent_parses_to_one_output_leave_one_whole_file(smiles_file: Path, tmp_path: Path) -> None:
    short = tmp_path / "short.smi"
    short.write_text("\n".join(smiles_file.read_text().splitlines()[:150]) + "\n")
    out = tmp_path / "out.jsonl"
    procs = [spawn("parse", src, "-o", out, "--workers", "1", cwd=tmp_path) for src in (smiles_file, short)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    records = [json.loads(line) for line in out.read_text().splitlines()]  # every line is whole JSON
    assert [r["line"] for r in records] in (list(range(1, 401)), list(range(1, 151)))


def test_full_disk_keeps_the_old_output(full_dir: Path, smiles_file: Path) -> None:
    before = snapshot(full_dir)
    for args in (["parse", smiles_file, "-o", full_dir / "old.jsonl"],
                 ["score", "--input", smiles_file, "-o", full_dir / "old.jsonl"]):
        res = cli(*args)
        assert res.exit_code == 1 and "No space left on device" in error_line(res), res.output
        assert_unchanged(before)
        assert temp_files(full_dir) == []


@pytest.mark.parametrize("seed", [0, 1])
def test_sigkill_during_training_never_loses_best(expr_data: Path, tmp_path: Path, seed: int) -> None:
    from molshape.core.checkpoint import load_checkpoint

    out = tmp_path / "run"
    proc = spawn(*TRAIN, "--data", expr_data, "--epochs", "4", "--out", out, cwd=tmp_path)
    killed = kill_after(proc, random.Random(seed).uniform(4.0, 9.0))
    if (out / "last.pt").exists():
        assert (out / "best.pt").is_file()
        for name in ("last.pt", "best.pt"):
            assert load_checkpoint(out / name)["epoch"] >= 1
        assert list(csv.DictReader((out / "metrics.csv").open()))  # whole, never half-written
        resume = ["--resume"]
    else:  # killed before the first checkpoint: only config.json (or nothing) is there
        resume = ["--force"]
    if killed:
        res = cli(*TRAIN, "--data", expr_data, "--epochs", "4", "--out", out, *resume)
        assert res.exit_code == 0, res.output
    assert load_checkpoint(out / "last.pt")["epoch"] == 4 and (out / "best.pt").is_file()
    assert temp_files(out) == []


@pytest.mark.full_data
@pytest.mark.parametrize("seed", [0, 1])
def test_sigkill_during_parsing_keeps_the_old_output(zinc_path: Path, tmp_path: Path, seed: int) -> None:
    from conftest import read_lines

    src = tmp_path / "big.smi"
    src.write_text("\n".join(read_lines(zinc_path, 20_000)) + "\n")
    out = tmp_path / "out.jsonl"
    out.write_text('{"line": 1}\n')
    proc = spawn("parse", src, "-o", out, "--workers", "1", cwd=tmp_path)
    killed = kill_after(proc, random.Random(seed).uniform(1.0, 5.0))
    lines = out.read_text().splitlines()
    if killed:
        assert lines == ['{"line": 1}']
    else:  # it finished first: then the output is whole
        assert len(lines) == 20_000 and all(json.loads(x)["line"] == i + 1 for i, x in enumerate(lines))


# -- hangs and runaway work -------------------------------------------------------------
def test_a_megabyte_line_is_refused_at_once(tmp_path: Path) -> None:
    src = tmp_path / "long.smi"
    src.write_text("C" * 1_000_000 + "\nCCO\n")
    res = cli("parse", src, "--json")
    assert res.exit_code == 3
    records = json.loads(res.stdout)["records"]
    assert "too long" in records[0]["error"] and "rules" in records[1]


def test_score_caps_the_input_length() -> None:
    res = cli("score", "C" * 100_000, "CCO", "--json")
    assert res.exit_code == 3
    rows = json.loads(res.stdout)["rows"]
    assert not rows[0]["valid"] and "longer than the 1,000" in rows[0]["reason"] and rows[1]["valid"]


def test_deeply_nested_expression_is_scored() -> None:
    res = cli("score", "--target", "expr", "(" * 400 + "x" + ")" * 400, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["rows"][0]["valid"] is True


def test_big_decode_says_its_cost_and_streams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from molshape.gvae import generation
    from molshape.cli import streaming

    monkeypatch.setattr(streaming, "ESTIMATE_FROM", 50)
    drawn: list[int] = []
    real_prior, real_decode = generation.prior_latents, generation.decode_latents

    def counted_prior(model, m: int, generator=None):
        drawn.append(m)
        return real_prior(model, m, generator)

    monkeypatch.setattr(generation, "prior_latents", counted_prior)
    out = tmp_path / "out.txt"
    out.write_text("old\n")
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # the probe (4 latents to warm up, then 64), two chunks, then the third: a Ctrl-C / kill
            raise KeyboardInterrupt
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(generation, "decode_latents", interrupted)
    run = ("decode", "--grammar", "expr", "--n", "100", "--chunk-size", "40", "-o", out, "--threads", "1")
    res = cli(*run)
    assert res.exit_code != 0
    assert "expected time" in res.stderr and "memory about" in res.stderr and "--resume" in res.stderr
    assert out.read_text() == "old\n"  # the old file stands until a complete one replaces it
    assert len((tmp_path / "out.txt.partial").read_text().splitlines()) == 80  # finished chunks survive
    assert drawn == [4, 64, 40, 40, 20]  # latents drawn per chunk, never all at once

    monkeypatch.setattr(generation, "decode_latents", real_decode)
    drawn.clear()
    res = cli(*run, "--resume", "--json")
    assert res.exit_code == 0, res.output
    assert drawn == [20]  # only the chunk that was cut off
    assert len(out.read_text().splitlines()) == json.loads(res.stdout)["n"] == 100
    assert json.loads(res.stdout)["chunks_skipped"] == 2
    resumed = out.read_text()
    res = cli(*run, "--json")  # without --resume: a new run, the same lines
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["chunks_run"] == 3 and out.read_text() == resumed
    assert not (tmp_path / "out.txt.partial").exists() and not (tmp_path / "out.txt.partial.json").exists()


# -- one sentence instead of a traceback -------------------------------------------------
@pytest.mark.parametrize("command", ["parse", "score", "decode", "train"])
def test_non_utf8_input(command: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"x+1\n\xff\xfex\n")
    args = {"parse": ["parse", "--grammar", "expr", bad], "score": ["score", "--target", "expr", "--input", bad],
            "decode": ["decode", "--grammar", "expr", "--input", bad, "--threads", "1"],
            "train": [*TRAIN, "--data", bad, "--out", tmp_path / "run"]}[command]
    res = cli(*args)
    assert res.exit_code == 1 and "bad.txt: not UTF-8 text" in error_line(res)


@pytest.mark.parametrize("target", ["/proc/molshape-x/out.jsonl", "/sys/molshape-x.jsonl", "/proc/out.jsonl"])
def test_output_under_proc_or_sys(target: str, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("x+1\n")
    res = cli("parse", "--grammar", "expr", src, "-o", target)
    assert res.exit_code == 1 and target in error_line(res)


def test_output_in_a_missing_folder_is_created(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("x+1\n")
    res = cli("parse", "--grammar", "expr", src, "-o", tmp_path / "new" / "sub" / "out.jsonl")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "new" / "sub" / "out.jsonl").read_text())["input"] == "x+1"


def test_output_in_a_read_only_folder(read_only_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("x+1\n")
    before = snapshot(read_only_dir)
    for args in (["parse", "--grammar", "expr", src, "-o", read_only_dir / "old.txt"],
                 ["score", "--target", "expr", "--input", src, "-o", read_only_dir / "new.csv"],
                 ["decode", "--grammar", "expr", "--n", "3", "-o", read_only_dir / "old.txt", "--threads", "1"]):
        res = cli(*args)
        assert res.exit_code == 1 and str(read_only_dir) in error_line(res)
    assert_unchanged(before)


def _bad_checkpoint(kind: str, path: Path) -> Path:
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = SHIPPED_EXPR.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "random":
        path.write_bytes(random.Random(0).randbytes(4096))
    elif kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind == "dict":
        torch.save({"weights": torch.zeros(3)}, path)
    elif kind == "list":
        torch.save([1, 2, 3], path)
    return path


@pytest.mark.parametrize("kind", ["empty", "truncated", "random", "text", "dict", "list"])
@pytest.mark.parametrize("command", ["decode", "evaluate", "optimize"])
def test_bad_checkpoints(command: str, kind: str, tmp_path: Path) -> None:
    ckpt = _bad_checkpoint(kind, tmp_path / "model.pt")
    before = snapshot(tmp_path)
    extra = {"decode": ["--n", "2"], "evaluate": ["--n", "2", "--out", tmp_path / "ev"],
             "optimize": ["--smoke", "--out", tmp_path / "bo"]}[command]
    res = cli(command, "--checkpoint", ckpt, "--device", "cpu", "--threads", "1", *extra)
    assert res.exit_code == 1
    line = error_line(res)
    assert str(ckpt) in line and "weights_only" not in res.output
    assert_unchanged(before)


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    from molshape.core.checkpoint import CheckpointError

    ckpt = _bad_checkpoint("random", tmp_path / "model.pt")
    res = cli("--debug", "decode", "--checkpoint", ckpt, "--n", "2")
    assert isinstance(res.exception, CheckpointError)


@pytest.mark.parametrize("args", [["decode", "--grammar", "expr", "--n", "2"], [*TRAIN, "--epochs", "1"]])
def test_unknown_device(args: list[str], tmp_path: Path) -> None:
    res = cli(*args, "--device", "banana", *(["--out", tmp_path / "run"] if args[0] == "train" else []))
    assert res.exit_code == 2 and "banana" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "run").exists()


def test_empty_training_data(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    res = cli(*TRAIN, "--data", empty, "--out", tmp_path / "run")
    assert res.exit_code == 1 and "empty.txt: the data file is empty" in error_line(res)
    assert not (tmp_path / "run").exists()


@pytest.mark.full_data
def test_evaluate_out_with_a_shipped_model(expr_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MOLSHAPE_RUNS_DIR")  # the default: ./runs
    res = cli("evaluate", "--grammar", "expr", "--data", expr_path, "--out", "DIR", "--n", "20", "--limit", "10",
              "--threads", "1", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["samples"]["n_samples"] == 20
    assert (tmp_path / "runs" / "evaluate.csv").is_file() and (tmp_path / "DIR" / "summary.json").is_file()


def test_evaluate_a_shipped_model_without_its_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # no GVAE file anywhere: the generated expressions are not what the model was trained on
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MOLSHAPE_RUNS_DIR")  # the default: ./runs
    monkeypatch.setenv("MOLSHAPE_DATA_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("MOLSHAPE_CACHE_DIR", str(tmp_path / "cache"))
    res = cli("evaluate", "--grammar", "expr", "--n", "5", "--threads", "1")
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "trained on (equation2_15_dataset.txt.gz, sha256 c98f492fa1e5); pass --data" in error_line(res)
    assert not (tmp_path / "runs").exists()


@pytest.mark.full_data
def test_evaluate_checkpoint_in_a_read_only_folder(read_only_dir: Path, expr_path: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MOLSHAPE_RUNS_DIR")  # the default: ./runs
    before = snapshot(read_only_dir)
    res = cli("evaluate", "--checkpoint", read_only_dir / "model.pt", "--data", expr_path, "--n", "10", "--limit", "10",
              "--threads", "1")
    assert res.exit_code == 0, res.output  # outputs go to runs/ when the checkpoint's folder is read-only
    assert (tmp_path / "runs" / "evaluate-model" / "summary.json").is_file()
    res = cli("evaluate", "--checkpoint", read_only_dir / "model.pt", "--data", expr_path, "--out", "DIR", "--n", "10",
              "--limit", "10", "--threads", "1")
    assert res.exit_code == 0, res.output
    assert len(list(csv.DictReader((tmp_path / "runs" / "evaluate.csv").open()))) == 2
    assert_unchanged(before)


def test_grammar_that_contradicts_the_checkpoint() -> None:
    res = cli("decode", "--checkpoint", SHIPPED_EXPR, "--grammar", "smiles", "--n", "2", "--threads", "1")
    assert res.exit_code == 2 and "trained on grammar 'expr', not 'smiles'" in res.output


def test_parse_a_directory(tmp_path: Path) -> None:
    res = cli("parse", tmp_path)
    assert res.exit_code == 2 and "is a directory" in res.output


def test_negative_lambda_rec(tmp_path: Path) -> None:
    res = cli(*TRAIN, "--lambda-rec", "-5", "--out", tmp_path / "run")
    assert res.exit_code == 2 and "--lambda-rec" in res.output
    assert not (tmp_path / "run").exists()


def test_all_invalid_score_input_exits_3(tmp_path: Path) -> None:
    src = tmp_path / "bad.smi"
    src.write_text("C1CC\nXx\n")
    res = cli("score", "--input", src, "--json")
    assert res.exit_code == 3 and json.loads(res.stdout)["valid"] == 0


@pytest.mark.parametrize("args", [
    ["parse", "--grammar", "expr", "-"],
    ["score", "--target", "expr", "x+1", "x+"],
    ["decode", "--grammar", "expr", "--n", "5", "--threads", "1"],
])
def test_json_is_one_document(args: list[str]) -> None:
    res = CliRunner().invoke(main, [*args, "--json"], input="x+1\nsin(\n")
    assert res.exit_code in (0, 3), res.output
    document = json.loads(res.stdout)  # the whole of stdout: one JSON document
    assert isinstance(document, dict) and any(k in document for k in ("records", "rows", "results"))


def test_gzip_input_that_is_not_gzip(tmp_path: Path) -> None:
    fake = tmp_path / "in.smi.gz"
    fake.write_text("CCO\n")
    res = cli("parse", fake)
    assert res.exit_code == 1 and "in.smi.gz: not a readable gzip file" in error_line(res)
    with gzip.open(tmp_path / "ok.smi.gz", "wt") as f:
        f.write("CCO\n")
    assert cli("parse", tmp_path / "ok.smi.gz").exit_code == 0
