"""Reading, parsing, padding, splitting and caching data sets (real ZINC / expression slices)."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import molshape.data.sources as sources
from molshape.grammar import parser as parser_module
from molshape.cli import main
from molshape.data.datasets import PreparedData, RuleDataset, load_dataset, prepare_dataset
from molshape.data.splits import split_records
from molshape.grammar.cfg import load_grammar
from molshape.data.records import read_records, read_strings
from molshape.grammar.parser import get_parser

BAD_LINE = 137  # 1-based line of the unparsable record in the test file
BAD = "CC[H]X"


@pytest.fixture()
def zinc_file(tmp_path: Path, zinc_sample: list[str]) -> Path:
    """500 real ZINC SMILES (with ids, as .smi files have) plus one bad line and a blank one."""
    lines = [f"{s} ZINC{i:06d}" for i, s in enumerate(zinc_sample[:500])]
    lines.insert(BAD_LINE - 1, BAD)
    lines.insert(300, "")
    path = tmp_path / "zinc_slice.smi.gz"
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _no_parsing(*args, **kwargs):
    raise RuntimeError("parse_many called although the cache should have answered")


def _prepare(path, grammar="smiles", **kw):
    kw = {"test_size": 50, "valid_fraction": 0.1, "seed": 0, "workers": 1, "progress": False} | kw
    return prepare_dataset(grammar, path, **kw)


def test_read_records_formats(tmp_path: Path):
    smi = tmp_path / "a.smi"
    smi.write_text("CCO ZINC1\n\nc1ccccc1\tid2 extra\n")
    assert read_records(smi) == [(1, "CCO"), (3, "c1ccccc1")]
    expr = tmp_path / "e.txt.gz"
    with gzip.open(expr, "wt") as f:
        f.write("x + sin( x * 2 )\nexp( x ) / 3\n")
    assert read_strings(expr) == ["x+sin(x*2)", "exp(x)/3"]
    # chemical-VAE's CSV: quoted smiles ending in a newline, so records span two lines
    table = tmp_path / "z.csv"
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["smiles", "logP", "qed", "SAS"])
        w.writerow(["CCO\n", "0.1", "0.4", "2.0"])
        w.writerow(["c1ccccc1\n", "1.7", "0.4", "1.0"])
    assert read_records(table) == [(2, "CCO"), (4, "c1ccccc1")]
    (tmp_path / "bad.csv").write_text("name,value\nx,1\n")
    with pytest.raises(ValueError, match="no 'smiles' column"):
        read_records(tmp_path / "bad.csv")


def test_real_expression_file_is_joined(expr_path: Path, expr_sample: list[str]):
    assert read_strings(expr_path)[:1000] == expr_sample


def test_split_is_deterministic_disjoint_and_covering():
    a = split_records(1000, 100, 0.1, seed=0)
    assert {k: len(v) for k, v in a.items()} == {"test": 100, "valid": 90, "train": 810}
    assert torch.equal(torch.cat(list(a.values())).sort().values, torch.arange(1000))
    b = split_records(1000, 100, 0.1, seed=0)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["test"], split_records(1000, 100, 0.1, seed=1)["test"])
    with pytest.raises(ValueError, match="no training"):
        split_records(10, 10, 0.1, seed=0)


def test_prepare_zinc_slice(zinc_file: Path, zinc_sample: list[str]):
    g = load_grammar("smiles")
    data = _prepare(zinc_file)
    n = 500
    assert data.rules.shape == (n, 277) and data.rules.dtype == torch.long
    assert data.n_records == 501 and data.source_sha256 and data.grammar_hash == g.hash
    assert data.strings == zinc_sample[:500]
    parser = get_parser(g)
    for i in range(0, n, 50):
        rules = parser.parse(data.strings[i])
        assert data.lengths[i] == len(rules)
        assert data.rules[i, : len(rules)].tolist() == rules
    steps = torch.arange(277)
    pad = steps[None, :] >= data.lengths[:, None]
    assert (data.rules[pad] == g.pad).all() and (data.rules[~pad] != g.pad).all()
    # split: disjoint, covering every parsed row, sizes from the 501 records
    rows = torch.cat([data.split[k] for k in ("train", "valid", "test")])
    assert len(rows) == n and torch.equal(rows.sort().values, torch.arange(n))
    assert len(data.split["test"]) + len(data.split["valid"]) >= 50 + 45 - 1
    # the bad line is reported with its line number, not dropped silently
    assert len(data.failed) == 1
    line, text, reason = data.failed[0]
    assert (line, text) == (BAD_LINE, BAD) and reason
    report = Path(data.failed_report).read_text().splitlines()
    assert report[0] == "line\tinput\treason" and report[1].startswith(f"{BAD_LINE}\t{BAD}\t")
    # source line numbers of the rows skip the bad and the blank line
    assert data.lines[BAD_LINE - 2 : BAD_LINE].tolist() == [BAD_LINE - 1, BAD_LINE + 1]


def test_second_call_hits_the_cache(zinc_file: Path, monkeypatch: pytest.MonkeyPatch):
    first = _prepare(zinc_file)
    monkeypatch.setattr(parser_module, "parse_many", _no_parsing)
    again = _prepare(zinc_file)
    assert again.cache_path == first.cache_path
    assert torch.equal(again.rules, first.rules) and again.strings == first.strings
    assert all(torch.equal(again.split[k], first.split[k]) for k in first.split)
    assert again.failed == first.failed
    # another split seed reuses the parse and gives another split
    other = _prepare(zinc_file, seed=1)
    assert not torch.equal(other.split["test"], first.split["test"])


def test_cache_invalidated_by_grammar_or_data_change(zinc_file: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch):
    _prepare(zinc_file)
    monkeypatch.setattr(parser_module, "parse_many", _no_parsing)
    changed = tmp_path / "smiles_changed.cfg"
    changed.write_text(load_grammar("smiles").text + "\n# a comment changes the hash\n")
    with pytest.raises(RuntimeError, match="cache should have answered"):
        _prepare(zinc_file, grammar=load_grammar(str(changed), max_length=277))
    with gzip.open(zinc_file, "at") as f:
        f.write("CCO\n")
    with pytest.raises(RuntimeError, match="cache should have answered"):
        _prepare(zinc_file)


def test_limit_keeps_the_split_definition(zinc_file: Path, monkeypatch: pytest.MonkeyPatch):
    small = _prepare(zinc_file, limit=40, cache=False)
    assert small.cache_path is None
    assert len(small.split["train"]) == 40 and len(small.split["valid"]) <= 5
    full = _prepare(zinc_file)
    train_full = [full.strings[i] for i in full.split["train"][:40]]
    assert [small.strings[i] for i in small.split["train"]] == train_full
    # from the cache, a limited load gives the same rows without parsing
    monkeypatch.setattr(parser_module, "parse_many", _no_parsing)
    cached = _prepare(zinc_file, limit=40)
    assert cached.strings == small.strings and torch.equal(cached.rules, small.rules)


def test_rule_dataset_items(zinc_file: Path):
    data = _prepare(zinc_file)
    train = RuleDataset(data, "train")
    assert len(train) == len(data.split["train"])
    rules, length = train[3]
    row = int(data.split["train"][3])
    assert rules.shape == (277,) and rules.dtype == torch.long and isinstance(length, int)
    assert torch.equal(rules, data.rules[row]) and length == int(data.lengths[row])
    batch = next(iter(torch.utils.data.DataLoader(train, batch_size=8)))
    assert batch[0].shape == (8, 277) and batch[1].shape == (8,)
    with pytest.raises(KeyError, match="unknown split"):
        RuleDataset(data, "dev")


@pytest.mark.full_data
def test_load_dataset_expr_file_and_generated(expr_path: Path, monkeypatch: pytest.MonkeyPatch):
    from_file = load_dataset("expr", data=expr_path, limit=300, workers=1, progress=False)
    assert from_file.source == str(expr_path) and from_file.rules.shape[1] == 15
    assert from_file.n_records == 100_000 and len(from_file.split["train"]) == 300
    monkeypatch.delenv("MOLSHAPE_DATA_DIR", raising=False)
    monkeypatch.setattr(sources, "EXPR_GENERATED", 12_000)
    generated = load_dataset("expr", limit=None, workers=1, progress=False)
    assert generated.source.startswith("generated(n=12000")
    assert len(generated) == 12_000 and not generated.failed
    assert {k: len(v) for k, v in generated.split.items()} == {"train": 9_900, "valid": 1_100, "test": 1_000}
    assert (generated.lengths <= 15).all()
    with pytest.raises(FileNotFoundError, match="--data"):
        load_dataset("expr", data=expr_path.parent / "missing.txt")


@pytest.mark.full_data
def test_load_dataset_smiles_smoke(zinc_path: Path):
    data = load_dataset("smiles", data=zinc_path, limit=60, workers=1, progress=False)
    assert isinstance(data, PreparedData) and data.n_records == 249_456
    assert len(data.split["train"]) == 60 and len(data.split["test"]) == 7
    assert data.source_sha256 == "50b6b95dbdd4547344602c352b6e770daf8bda801fcd670fc487334d04a1ab36"


def test_cli_prepare_and_info(zinc_file: Path, tmp_path: Path):
    runner = CliRunner()
    plot = tmp_path / "lengths.png"
    res = runner.invoke(main, ["data", "prepare", "--grammar", "smiles", "--data", str(zinc_file),
                               "--workers", "1", "--json", "--plot", str(plot)])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["rows"] == 500 and summary["failed"] == 1
    # a slice this small holds out 10 % for test instead of the standard 5,000
    assert summary["split"]["test"] in (49, 50)
    assert plot.stat().st_size > 1000
    assert Path(summary["cache"]).with_suffix(".json").is_file()
    hist = tmp_path / "info.png"
    res = runner.invoke(main, ["data", "info", "zinc250k", "--data", str(zinc_file), "--json", "--plot", str(hist)])
    assert res.exit_code == 0, res.output
    assert hist.stat().st_size > 1000
    info = json.loads(res.stdout)["datasets"][0]
    assert info["rows"] == 501 and info["prepared"]["cached"] and info["prepared"]["failed"] == 1


def test_semantic_check_flags_the_same_rows_in_worker_processes(zinc_sample: list[str]):
    """The replay of every derivation through the semantic masks runs in a process pool for
    large inputs; it must flag exactly what the in-process check flags (here: a pentavalent carbon)."""
    from molshape.data.datasets import _check_semantics
    from molshape.grammar.parser import parse_many
    from molshape.grammar.representation import to_grammar_strings

    grammar = load_grammar("smiles_kekule")
    strings = to_grammar_strings(grammar, zinc_sample[:60], workers=1)
    strings.insert(30, "CC(C)(C)(C)(C)C")  # parses, but the valence rules forbid its fifth bond
    results = parse_many(grammar, strings, workers=1)
    assert all(isinstance(r, list) for r in results)
    serial = _check_semantics(grammar, results, workers=1, chunk_size=16)
    pooled = _check_semantics(grammar, results, workers=2, chunk_size=16)
    flagged = [i for i, r in enumerate(serial) if not isinstance(r, list)]
    assert flagged == [30]
    assert "valence rules forbid" in serial[30].reason
    assert [r if isinstance(r, list) else r.reason for r in pooled] == \
           [r if isinstance(r, list) else r.reason for r in serial]
