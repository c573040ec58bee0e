"""``decode --n`` and ``score --input`` in chunks on the screening engine (:func:`molshape.decode`,
:func:`molshape.score_to_csv`): the chunk seeds, the same file in-process and on a 2-worker
LocalCluster, resume after a kill, bad rows, and the refusals. Small runs of the shipped
SMILES model, one torch thread."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import molshape
from molshape.cli import main
from molshape.gvae import generation as gen
from molshape.gvae.latent_sources import result_lines
from molshape.scoring.targets import score_rows
from molshape.screening import chunks, decode_stream, score_stream
from molshape.screening.partial import ResumeError

N, CHUNK, SEED = 150, 50, 5
DECODE = dict(seed=SEED, chunk_size=CHUNK, threads=1)
BAD = ["C1CC", "", "xyz", "C" * 1001]  # unclosed ring, empty line, not SMILES, too long


@pytest.fixture(scope="module")
def model() -> molshape.Model:
    torch.set_num_threads(1)
    return molshape.load("zinc", "cpu")


@pytest.fixture(scope="module")
def reference(model, tmp_path_factory) -> tuple[Path, dict]:
    """The in-process decode every other run is compared with."""
    out = tmp_path_factory.mktemp("ref") / "lib.smi"
    return out, molshape.decode(model, N, out, **DECODE)


@pytest.fixture(scope="module")
def smiles(zinc_sample) -> list[str]:
    """Molecules with bad rows among them, as ``score --input`` reads a file (rows 3, 51, 102, 153 bad)."""
    rows = list(zinc_sample[:150])
    for i, bad in zip((2, 50, 101, 152), BAD):
        rows.insert(i, bad)
    return rows


@pytest.fixture(scope="module")
def cluster():
    """A 2-worker LocalCluster shared by the tests that compare with it."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc:
        yield lc.scheduler_address


def test_chunk_0_has_the_run_seed_and_the_others_derive_from_it() -> None:
    p = chunks.plan(120, 50, seed=SEED, first_seed=SEED)
    assert [(c.start, c.size, c.seed) for c in p] == [(0, 50, SEED), (50, 50, chunks.chunk_seed(SEED, 1)),
                                                      (100, 20, chunks.chunk_seed(SEED, 2))]
    assert chunks.plan(120, 50, seed=SEED)[0].seed == chunks.chunk_seed(SEED, 0)  # screen's plan is unchanged


def test_decode_writes_each_chunk_from_its_own_seed_in_draw_order(model, reference) -> None:
    out, summary = reference
    expected: list[str] = []
    for c in chunks.plan(N, CHUNK, SEED, first_seed=SEED):
        g = torch.Generator().manual_seed(c.seed)
        decoded = gen.decode_latents(model.net, model.grammar, gen.prior_latents(model.net, c.size, g), generator=g)
        expected += result_lines(decoded, decoded.reasons)
    lines = out.read_text().splitlines()
    assert lines == expected
    valid = [x for x in lines if not x.startswith("#")]
    assert (summary["n"], summary["valid"], summary["unique"]) == (N, len(valid), len(set(valid)))
    assert summary["incomplete"] + summary["invalid"] == N - len(valid)
    assert (summary["chunks"], summary["chunks_run"], summary["engine"]) == (3, 3, "in-process")
    assert not out.with_name("lib.smi.partial").exists() and not out.with_name("lib.smi.partial.json").exists()


def test_a_run_of_one_chunk_is_what_one_generator_seeded_with_the_run_seed_gives(model) -> None:
    lines = molshape.decode(model, 40, seed=SEED, chunk_size=CHUNK)["results"]
    sampled = model.sample(40, seed=SEED)
    assert lines == result_lines(sampled, sampled.reasons)


