"""Outputs that would clobber other files, silent wrong results, numbers that go NaN.

The first part has one test (or a few) per rule, numbered as in docs/failure-behaviour.md's
list of rules; the rest covers the same rules across commands
(BOM and header lines, FIFOs as inputs, caches, signals).
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import signal
import socket
import stat
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch

from test_faults import (MOUNT, SHIPPED_EXPR, TRAIN, assert_unchanged, cli, error_line, expr_data,  # noqa: F401 - a fixture
                         snapshot, spawn, temp_files, tmpfs)


@pytest.fixture(scope="module")
def expr_model():
    import molshape

    return molshape.load("expr")


def _node(kind: str, path: Path) -> Path:
    """A FIFO, a listening Unix socket or a folder at ``path``."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))  # the socket file stays after the object is gone
        s.close()
    else:
        path.mkdir()
    return path


def _writing(command: str, src: Path, out: Path, decode_input: bool = False) -> list:
    """Arguments of ``parse`` / ``score`` / ``decode`` reading expressions from ``src`` (decode:
    two prior samples, or ``src`` with ``decode_input``) and writing ``-o out``."""
    decode = ["--input", src] if decode_input else ["--n", "2"]
    return {"parse": ["parse", "--grammar", "expr", src], "score": ["score", "--target", "expr", "--input", src],
            "decode": ["decode", "--grammar", "expr", *decode, "--threads", "1"]}[command] + ["-o", out]


def _kind(path: Path) -> int:
    return stat.S_IFMT(os.lstat(path).st_mode)


