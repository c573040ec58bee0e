"""The LR parser: identical to nltk's ChartParser on real data, clear errors, CLI."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import read_lines
from molshape.cli import main
from molshape.grammar.cfg import GrammarError, load_grammar
from molshape.grammar.lr_tables import build_tables
from molshape.grammar.parser import get_parser, nltk_parse, parse_many

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def smiles():
    return get_parser(load_grammar("smiles"))


@pytest.fixture(scope="module")
def expr():
    return get_parser(load_grammar("expr"))


def _assert_matches_nltk(parser, strings: list[str]) -> None:
    for s in strings:
        rules = parser.parse(s)
        assert rules == nltk_parse(parser.grammar, parser.tokenize(s)), s
        assert parser.expand(rules) == s.replace(" ", "")


def test_tokenize(smiles, expr) -> None:
    assert smiles.tokenize("ClC[C@@H](Br)c1") == ["Cl", "C", "[", "C", "@@", "H", "]", "(", "Br", ")", "c", "1"]
    assert expr.tokenize("sin(x)*exp(2)") == ["sin(", "x", ")", "*", "exp(", "2", ")"]
    assert expr.tokenize(" x + sin( x ) ") == ["x", "+", "sin(", "x", ")"]


def test_matches_nltk_on_zinc(smiles, zinc_sample: list[str]) -> None:
    _assert_matches_nltk(smiles, zinc_sample[:120])  # nltk: ~15-70 molecules/s


def test_matches_nltk_on_expressions(expr, expr_path: Path) -> None:
    spaced = read_lines(expr_path, 200, start=5000)  # tokens separated by spaces, as in the file
    _assert_matches_nltk(expr, spaced)
    assert [expr.parse(s) for s in spaced] == [expr.parse(s.replace(" ", "")) for s in spaced]


@pytest.mark.slow
def test_matches_nltk_on_more_zinc(smiles, zinc_path: Path) -> None:
    _assert_matches_nltk(smiles, read_lines(zinc_path, 1000, start=100_000))


def test_all_sample_round_trip_within_max_length(smiles, zinc_sample: list[str]) -> None:
    g = smiles.grammar
    for s in zinc_sample:
        rules = smiles.parse(s)
        assert len(rules) <= g.max_length
        assert rules[0] == 0 and all(r not in g.unusable and r != g.pad for r in rules)
        assert smiles.expand(rules + [g.pad] * (g.max_length - len(rules))) == s


def test_only_bond_conflicts() -> None:
    """SMILES is LR(2) only where a bond follows an atom: ring bond (C-1) or chain (C-C)."""
    tables = build_tables(load_grammar("smiles"))
    conflicted = {t for row in tables.action for t, a in row.items() if isinstance(a, tuple)}
    assert conflicted == {"-", "=", "#", "/", "\\"}
    assert build_tables(load_grammar("expr")).n_conflicts == 0


def test_bond_conflicts_resolved(smiles) -> None:
    for s in ["C-1CC1", "C=1CCC=1", "C-C", "C1-C", "CC(=O)C-1", "C#N", "C/C=C\\1CC1"]:
        assert smiles.parse(s) == nltk_parse(smiles.grammar, smiles.tokenize(s)), s
    # a ring bond after a branch is outside the grammar: both parsers reject it
    assert nltk_parse(smiles.grammar, smiles.tokenize("C(=O)-1CC1")) is None
    with pytest.raises(GrammarError, match="position 6"):
        smiles.parse("C(=O)-1CC1")


@pytest.mark.parametrize("text, position, reason", [
    ("[H]N=c1cc[nH]c1", 1, "unexpected 'H'"),      # bracket hydrogen is outside the grammar
    ("CC[Xe]C", 3, "unknown character 'X'"),
    ("CCXe", 2, "unknown character 'X'"),
    ("CC(C", 4, "unexpected end of input"),
    ("CC)C", 2, "unexpected ')'"),
    ("C[C@@HC", 6, "unexpected 'C'"),
    ("CC]", 2, "unexpected ']'"),
    ("", 0, "empty string"),
    ("   ", 0, "empty string"),
    ("CC O", 2, "unknown character ' '"),
    ("C" * 150, 42, "more than max_length 277"),
])
def test_smiles_errors(smiles, text: str, position: int, reason: str) -> None:
    with pytest.raises(GrammarError) as info:
        smiles.parse(text)
    e = info.value
    assert (e.input, e.position) == (text, position) and reason in e.reason
    assert repr(text) in str(e) and f"position {position}" in str(e)
    if "unexpected" in reason:  # the tokens are fine and nltk finds no parse either
        assert nltk_parse(smiles.grammar, smiles.tokenize(text)) is None


def test_expr_errors(expr) -> None:
    for text, position in [("x+", 2, ), ("sin(x", 5), ("x + y", 4), ("(x))", 3), ("1" + "+1" * 8, 12)]:
        with pytest.raises(GrammarError) as info:
            expr.parse(text)
        assert info.value.position == position, (text, info.value)


def test_expand_rejects_bad_sequences(smiles) -> None:
    g = smiles.grammar
    rules = smiles.parse("CC(=O)N")
    assert smiles.expand(rules + [g.pad] * 3) == "CC(=O)N"
    for bad, at, reason in [
        (rules[:-1], len(rules) - 1, "incomplete"),
        ([], 0, "incomplete"),
        (rules + [3], len(rules), "after the derivation is complete"),
        ([g.pad, *rules], 0, "cannot expand smiles"),
        ([0, 999], 1, "out of range"),
        ([0, 73, 5], 2, "cannot expand"),
    ]:
        with pytest.raises(GrammarError) as info:
            smiles.expand(bad)
        assert info.value.position == at and reason in info.value.reason, (bad, info.value)


def test_ambiguous_grammar_is_reported(tmp_path: Path) -> None:
    cfg = tmp_path / "amb.cfg"
    cfg.write_text("E -> E '+' E\nE -> 'x'\nNothing -> None\n")
    p = get_parser(load_grammar(str(cfg), max_length=20))
    assert p.parse("x+x") == [0, 1, 1]
    with pytest.raises(GrammarError, match="ambiguous"):
        p.parse("x+x+x")


def test_parse_many_in_order_with_workers(smiles, zinc_sample: list[str]) -> None:
    strings = zinc_sample[:300] + ["C(C", ""] + zinc_sample[300:400]
    serial = parse_many(smiles.grammar, strings, workers=1)
    pooled = parse_many(smiles.grammar, strings, workers=2, chunk_size=50)
    assert len(pooled) == len(strings)
    for s, a, b in zip(strings, serial, pooled):
        if isinstance(a, GrammarError):
            assert isinstance(b, GrammarError) and (b.input, b.position, b.reason) == (a.input, a.position, a.reason)
        else:
            assert a == b == smiles.parse(s)
    assert [i for i, r in enumerate(pooled) if isinstance(r, GrammarError)] == [300, 301]


def test_get_parser_cached() -> None:
    assert get_parser(load_grammar("smiles")) is get_parser(load_grammar("smiles"))


def test_cli_parse(tmp_path: Path, smiles) -> None:
    src = tmp_path / "in.smi.gz"
    with gzip.open(src, "wt") as f:
        f.write("CCO ethanol\n\n[H]N=C\nc1ccccc1\tbenzene 2\n")
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(main, ["parse", str(src), "-o", str(out), "--json"])
    assert res.exit_code == 3, res.output
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3, 4]
    assert records[0] == {"line": 1, "input": "CCO", "id": "ethanol", "rules": smiles.parse("CCO")}
    assert records[1]["input"] == "" and "empty" in records[1]["error"]
    assert "position 1" in records[2]["error"] and "rules" not in records[2]
    assert records[3]["id"] == "benzene 2" and smiles.expand(records[3]["rules"]) == "c1ccccc1"
    summary = json.loads(res.stdout)
    assert (summary["lines"], summary["parsed"], summary["failed"]) == (4, 2, 2)
    assert not (tmp_path / "out.jsonl.config.json").exists() and summary["config"]["grammar"] == "smiles"


def test_cli_expr_stdin_and_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["parse", "--grammar", "expr", "-"], input="x + sin( x )\tid7\n3*x\n")
    assert res.exit_code == 0, res.output
    first, second = (json.loads(x) for x in res.stdout.splitlines())
    assert first["input"] == "x + sin( x )" and first["id"] == "id7" and "id" not in second
    assert "2 parsed, 0 failed of 2 lines" in res.stderr
    assert runner.invoke(main, ["parse", str(tmp_path / "missing.txt")]).exit_code == 2
    assert runner.invoke(main, ["parse", "--grammar", "peptide", "-"], input="x\n").exit_code == 2
    assert "tab" in runner.invoke(main, ["parse", "--help"]).output