def test_cli_and_api_write_the_same_file(reference, tmp_path) -> None:
    out = tmp_path / "cli.smi"
    res = CliRunner().invoke(main, ["decode", "--n", str(N), "--chunk-size", str(CHUNK), "--seed", str(SEED),
                                    "--threads", "1", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert out.read_bytes() == reference[0].read_bytes()
    assert json.loads(res.stdout)["unique"] == reference[1]["unique"]


def test_a_killed_decode_resumes_after_its_last_chunk(model, reference, tmp_path, monkeypatch) -> None:
    real = decode_stream.decode_task

    def killed_at_chunk_2(spec, chunk):
        if chunk.index == 2:
            raise KeyboardInterrupt  # what a Ctrl-C or a kill does
        return real(spec, chunk)

    out = tmp_path / "lib.smi"
    monkeypatch.setattr(decode_stream, "decode_task", killed_at_chunk_2)
    with pytest.raises(KeyboardInterrupt):
        molshape.decode(model, N, out, **DECODE)
    partial = tmp_path / "lib.smi.partial"
    assert len(partial.read_text().splitlines()) == 2 * CHUNK and not out.exists()
    with pytest.raises(ResumeError, match="holds another run \\(seed 5 there, 6 here\\)"):
        molshape.decode(model, N, out, **{**DECODE, "seed": 6}, resume=True)
    monkeypatch.setattr(decode_stream, "decode_task", real)
    summary = molshape.decode(model, N, out, **DECODE, resume=True)
    assert (summary["chunks_run"], summary["chunks_skipped"]) == (1, 2)
    assert out.read_bytes() == reference[0].read_bytes()
    assert {k: summary[k] for k in ("n", "valid", "unique", "incomplete", "invalid")} == \
        {k: reference[1][k] for k in ("n", "valid", "unique", "incomplete", "invalid")}
    assert not partial.exists()


def unchunked_csv(strings: list[str], target: str) -> str:
    """The CSV of one unchunked scoring of every row."""
    return score_stream.csv_text(score_rows(target, strings, 1, progress=False))


def test_score_in_chunks_writes_the_unchunked_csv_and_lists_bad_rows(smiles, tmp_path) -> None:
    out = tmp_path / "scores.csv"
    s = molshape.score_to_csv(smiles, out, target="qed", chunk_size=CHUNK, workers=1)
    assert out.read_text() == unchunked_csv(smiles, "qed")
    assert (s["n"], s["invalid"], s["valid"], s["chunks"]) == (len(smiles), 4, len(smiles) - 4, 4)
    assert [(r["row"], r["reason"][:14]) for r in s["invalid_rows"]] == [
        (3, "RDKit: SMILES "), (51, "empty SMILES"), (102, "RDKit: SMILES "), (153, "input of 1,001")]


def test_a_killed_score_resumes_with_its_counts(smiles, tmp_path, monkeypatch) -> None:
    real = score_stream.score_task
    seen = {"n": 0}

    def killed_at_chunk_3(spec, strings):
        seen["n"] += 1
        if seen["n"] == 3:
            raise KeyboardInterrupt
        return real(spec, strings)

    out = tmp_path / "scores.csv"
    monkeypatch.setattr(score_stream, "score_task", killed_at_chunk_3)
    with pytest.raises(KeyboardInterrupt):
        molshape.score_to_csv(smiles, out, target="logp", chunk_size=CHUNK, workers=1)
    monkeypatch.setattr(score_stream, "score_task", real)
    with pytest.raises(ResumeError, match="holds another run \\(target 'logp' there, 'qed' here\\)"):
        molshape.score_to_csv(smiles, out, target="qed", chunk_size=CHUNK, workers=1, resume=True)
    resumed = molshape.score_to_csv(smiles, out, target="logp", chunk_size=CHUNK, workers=1, resume=True)
    whole = molshape.score_to_csv(smiles, None, target="logp", chunk_size=CHUNK, workers=1)
    assert resumed["chunks_skipped"] == 2 and out.read_text() == unchunked_csv(smiles, "logp")
    for k in ("n", "valid", "invalid", "best", "invalid_rows"):
        assert resumed[k] == whole[k], k
    assert resumed["mean_valid_score"] == pytest.approx(whole["mean_valid_score"], rel=1e-12)


@pytest.mark.slow
@pytest.mark.timeout(900)  # a hung cluster fails the test instead of the suite
def test_a_two_worker_cluster_writes_the_same_files_as_in_process(model, reference, smiles, cluster,
                                                                   tmp_path) -> None:
    out = tmp_path / "cluster.smi"
    summary = molshape.decode(model, N, out, **DECODE, scheduler=cluster)
    assert "2 worker(s)" in summary["engine"]
    assert out.read_bytes() == reference[0].read_bytes()
    scores = tmp_path / "cluster.csv"
    s = molshape.score_to_csv(smiles, scores, target="qed", chunk_size=CHUNK, scheduler=cluster)
    assert scores.read_text() == unchunked_csv(smiles, "qed") and s["invalid"] == 4


UNREACHABLE = "tcp://127.0.0.1:9"


@pytest.mark.parametrize("args, says", [
    (["decode", "--input", "in.smi", "--workers", "2", "-o", "out.txt"], "--workers goes with latents drawn with --n"),
    (["decode", "--n", "10", "--resume"], "pass -o FILE"),
    (["decode", "--n", "10", "--workers", "2", "--scheduler", UNREACHABLE, "-o", "out.txt"], "exclude each other"),
    (["decode", "--n", "10", "--scheduler", UNREACHABLE, "-o", "out.txt"], "cannot reach the Dask scheduler"),
    (["score", "--input", "in.smi", "--scheduler", UNREACHABLE, "-o", "out.txt"], "cannot reach the Dask scheduler"),
    (["score", "--input", "in.smi", "--scheduler", UNREACHABLE, "--workers", "1"], "exclude each other"),
    (["score", "CCO", "--resume"], "pass -o FILE"),
])
def test_refusals_are_one_sentence_exit_2_and_write_nothing(args, says, tmp_path, monkeypatch) -> None:
    if "cannot reach" in says:
        pytest.importorskip("distributed")
    monkeypatch.chdir(tmp_path)
    Path("in.smi").write_text("CCO\n")
    result = CliRunner().invoke(main, args + (["--threads", "1"] if args[0] == "decode" else []))
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and says in text and "Traceback" not in text, text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.smi"]


def test_workers_without_dask_names_the_extra(model, tmp_path, monkeypatch) -> None:
    import importlib.util

    from molshape.screening.engine import EngineError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "distributed" else real(name, *a))
    with pytest.raises(EngineError, match=r"--workers needs Dask distributed.*molshape\[dask\]"):
        molshape.decode(model, 10, tmp_path / "lib.smi", workers=2)
    with pytest.raises(EngineError, match=r"--scheduler needs Dask distributed.*molshape\[dask\]"):
        molshape.score_to_csv(["CCO"], tmp_path / "s.csv", scheduler="tcp://127.0.0.1:9")
    assert list(tmp_path.iterdir()) == []
