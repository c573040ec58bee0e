"""``molshape decode`` and ``molshape evaluate`` end to end on tiny trained models."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from molshape.cli import main




def _train(grammar: str, lines: list[str], out: Path, epochs: int, limit: int | None = None) -> tuple[Path, Path]:
    """Train as ``molshape train [--limit N]`` does: with a limit, only those rows are prepared."""
    from molshape.data.datasets import load_dataset
    from molshape.gvae.model import PRESETS
    from molshape.gvae.training import train_grammar
    from molshape.training.fit import TrainConfig

    data_file = out / "data.txt"
    data_file.write_text("\n".join(lines) + "\n")
    data = load_dataset(grammar, data_file, limit=limit, progress=False, workers=1)
    cfg = PRESETS[grammar]["cpu"].replace(dec_hidden=48, dec_layers=1, enc_dense=48)
    train_grammar(cfg, TrainConfig(epochs=epochs, batch_size=100, device="cpu", progress=False, limit=limit),
                  data, out)
    return out / "best.pt", data_file


@pytest.fixture(scope="module")
def expr_ckpt(expr_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint, data file): 1,400 expressions (the standard split holds out 1,000); as with
    ``molshape train --limit 400``: 400 training rows, 45 valid, 45 test."""
    from conftest import read_lines

    return _train("expr", read_lines(expr_path, 1400), tmp_path_factory.mktemp("expr_cli"), epochs=3, limit=400)


def run(*args: str) -> dict:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_decode_prior_json_and_output_file(expr_ckpt, tmp_path: Path) -> None:
    ckpt, _ = expr_ckpt
    out = tmp_path / "samples.txt"
    res = run("decode", "--checkpoint", str(ckpt), "--n", "50", "--seed", "3", "-o", str(out), "--json")
    summary = json.loads(res.stdout)
    lines = out.read_text().splitlines()
    assert len(lines) == summary["n"] == 50
    assert summary["valid"] == sum(not x.startswith("#") for x in lines)
    assert summary["incomplete"] == lines.count("# incomplete")
    assert summary["valid"] + summary["incomplete"] + summary["invalid"] == 50
    assert not (tmp_path / "samples.txt.config.json").exists() and summary["config"]["n"] == 50
    again = tmp_path / "again.txt"
    run("decode", "--checkpoint", str(ckpt), "--n", "50", "--seed", "3", "-o", str(again))
    assert again.read_text() == out.read_text()  # seeded


def test_decode_input_reports_bad_lines_in_order(expr_ckpt, tmp_path: Path) -> None:
    ckpt, _ = expr_ckpt
    inp = tmp_path / "in.txt"
    inp.write_text("x+1\nx+-\n\nsin(x)*2\n")
    res = CliRunner().invoke(main, ["decode", "--checkpoint", str(ckpt), "--input", str(inp), "--json"])
    assert res.exit_code == 3, res.output  # some input lines failed
    summary = json.loads(res.stdout)  # --json: one document, the results inside it
    lines = summary["results"]
    assert len(lines) == 4
    assert lines[1].startswith("# unparseable (line 2)") and lines[2].startswith("# unparseable (line 3)")
    assert not lines[0].startswith("# unparseable") and not lines[3].startswith("# unparseable")
    assert summary["unparseable"] == 2


def test_decode_sources(expr_ckpt) -> None:
    ckpt, data = expr_ckpt
    for extra in (["--source", "component", "--component", "1"], ["--between", "x+1", "sin(x)", "--steps", "4"],
                  ["--source", "expost", "--data", str(data)], ["--attempts", "3"]):
        res = run("decode", "--checkpoint", str(ckpt), "--n", "12", *extra, "--json")
        summary = json.loads(res.stdout)
        assert summary["n"] == len(summary["results"]) == (4 if "--between" in extra else 12)
        assert summary["mode"] == ("sample" if "--attempts" in extra else "argmax")


def test_decode_usage_errors(expr_ckpt, tmp_path: Path) -> None:
    ckpt, _ = expr_ckpt
    runner = CliRunner()
    for args, message in ((["--source", "component"], "--component"),
                          (["--source", "component", "--component", "99"], "components"),
                          (["--attempts", "3", "--mode", "argmax"], "--mode sample"),
                          (["--source", "input"], "--input")):
        res = runner.invoke(main, ["decode", "--checkpoint", str(ckpt), *args])
        assert res.exit_code == 2 and message in res.output, res.output
    res = runner.invoke(main, ["decode", "--checkpoint", str(tmp_path / "missing.pt")])
    assert res.exit_code == 2 and "no such checkpoint file" in res.output


