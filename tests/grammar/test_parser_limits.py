"""The LR parser on grammars with empty productions, and its bounds on work."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from molshape.grammar.cfg import GrammarError, load_grammar
from molshape.grammar.parser import Parser, _RuleLimit, get_parser, nltk_parse

# Nullable symbols at the start (A), in the middle (B), behind a unit chain (D -> A) and at
# the end of a right-recursive list (L -> 'l' L | empty).
EPSILON_CFG = """S -> A B 'z'
S -> 'q' S
S -> 'c' D 'c'
S -> 'l' L
A -> 'a' A
A ->
B -> 'b'
B ->
D -> A
L -> 'l' L
L ->
Nothing -> None
"""


@pytest.fixture(scope="module")
def epsilon(tmp_path_factory: pytest.TempPathFactory) -> Parser:
    path = tmp_path_factory.mktemp("eps") / "eps.cfg"
    path.write_text(EPSILON_CFG)
    return get_parser(load_grammar(str(path), max_length=40))


def test_epsilon_grammar_matches_nltk_on_every_short_string(epsilon: Parser) -> None:
    g = epsilon.grammar
    assert any(len(toks) == 0 for toks in g.rhs_tokens[:-1])  # the file really has empty productions
    accepted = 0
    for n in range(1, 6):
        for tokens in itertools.product("abzqcl", repeat=n):
            s = "".join(tokens)
            reference = nltk_parse(g, list(tokens))
            try:
                rules = epsilon.parse(s)
            except GrammarError:
                assert reference is None, s
                continue
            assert rules == reference, s
            assert epsilon.expand(rules) == s
            accepted += 1
    assert accepted > 40  # the comparison covered many sentences, not just failures


@pytest.mark.parametrize("s", ["z", "bz", "az", "aaz", "abz", "qqz", "cc", "cac", "l", "lll", "qcaac"])
def test_epsilon_sentences(epsilon: Parser, s: str) -> None:
    rules = epsilon.parse(s)
    assert rules == nltk_parse(epsilon.grammar, list(s))
    assert epsilon.expand(rules + [epsilon.grammar.pad] * 3) == s


def test_epsilon_errors_name_the_position(epsilon: Parser) -> None:
    with pytest.raises(GrammarError) as info:
        epsilon.parse("abbz")
    assert info.value.position == 2 and "unexpected 'b'" in info.value.reason


def test_long_lines_are_refused_before_tokenising() -> None:
    p = get_parser(load_grammar("smiles"))
    with pytest.raises(GrammarError) as info:
        p.parse("C" * 1_000_000)
    assert "characters" in info.value.reason and "max_length 277" in info.value.reason


def test_too_many_tokens_are_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    p = Parser(load_grammar("smiles"))
    calls = []
    monkeypatch.setattr(p, "_parse_tokens", lambda *a: calls.append(a))
    with pytest.raises(GrammarError, match="tokens: more than max_length 277"):
        p.parse("C" * (277 * 2 + 1))  # 555 one-character tokens: more than 277 rules of <= 2 terminals
    assert calls == []


def test_the_parse_stops_at_the_rule_limit() -> None:
    p = get_parser(load_grammar("smiles"))
    tokens = p.tokenize("C" * 150)  # 150 atoms need 4 rules each, plus the start rule
    with pytest.raises(_RuleLimit):
        p._parse_tokens("C" * 150, tokens, 277)
    assert len(p._parse_tokens("C" * 150, tokens, None)) == 4 * 150 + 1


def test_deep_nesting_parses_without_recursion() -> None:
    from molshape.scoring.expr_score import _grammar

    p = get_parser(_grammar())  # the scoring grammar allows 10,000 rules
    s = "(" * 2000 + "x" + ")" * 2000
    rules = p.parse(s)
    assert p.expand(rules) == s
    assert rules == [3, 4] * 2000 + [3, 7]  # S -> T, T -> ( S ) per level, then S -> T, T -> x


def test_ambiguous_epsilon_grammar_is_reported(tmp_path: Path) -> None:
    cfg = tmp_path / "amb_eps.cfg"
    cfg.write_text("S -> A 'x'\nS -> B 'x'\nA ->\nB ->\nNothing -> None\n")
    p = Parser(load_grammar(str(cfg), max_length=10))
    with pytest.raises(GrammarError):
        p.parse("x")
