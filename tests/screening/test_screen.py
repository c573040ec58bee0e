"""``molshape screen`` / :func:`molshape.screen`: chunked generation, hash-partitioned dedup,
filters, top-k, resume, and the same rows in-process and on a Dask cluster (a worker killed
mid-run included). Small runs of the shipped SMILES model, one torch thread."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import molshape
from molshape.cli import main
from molshape.gvae import generation as gen
from molshape.screening import chunks, filters
from molshape.screening.pipeline import marker_path, run_chunk

pytest.importorskip("pyarrow")
N, CHUNK, PARTS = 120, 40, 3
OPTIONS = dict(n=N, chunk_size=CHUNK, partitions=PARTS, seed=7, targets=["logp", "qed"], keep=["qed>=0.5"],
               top=10, by="logp")


@pytest.fixture(scope="module")
def model() -> molshape.Model:
    return molshape.load("zinc", "cpu")


@pytest.fixture(scope="module")
def reference(model, tmp_path_factory) -> molshape.ScreenResult:
    """The in-process run every other run is compared with."""
    return molshape.screen(model, tmp_path_factory.mktemp("ref") / "run", **OPTIONS)


def parquet_tables(out: Path) -> dict[str, pd.DataFrame]:
    """Every library and shard file of a run folder, by path relative to it."""
    files = sorted(out.glob("library/*.parquet")) + sorted(out.glob("shards/*/*.parquet"))
    return {str(p.relative_to(out)): pd.read_parquet(p) for p in files}


def assert_same_rows(a: Path, b: Path) -> None:
    ta, tb = parquet_tables(a), parquet_tables(b)
    assert list(ta) == list(tb)
    for name in ta:
        pd.testing.assert_frame_equal(ta[name], tb[name], check_exact=True)
    assert (a / "top.csv").read_text() == (b / "top.csv").read_text()


def test_chunk_plan_and_seeds_do_not_depend_on_anything_but_the_run_seed() -> None:
    p = chunks.plan(12_000, 5_000, seed=3)
    assert [(c.index, c.start, c.size) for c in p] == [(0, 0, 5000), (1, 5000, 5000), (2, 10000, 2000)]
    assert p == chunks.plan(12_000, 5_000, seed=3)
    assert len({c.seed for c in p}) == 3 and chunks.plan(12_000, 5_000, seed=4)[0].seed != p[0].seed
    assert chunks.partition_of("CCO", 7) == chunks.partition_of("CCO", 7) < 7


def test_keep_is_parsed_strictly_never_evaluated() -> None:
    assert filters.parse_keep(" sa <= 3 ") == filters.Keep("sa", "<=", 3.0)
    assert filters.parse_keep("logp>-1.5e0") == filters.Keep("logp", ">", -1.5)
    for bad in ("qed>>0.6", "qed", "qed>=", "0.6<=qed", "__import__('os').system('true')", "qed>=0.6 or 1",
                "qed>=nan"):
        with pytest.raises(filters.FilterError):
            filters.parse_keep(bad)
    with pytest.raises(filters.FilterError, match="unknown column 'mw'"):
        filters.parse_keep("mw<500", columns=["qed", "sa"])


def test_library_filters_and_top_k_match_a_direct_computation(model, reference) -> None:
    """Decode each chunk's latents directly, keep first occurrences, score with molshape.score."""
    drawn: list[str] = []
    for c in chunks.plan(N, CHUNK, OPTIONS["seed"]):
        g = torch.Generator().manual_seed(c.seed)
        drawn += [s for s in gen.decode_latents(model.net, model.grammar, gen.prior_latents(model.net, c.size, g),
                                                generator=g) if s is not None]
    unique = list(dict.fromkeys(drawn))
    qed = molshape.score(unique, target="qed").set_index("input")["score"]
    plogp = molshape.score(unique, target="logp").set_index("input")["score"]
    kept = [s for s in unique if qed[s] >= 0.5]
    lib = reference.library()
    s = reference.summary
    assert (s["n"], s["valid"], s["unique"], s["kept"]) == (N, len(drawn), len(unique), len(kept))
    assert 0 < len(kept) < len(unique)  # the filter did something
    assert sorted(lib["smiles"]) == sorted(kept) and lib["smiles"].is_unique
    assert lib.set_index("smiles")["qed"].sort_index().tolist() == pytest.approx(qed[sorted(kept)].tolist())
    best = sorted(kept, key=lambda m: -plogp[m])[:10]
    top = reference.top()
    assert top["smiles"].tolist() == best
    assert top["penalized_logp"].tolist() == pytest.approx([plogp[m] for m in best])
    # each partition is in draw order and holds only its own hash
    for p in range(PARTS):
        part = pd.read_parquet(reference.out_dir / f"library/part-{p:05d}.parquet")
        assert list(zip(part["chunk"], part["row"])) == sorted(zip(part["chunk"], part["row"]))
        assert all(chunks.partition_of(m, PARTS) == p for m in part["smiles"])