def test_evaluate_expr(expr_ckpt, tmp_path: Path) -> None:
    ckpt, data = expr_ckpt
    out = tmp_path / "eval"
    res = run("evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--n", "200",
              "--out", str(out), "--json")
    s = json.loads(res.stdout[res.stdout.index("{"):])
    r, m = s["reconstruction"], s["samples"]
    assert r["n_recon"] == 45 and 0 <= r["recon_sequence"] <= r["recon_canonical"] <= 1
    assert 0 <= r["recon_per_rule"] <= 1
    assert m["n_samples"] == 200 and 0 <= m["validity"] <= 1 and "fcd" not in m
    assert 0 < s["latents"]["ks_mean"] <= s["latents"]["ks_max"] <= 1
    assert (out / "latents.png").is_file() and (out / "config.json").is_file()
    assert len((out / "samples.txt").read_text().splitlines()) == 200
    run("evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--n", "50", "--limit", "20",
        "--threads", "1", "--out", str(out))
    rows = list(csv.DictReader((ckpt.parent / "evaluate.csv").open()))
    assert len(rows) == 2 and rows[0]["samples.n_samples"] == "200" and rows[1]["samples.n_samples"] == "50"
    assert rows[0]["reconstruction.recon_sequence"] == str(r["recon_sequence"])
    assert rows[1]["reconstruction.n_recon"] == "20"


def test_evaluate_refuses_other_data(expr_ckpt, tmp_path: Path) -> None:
    ckpt, data = expr_ckpt
    other = tmp_path / "other.txt"
    other.write_text(data.read_text().replace("x", "1", 3))
    res = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(ckpt), "--data", str(other), "--n", "10"])
    assert res.exit_code == 2 and "not the data" in res.output


@pytest.mark.slow
def test_smiles_decode_and_evaluate(zinc_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """SMILES end to end: RDKit validity, FCD and the molecule grid (tiny model, 1 epoch)."""
    from conftest import read_lines

    # the standard ZINC split holds out 5,000 molecules
    ckpt, data = _train("smiles", read_lines(zinc_path, 5400), tmp_path_factory.mktemp("smiles_cli"), epochs=1)
    out = ckpt.parent / "eval"
    res = run("evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--n", "200", "--limit", "200",
              "--out", str(out), "--json")
    s = json.loads(res.stdout[res.stdout.index("{"):])
    assert s["samples"]["n_samples"] == 200
    assert "fcd" in s["samples"]  # a number, or None with the reason when < 2 samples are valid
    assert (out / "latents.png").is_file()
    res = run("decode", "--checkpoint", str(ckpt), "--n", "30", "--mode", "sample", "--json")
    lines = json.loads(res.stdout)["results"]
    assert len(lines) == 30
    assert all(not x.startswith("#") or x == "# incomplete" or x.startswith("# invalid: ") for x in lines)


def test_api_evaluate_and_decode_source_match_the_commands(expr_ckpt, tmp_path: Path) -> None:
    """``Model.evaluate`` / ``molshape.evaluate`` and ``Model.decode_source`` give what the commands give."""
    import torch

    import molshape
    from molshape.gvae.latent_sources import SourceError

    ckpt, data = expr_ckpt
    res = run("evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--n", "60", "--limit", "20",
              "--seed", "5", "--out", str(tmp_path / "cli"), "--json")
    cli_summary = json.loads(res.stdout[res.stdout.index("{"):])
    m = molshape.load(ckpt)
    summary = m.evaluate(tmp_path / "api", n=60, limit=20, data=data, seed=5)
    assert molshape.evaluate(m, tmp_path / "api2", n=60, limit=20, data=data, seed=5)["samples"] == summary["samples"]
    same = [k for k in cli_summary if k not in ("timing", "files")]
    assert json.loads(json.dumps({k: summary[k] for k in same})) == {k: cli_summary[k] for k in same}
    assert (tmp_path / "api" / "samples.txt").read_text() == (tmp_path / "cli" / "samples.txt").read_text()
    assert json.loads((tmp_path / "api" / "summary.json").read_text())["samples"]["n_samples"] == 60
    with pytest.raises(ValueError, match="not the data"):
        m.evaluate(tmp_path / "other", n=10, data=tmp_path / "cli" / "samples.txt")

    res = run("decode", "--checkpoint", str(ckpt), "--n", "30", "--seed", "2", "--json")
    lines = [x for c in m.decode_source("prior", 30, generator=torch.Generator().manual_seed(2)) for x in c.lines]
    assert lines == json.loads(res.stdout)["results"]
    with pytest.raises(SourceError, match="needs --component K"):
        next(m.decode_source("component"))