# -- 1. non-regular outputs -----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["fifo", "socket", "dir"])
@pytest.mark.parametrize("command", ["parse", "score", "decode"])
def test_1_non_regular_output_is_refused(command: str, kind: str, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("x+1\nsin(x)\n")
    out = _node(kind, tmp_path / "out")
    before = _kind(out)
    args = _writing(command, src, out)
    res = cli(*args)
    assert res.exit_code == 2 and str(out) in error_line(res)
    assert _kind(out) == before  # still a FIFO / socket / folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out"]  # no config, partial or temp beside it


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_1_non_regular_side_file_is_refused(kind: str, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("x+1\n")
    partial = _node(kind, tmp_path / "out.txt.partial")  # decode streams -o through <-o>.partial
    res = cli("decode", "--grammar", "expr", "--input", src, "-o", tmp_path / "out.txt", "--threads", "1")
    assert res.exit_code == 2 and "out.txt.partial" in error_line(res)
    assert _kind(partial) in (stat.S_IFIFO, stat.S_IFSOCK) and not (tmp_path / "out.txt").exists()


def test_1_library_writes_refuse_devices_and_links_to_them(tmp_path: Path) -> None:
    from molshape.core.atomic import atomic_path, write_text
    from molshape.core.errors import OutputRefused

    fifo = _node("fifo", tmp_path / "fifo")
    link = tmp_path / "stdout"
    link.symlink_to(fifo)  # as /dev/stdout -> /proc/self/fd/1 -> a pipe
    for target in (fifo, link):
        with pytest.raises(OutputRefused, match="FIFO"):
            write_text(target, "x")
        with pytest.raises(OutputRefused):
            with atomic_path(target):
                pass
    assert link.is_symlink() and _kind(fifo) == stat.S_IFIFO and temp_files(tmp_path) == []


# -- 2. evaluate --out into another command's run -------------------------------------------
@pytest.mark.parametrize("run", ["train", "optimize", "user"])
def test_2_evaluate_into_another_commands_folder_is_refused(run: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    if run == "train":
        (out / "config.json").write_text(json.dumps({"argv": ["molshape", "train"], "grammar": "expr",
                                                     "train_config": {"epochs": 1}}))
        shutil.copy(SHIPPED_EXPR, out / "best.pt")
    elif run == "optimize":
        (out / "config.json").write_text(json.dumps({"argv": ["molshape", "optimize"], "target": "expr",
                                                     "optimize": {"strategy": "ei"}}))
        (out / "summary.json").write_text("{}\n")
        (out / "proposals.csv").write_text("seed,iteration,index,valid,string,score\n")
    else:
        (out / "summary.json").write_text('{"mine": true}\n')
        (out / "notes.txt").write_text("mine\n")
    before = snapshot(out)
    res = cli("evaluate", "--grammar", "expr", "--out", out, "--n", "2", "--limit", "2", "--no-fcd", "--threads", "1")
    assert res.exit_code == 2 and "evaluate did not write" in error_line(res)
    assert_unchanged(before)
    assert sorted(p.name for p in out.iterdir()) == sorted(before_name.name for before_name in before)


def test_2_evaluate_folder_rules(tmp_path: Path) -> None:
    import click

    from molshape.cli.evaluate import _check_evaluate_folder

    own = tmp_path / "own"
    own.mkdir()
    (own / "config.json").write_text(json.dumps({"argv": [], "command": "evaluate", "checkpoint": "m.pt"}))
    (own / "summary.json").write_text("{}")
    _check_evaluate_folder(own, [])  # an earlier evaluation is replaced
    _check_evaluate_folder(tmp_path / "new", [])  # a folder that does not exist yet
    (own / "config.json").write_text(json.dumps({"argv": [], "command": "optimize"}))
    with pytest.raises(click.BadParameter, match="config.json"):
        _check_evaluate_folder(own, [])
    data = tmp_path / "d" / "samples.txt"
    data.parent.mkdir()
    data.write_text("x\n")
    with pytest.raises(click.BadParameter, match="is an input"):
        _check_evaluate_folder(data.parent, [data])


# -- 3. side files follow the output rules --------------------------------------------------
def test_3_nothing_is_written_beside_an_output(tmp_path: Path) -> None:
    src = tmp_path / "out.config.json"  # the name a config beside `parse -o out` would have had
    src.write_text("x+1\nsin(x)\n")
    before = snapshot(tmp_path)
    res = cli("parse", "--grammar", "expr", src, "-o", tmp_path / "out", "--json")
    assert res.exit_code == 0, res.output
    assert_unchanged(before)  # the input is kept as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.config.json"]
    assert json.loads(res.stdout)["config"]["grammar"] == "expr"


@pytest.mark.parametrize("command", ["parse", "score", "decode"])
def test_3_a_users_file_with_a_config_name_is_kept(command: str, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("x+1\n")
    out = tmp_path / "res.jsonl"
    mine = tmp_path / "res.jsonl.config.json"
    mine.write_text("my notes, not a molshape config\n")
    args = _writing(command, src, out, decode_input=True)
    res = cli(*args, "--json")
    assert res.exit_code == 0, res.output
    assert mine.read_text() == "my notes, not a molshape config\n" and out.is_file()
    assert json.loads(res.stdout)["config"]["argv"]  # the settings go in the summary instead
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "res.jsonl", "res.jsonl.config.json"]


def test_3_the_partial_file_is_never_an_input(tmp_path: Path) -> None:
    src = tmp_path / "out.txt.partial"
    src.write_text("x+1\n")
    before = snapshot(tmp_path)
    res = cli("decode", "--grammar", "expr", "--input", src, "-o", tmp_path / "out.txt", "--threads", "1")
    assert res.exit_code == 2 and "is also an input" in error_line(res)
    assert_unchanged(before)


def test_3_a_lock_file_molshape_did_not_write_is_kept(expr_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("my notes\n")
    before = snapshot(out)
    res = cli(*TRAIN, "--data", expr_data, "--epochs", "1", "--out", out)
    assert res.exit_code == 2 and "not a molshape lock file" in error_line(res)
    assert_unchanged(before)


# -- 4. a replaced file keeps its mode -----------------------------------------------------
@pytest.mark.parametrize("command", ["parse", "score", "decode"])
def test_4_replaced_output_keeps_its_mode(command: str, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("x+1\n")
    out = tmp_path / "private.txt"
    out.write_text("old\n")
    out.chmod(0o600)
    args = _writing(command, src, out)
    res = cli(*args)
    assert res.exit_code == 0, res.output
    assert out.read_text() != "old\n" and stat.S_IMODE(out.stat().st_mode) == 0o600


# -- 5. score --target expr reads whole lines -------------------------------------------------
def test_5_score_reads_expressions_in_the_data_sets_format(tmp_path: Path) -> None:
    src = tmp_path / "exprs.txt"
    src.write_text("x + sin ( x )\n1 + x\tmy-id\n")
    res = cli("score", "--target", "expr", "--input", src, "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["rows"]
    assert [r["input"] for r in rows] == ["x + sin ( x )", "1 + x"]
    whole = json.loads(cli("score", "--target", "expr", "x+sin(x)", "1+x", "--json").stdout)["rows"]
    assert [r["score"] for r in rows] == pytest.approx([r["score"] for r in whole])
    assert rows[0]["score"] == pytest.approx(0.7445, abs=1e-4)  # not x's 0.4876


# -- 6. numbers that go NaN -------------------------------------------------------------------
@pytest.mark.parametrize("option, value", [("--lr", "nan"), ("--lr", "inf"), ("--lambda-rec", "nan"),
                                           ("--lambda-rec", "inf"), ("--grad-clip", "nan"), ("--std", "inf"),
                                           ("--max-minutes", "nan"), ("--lr", "0"), ("--lr", "-1e-3")])
def test_6_train_refuses_non_finite_floats(option: str, value: str, expr_data: Path, tmp_path: Path) -> None:
    res = cli(*TRAIN, "--data", expr_data, "--epochs", "1", "--out", tmp_path / "run", option, value)
    assert res.exit_code == 2 and option in res.output and "Traceback" not in res.output
    assert not (tmp_path / "run").exists()


def test_6_every_float_option_is_finite() -> None:
    """No command takes a float option that lets NaN or infinity through."""
    import click

    from molshape.cli import COMMANDS, main
    from molshape.cli.common import FiniteFloat

    def commands(cmd: click.Command):
        yield cmd
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(click.Context(cmd)):
                yield from commands(cmd.get_command(click.Context(cmd), name))

    floats = []
    for name in COMMANDS:
        for cmd in commands(main.get_command(click.Context(main), name)):
            for p in cmd.params:
                if isinstance(p.type, (click.types.FloatParamType, click.FloatRange)):
                    floats.append((cmd.name, p.name))
                    assert isinstance(p.type, FiniteFloat), f"{cmd.name} --{p.name} lets NaN through"
    assert len(floats) >= 10


def test_6_optimize_refuses_a_nan_quantile(tmp_path: Path) -> None:
    res = cli("optimize", "--grammar", "expr", "--smoke", "--floor-quantile", "nan", "--out", tmp_path / "bo")
    assert res.exit_code == 2 and "--floor-quantile" in res.output
    assert not (tmp_path / "bo").exists()


def test_6_a_diverging_run_stops_with_one_line(expr_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = cli(*TRAIN, "--data", expr_data, "--epochs", "2", "--out", out, "--lr", "1e6")
    assert res.exit_code == 1
    line = error_line(res)
    assert "training diverged" in line and "epoch 1, step" in line and "--lr" in line and "--grad-clip" in line
    assert not out.exists()  # nothing trained: the folder is gone, config and all
    res = cli(*TRAIN, "--data", expr_data, "--epochs", "1", "--out", out)  # the corrected command, same folder
    assert res.exit_code == 0, res.output


def test_6_divergence_keeps_the_last_good_checkpoint(expr_data: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import molshape.training.fit as fit
    from molshape.core.checkpoint import load_checkpoint

    real, calls = fit._call, {"n": 0}

    def nan_in_epoch_2(model, batch):
        out = real(model, batch)
        calls["n"] += 1
        if calls["n"] > 4:  # 200 items in batches of 50: the second epoch's first step
            out = {**out, "loss": out["loss"] * float("nan")}
        return out

    monkeypatch.setattr(fit, "_call", nan_in_epoch_2)
    out = tmp_path / "run"
    res = cli(*TRAIN, "--data", expr_data, "--epochs", "3", "--out", out)
    assert res.exit_code == 1
    line = error_line(res)
    assert "the training loss is nan at epoch 2, step 5" in line and "epoch 1 are kept" in line
    for name in ("best.pt", "last.pt"):
        ckpt = load_checkpoint(out / name)
        assert ckpt["epoch"] == 1 and all(torch.isfinite(v).all() for v in ckpt["model"].values())


# -- 7. a string where a list is expected -----------------------------------------------------
def test_7_one_string_is_one_input(expr_model) -> None:
    import molshape

    z = expr_model.encode("x+sin(x)")
    assert z.shape == (1, expr_model.latent_dim)
    assert torch.equal(z, expr_model.encode(["x+sin(x)"]))
    df = molshape.score("CCO")
    assert list(df["input"]) == ["CCO"]
    lines = [line for c in expr_model.decode_source("input", inputs="x+1") for line in c.lines]
    assert len(lines) == 1


@pytest.mark.parametrize("bad, message", [(b"CCO", "bytes"), (["CCO", 3], "item 2 is int"), (42, "got int")])
def test_7_non_strings_are_refused_clearly(bad, message: str, expr_model) -> None:
    import molshape

    with pytest.raises(molshape.InputError, match=message):
        molshape.score(bad)
    with pytest.raises(molshape.InputError, match=message):
        expr_model.encode(bad)


# -- 8. decode checks its latents -------------------------------------------------------------
@pytest.mark.parametrize("z, message", [
    (torch.full((2, 25), float("nan")), "NaN or infinity in 2 of 2 rows"),
    (torch.tensor([[0.0] * 24 + [float("inf")]]), "NaN or infinity in 1 of 1 rows"),
    (torch.zeros(2, 3), r"shape \[N x 25\] for this model, got \[2, 3\]"),
    (torch.zeros(25), "z.unsqueeze"),
    (torch.zeros(2, 25, dtype=torch.long), "floating point, got dtype int64"),
    (torch.zeros(2, 25, dtype=torch.bool), "floating point"),
])
def test_8_decode_refuses_bad_latents(z: torch.Tensor, message: str, expr_model) -> None:
    import molshape

    with pytest.raises(molshape.LatentError, match=message) as info:
        expr_model.decode(z)
    assert "\n" not in str(info.value)


def test_8_decode_takes_any_float_dtype(expr_model) -> None:
    z = expr_model.latents(3, generator=torch.Generator().manual_seed(0))
    assert list(expr_model.decode(z.double())) == list(expr_model.decode(z))


# -- 9. what the grammar cannot represent is reported ---------------------------------------
def test_9_dropped_isotopes_and_stereo_are_reported_per_input() -> None:
    import molshape
    from molshape.core.errors import DroppedFeatureWarning

    m = molshape.load("zinc")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        z = m.encode(["CCO", "[13CH4]", "C[C@H](O)F", "F/C=C/F"])
    messages = [str(w.message) for w in caught if issubclass(w.category, DroppedFeatureWarning)]
    assert len(messages) == 3
    assert "input 2 '[13CH4]'" in messages[0] and "isotope 13C" in messages[0]
    assert "input 3" in messages[1] and "stereo centre" in messages[1]
    assert "input 4" in messages[2] and "double-bond stereo" in messages[2]
    assert torch.allclose(z[1], m.encode(["C"])[0], atol=1e-5)  # what it is encoded as: the molecule without them


def test_9_decode_input_says_what_was_dropped(tmp_path: Path) -> None:
    src = tmp_path / "in.smi"
    src.write_text("CCO\n[13CH4]\n")
    res = cli("decode", "--input", src, "--threads", "1")
    assert res.exit_code == 0, res.output
    assert "Warning: input 2 '[13CH4]' loses its isotope 13C" in res.stderr


# -- 10. full disks and truncated files -------------------------------------------------------
class _FullDisk:
    """A file object whose disk fills after ``room`` bytes (writes then fail with ENOSPC)."""

    def __init__(self, f, room: int) -> None:
        self.f, self.room = f, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def test_10_train_on_a_full_disk_says_so_in_one_line(expr_data: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import molshape.core.checkpoint as checkpoint

    real_save = torch.save
    monkeypatch.setattr(checkpoint.torch, "save", lambda obj, f: real_save(obj, _FullDisk(f, 64_000)))
    out = tmp_path / "run"
    res = cli(*TRAIN, "--data", expr_data, "--epochs", "1", "--out", out)
    monkeypatch.undo()
    assert res.exit_code == 1
    line = error_line(res)
    assert "best.pt: No space left on device" in line and "unexpected pos" not in res.output
    assert temp_files(tmp_path) == []


@pytest.mark.skipif(not MOUNT, reason="a full disk needs a tiny file system, and mounting one needs root")
def test_10_train_on_a_real_full_disk(expr_data: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", "400k") as folder:
        res = cli(*TRAIN, "--data", expr_data, "--epochs", "1", "--out", folder / "run")
        assert res.exit_code == 1 and "No space left on device" in error_line(res)
        assert temp_files(folder) == []


def test_10_truncated_gzip_training_data_is_named(expr_data: Path, tmp_path: Path) -> None:
    whole = gzip.compress(expr_data.read_bytes())
    cut = tmp_path / "expr.txt.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    for debug in ([], ["--debug"]):
        res = cli(*debug, *TRAIN, "--data", cut, "--epochs", "1", "--out", tmp_path / "run")
        assert res.exit_code == 1
        line = error_line(res)
        assert str(cut) in line and "truncated or corrupt" in line and "Aborted" not in res.output
        assert not (tmp_path / "run").exists()


# -- the same input rules in every command ----------------------------------------------------
def test_bom_and_header_are_read_alike_by_every_command(tmp_path: Path) -> None:
    from molshape.data.records import read_records

    src = tmp_path / "in.smi"
    src.write_bytes("\ufeffsmiles\nCCO\nc1ccccc1\n".encode())
    parsed = [json.loads(line) for line in cli("parse", src).stdout.splitlines()]
    assert [(r["line"], r["input"]) for r in parsed] == [(2, "CCO"), (3, "c1ccccc1")]
    assert all("rules" in r for r in parsed)
    scored = json.loads(cli("score", "--input", src, "--json").stdout)
    assert scored["n"] == 2 and scored["valid"] == 2
    decoded = cli("decode", "--input", src, "--threads", "1", "--json")
    assert decoded.exit_code == 0 and json.loads(decoded.stdout)["n"] == 2
    assert read_records(src) == [(2, "CCO"), (3, "c1ccccc1")]
    expr = tmp_path / "in.txt"
    expr.write_bytes("\ufeffexpression\nx + 1\n".encode())
    assert read_records(expr, "join") == [(2, "x+1")]


def test_a_fifo_works_as_an_input(tmp_path: Path) -> None:
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "w") as f:
            f.write("x+1\nsin(x)\n")

    writer = threading.Thread(target=feed)
    writer.start()
    res = cli("parse", "--grammar", "expr", fifo, "--json")
    writer.join(timeout=10)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["parsed"] == 2


def test_training_data_that_is_a_fifo_is_refused_with_the_reason(tmp_path: Path) -> None:
    fifo = tmp_path / "data.fifo"
    os.mkfifo(fifo)
    stop = threading.Event()

    def feed() -> None:  # a writer, so reading the FIFO does not block forever
        while not stop.is_set():
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                time.sleep(0.05)
                continue
            os.write(fd, b"x+1\n")
            os.close(fd)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        res = cli(*TRAIN, "--data", fifo, "--epochs", "1", "--out", tmp_path / "run")
    finally:
        stop.set()
    assert res.exit_code == 2 and "is not a regular file" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["parse", "score", "decode"])
def test_output_in_a_missing_folder_is_created_by_every_command(command: str, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("x+1\n")
    out = tmp_path / "new" / "sub" / "out.txt"
    args = _writing(command, src, out)
    res = cli(*args)
    assert res.exit_code == 0, res.output
    assert out.is_file() and sorted(p.name for p in out.parent.iterdir()) == ["out.txt"]


# -- caches -----------------------------------------------------------------------------------
def test_a_corrupt_parse_cache_is_rebuilt(expr_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    from molshape.data.datasets import cache_file, load_dataset
    from molshape.data.sources import file_source
    from molshape.grammar.cfg import load_grammar

    monkeypatch.setenv("MOLSHAPE_CACHE_DIR", str(tmp_path / "cache"))
    first = load_dataset("expr", data=expr_data, progress=False)
    path = cache_file(load_grammar("expr"), file_source(expr_data).sha256)
    assert path.is_file()
    path.write_bytes(path.read_bytes()[:1000])  # truncated, as by a full disk
    with caplog.at_level("WARNING"):
        again = load_dataset("expr", data=expr_data, progress=False)
    assert f"cache file {path} is corrupt" in caplog.text
    assert torch.equal(again.rules, first.rules) and path.is_file()  # rebuilt


def test_an_unwritable_cache_folder_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    from molshape.core import runtime

    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be\n")
    monkeypatch.setenv("MOLSHAPE_CACHE_DIR", str(blocked / "cache"))
    with caplog.at_level("WARNING"):
        folder = runtime.cache_dir()
    assert folder.is_dir() and os.access(folder, os.W_OK) and folder != blocked / "cache"
    assert f"cache folder {blocked / 'cache'} cannot be written" in caplog.text


# -- signals ----------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_no_stray_temp_files_after_a_signal(sig: int, zinc_path: Path, tmp_path: Path) -> None:
    from conftest import read_lines

    src = tmp_path / "in.smi"
    src.write_text("\n".join(read_lines(zinc_path, 2000) * 3) + "\n")
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    proc = spawn("parse", src, "-o", out, "--workers", "1", cwd=tmp_path)
    deadline = time.monotonic() + 60
    while not temp_files(tmp_path) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # wait until it writes its temp file
    if proc.poll() is not None:
        pytest.skip("parse finished before it could be signalled")
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert temp_files(tmp_path) == []
    if proc.returncode == 0:  # the signal landed after the rename: the output is whole, never partial
        assert len(out.read_text().splitlines()) == 6000
    else:
        assert out.read_text() == "old\n"


# -- bounded resources ------------------------------------------------------------------------
def test_workers_beyond_the_cores_are_capped(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("x+1\nsin(x)\n")
    res = cli("parse", "--grammar", "expr", src, "--workers", "9999", "--json")
    assert res.exit_code == 0, res.output
    assert f"--workers 9999 is more than the {os.cpu_count()} cores here; using {os.cpu_count()}" in res.stderr
    assert json.loads(res.stdout)["parsed"] == 2


def test_interpolation_steps_are_bounded() -> None:
    res = cli("decode", "--grammar", "expr", "--between", "x", "sin(x)", "--steps", "1000000000", "--threads", "1")
    assert res.exit_code == 2 and "--steps" in res.output and "Traceback" not in res.output