def test_resume_skips_written_chunks_and_refilters(model, reference, tmp_path) -> None:
    out = tmp_path / "run"
    first = molshape.screen(model, out, **OPTIONS)
    assert first.summary["chunks_run"] == 3
    marker_path(out, 1).unlink()  # as if killed after chunk 1's shards, before its marker
    again = molshape.screen(model, out, **OPTIONS, resume=True)
    assert (again.summary["chunks_run"], again.summary["chunks_skipped"]) == (1, 2)
    assert_same_rows(out, reference.out_dir)
    looser = molshape.screen(model, out, **{**OPTIONS, "keep": ["qed>=0.3"]}, resume=True)
    assert looser.summary["chunks_run"] == 0 and looser.summary["kept"] > reference.summary["kept"]
    assert looser.summary["unique"] == reference.summary["unique"]


@pytest.mark.slow
@pytest.mark.timeout(900)  # a hung cluster fails the test instead of the suite
def test_two_worker_local_cluster_writes_the_same_parquet_as_in_process(model, reference, tmp_path) -> None:
    pytest.importorskip("distributed")
    out = tmp_path / "cluster"
    r = molshape.screen(model, out, **OPTIONS, workers=2)
    assert "2 worker(s)" in r.summary["engine"]
    assert_same_rows(out, reference.out_dir)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_killed_worker_has_its_chunk_rerun_and_nothing_twice(model, reference, tmp_path) -> None:
    distributed = pytest.importorskip("distributed")
    flag = tmp_path / "killed-once"

    def dies_once(spec, chunk):  # pickled by value: runs on the worker
        result = run_chunk(spec, chunk)
        if chunk.index == 1 and not flag.exists():
            flag.touch()
            marker_path(spec.out_dir, chunk.index).unlink()  # its shards are written, its marker is not
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc:
        out = tmp_path / "cluster"
        r = molshape.screen(model, out, **OPTIONS, scheduler=lc.scheduler_address, task=dies_once)
    assert flag.exists(), "the worker was not killed"
    assert r.summary["chunks_run"] == 3
    assert_same_rows(out, reference.out_dir)
    lib = r.library()
    assert lib["smiles"].is_unique and len(lib) == reference.summary["kept"]
    assert marker_path(out, 1).is_file()  # the re-run finished what the killed worker began


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["screen", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize("args, says", [
    (["--keep", "qed>>0.6"], "is not COLUMN OP NUMBER"),
    (["--keep", "mw<500"], "unknown score column 'mw'"),
    (["--target", "banana"], "'banana' is not one of"),
    (["--target", "expr"], "does not score the strings"),
    (["--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler"),
])
def test_bad_input_is_one_sentence_exit_2_and_no_folder(args, says, tmp_path) -> None:
    if "--scheduler" in args:
        pytest.importorskip("distributed")
    out = tmp_path / "run"
    code, text = invoke("--n", "10", "-o", str(out), *args)
    assert code == 2, text
    assert says in " ".join(text.split()) and "Traceback" not in text
    assert not out.exists()


def test_a_folder_holding_another_run_or_other_files_is_refused(reference, tmp_path) -> None:
    ref = str(reference.out_dir)
    before = sorted(p.name for p in reference.out_dir.iterdir())
    code, text = invoke("--n", "10", "-o", ref)
    assert code == 2 and "holds a screen run; pass --resume" in " ".join(text.split())
    code, text = invoke("--n", "10", "-o", ref, "--resume")
    assert code == 2 and "holds another screen run (n 120 there, 10 here)" in " ".join(text.split())
    assert sorted(p.name for p in reference.out_dir.iterdir()) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine\n")
    code, text = invoke("--n", "10", "-o", str(other))
    assert code == 2 and "holds other files (notes.txt)" in text
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_workers_without_dask_names_the_extra(model, tmp_path, monkeypatch) -> None:
    import importlib.util

    from molshape.screening.engine import EngineError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "distributed" else real(name, *a))
    with pytest.raises(EngineError, match=r"molshape\[dask\]"):
        molshape.screen(model, tmp_path / "run", n=10, workers=2)
    assert not (tmp_path / "run").exists()


def test_cli_and_api_give_the_same_library(reference, tmp_path) -> None:
    out = tmp_path / "cli"
    code, text = invoke("--n", str(N), "--chunk-size", str(CHUNK), "--partitions", str(PARTS), "--seed", "7",
                        "--target", "logp", "--target", "qed", "--keep", "qed>=0.5", "--top", "10", "--by", "logp",
                        "-o", str(out), "--json")
    assert code == 0, text
    summary = json.loads(text[text.index("{"):])
    assert summary["kept"] == reference.summary["kept"]
    assert_same_rows(out, reference.out_dir)


def test_a_folder_in_use_by_another_run_is_refused(model, tmp_path) -> None:
    from molshape.core.rundir import RunLock
    from molshape.screening.run import ScreenError

    with RunLock(tmp_path / "busy"):
        with pytest.raises(ScreenError, match="another run is writing to"):
            molshape.screen(model, tmp_path / "busy", n=10)
    assert list((tmp_path / "busy").iterdir()) == []  # nothing written; the holder removed its lock
