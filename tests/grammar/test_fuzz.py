"""Property-based fuzzing (hypothesis): parser, tokenizer, expression and SMILES scorers.

Each input gets a result or a clean error (``GrammarError``; a reason for scorers), never
another exception, and within a bounded time: hypothesis' ``deadline`` fails an example
that takes longer (generous, for a shared machine; the point is that no input takes
seconds, as a 30 kB line once took with the quadratic parser).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from molshape.grammar.cfg import GrammarError, load_grammar
from molshape.grammar.parser import get_parser

#: every test: few enough examples for CI, a deadline per example (milliseconds)
FUZZ = settings(max_examples=150, deadline=3000, suppress_health_check=[HealthCheck.too_slow],
                derandomize=True)

SMILES_ALPHABET = "CNOSPFIBrcnos[]()=#-+\\/@H123456789%0.: "
EXPR_ALPHABET = "x123+*/()sinexp( "


def _parsers():
    return get_parser(load_grammar("smiles")), get_parser(load_grammar("expr"))


def _check_parse(parser, s: str) -> None:
    """A derivation that expands back to the input, or a GrammarError with a reason."""
    try:
        rules = parser.parse(s)
    except GrammarError as e:
        assert e.reason and (e.position is None or 0 <= e.position <= len(s))
        return
    assert len(rules) <= parser.grammar.max_length
    assert parser.expand(rules) == ("".join(s.split()) if parser.grammar.name == "expr" else s)


@FUZZ
@given(st.text(max_size=300))
def test_parser_on_random_text(s: str) -> None:
    for parser in _parsers():
        _check_parse(parser, s)


@FUZZ
@given(st.text(alphabet=SMILES_ALPHABET, max_size=400))
def test_parser_on_smiles_like_text(s: str) -> None:
    _check_parse(_parsers()[0], s)


@FUZZ
@given(st.text(alphabet=EXPR_ALPHABET, max_size=200))
def test_parser_on_expression_like_text(s: str) -> None:
    _check_parse(_parsers()[1], s)


@FUZZ
@given(st.binary(max_size=2000))
def test_parser_on_random_bytes(data: bytes) -> None:
    # what a reader that replaced undecodable bytes would hand over
    for parser in _parsers():
        _check_parse(parser, data.decode("utf-8", errors="replace"))


@FUZZ
@given(st.sampled_from(["C", "c1ccccc1", "C(", "[C@@H]", "C=", "(C)"]), st.integers(1, 200_000))
def test_parser_on_very_long_lines(unit: str, repeat: int) -> None:
    _check_parse(_parsers()[0], unit * repeat)


@FUZZ
@given(st.integers(0, 20_000), st.sampled_from(["(", "sin(", "exp("]))
def test_parser_on_deep_nesting(depth: int, opener: str) -> None:
    _check_parse(_parsers()[1], opener * depth + "x" + ")" * depth)


@FUZZ
@given(st.text(max_size=500))
def test_tokenizer(s: str) -> None:
    for parser in _parsers():
        try:
            tokens = parser.tokenize(s)
        except GrammarError as e:
            assert e.reason
            continue
        compact = "".join(s.split()) if parser.grammar.name == "expr" else s
        assert "".join(tokens) == compact and all(t in parser.grammar.terminals for t in tokens)


def _check_expr_score(s: str) -> None:
    from molshape.scoring.expr_score import WORST, score_with_reason

    value, reason = score_with_reason(s)
    assert isinstance(value, float)
    if reason is None:
        assert math.isfinite(value) and 0 <= value <= WORST
    else:
        assert value == WORST and reason


@FUZZ
@given(st.text(max_size=300) | st.text(alphabet=EXPR_ALPHABET, max_size=300))
def test_expression_scorer_on_random_text(s: str) -> None:
    _check_expr_score(s)


@FUZZ
@given(st.integers(0, 6000), st.sampled_from(["(", "sin(", "exp("]), st.sampled_from(["x", "1/x", "x*x+2"]))
def test_expression_scorer_on_deep_nesting(depth: int, opener: str, core: str) -> None:
    _check_expr_score(opener * depth + core + ")" * depth)


@FUZZ
@given(st.binary(max_size=1000))
def test_expression_scorer_on_random_bytes(data: bytes) -> None:
    _check_expr_score(data.decode("latin-1"))


def _check_smiles_rows(strings: list[str]) -> None:
    from molshape.scoring.targets import score_rows

    rows = score_rows("logp", strings, workers=1, progress=False)
    assert [r["input"] for r in rows] == strings
    for r in rows:
        assert isinstance(r["valid"], bool)
        if r["valid"]:
            assert math.isfinite(r["score"]) and r["reason"] == ""
        else:
            assert r["reason"]


@pytest.mark.filterwarnings("ignore")
@FUZZ
@given(st.lists(st.text(alphabet=SMILES_ALPHABET, max_size=120) | st.text(max_size=60), min_size=1, max_size=5))
def test_smiles_scorer_on_random_text(strings: list[str]) -> None:
    _check_smiles_rows(strings)


@pytest.mark.filterwarnings("ignore")
@FUZZ
@given(st.sampled_from(["C", "c1ccccc1", "C(", "CC(=O)O"]), st.integers(1, 100_000))
def test_smiles_scorer_on_very_long_lines(unit: str, repeat: int) -> None:
    _check_smiles_rows([unit * repeat])


@pytest.mark.filterwarnings("ignore")
@FUZZ
@given(st.binary(max_size=400))
def test_smiles_scorer_on_random_bytes(data: bytes) -> None:
    _check_smiles_rows([data.decode("utf-8", errors="replace")])
