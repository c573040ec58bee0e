"""The random expression generator: valid, exact, seeded, unique, varied."""

from __future__ import annotations

from collections import Counter

import pytest

from molshape.grammar.expressions import count_derivations, generate_expressions, sample_derivations
from molshape.grammar.cfg import load_grammar
from molshape.grammar.parser import get_parser


@pytest.fixture(scope="module")
def expr():
    return load_grammar("expr")


@pytest.fixture(scope="module")
def drawn(expr):
    return sample_derivations(expr, 3000, max_rules=15, seed=0)


def test_every_string_parses_to_its_derivation_and_expands_back(expr, drawn):
    parser = get_parser(expr)
    for s, rules in drawn:
        assert " " not in s
        assert len(rules) <= 15
        assert parser.parse(s) == rules, s
        assert parser.expand(rules) == s


def test_derivations_use_only_choosable_productions(expr, drawn):
    used = {r for _, rules in drawn for r in rules}
    assert expr.pad not in used
    assert not used & set(expr.unusable)
    assert used == set(range(expr.n_productions)) - {expr.pad} - set(expr.unusable)


def test_deterministic_under_seed_and_unique(expr):
    a = generate_expressions(expr, 500, seed=3)
    assert a == generate_expressions(expr, 500, seed=3)
    assert a != generate_expressions(expr, 500, seed=4)
    assert len(set(a)) == len(a)
    # a longer draw starts with the shorter one: n does not change earlier draws
    assert generate_expressions(expr, 700, seed=3)[:500] == a


def test_distribution_is_varied(expr, drawn):
    strings = [s for s, _ in drawn]
    lengths = Counter(len(r) for _, r in drawn)
    assert len(lengths) >= 3  # several derivation lengths, not only the longest
    assert max(lengths) <= 15
    text = "".join(strings)
    for terminal in expr.terminals:
        assert terminal in text, terminal
    # no single top-level shape dominates: first rules are spread over S's productions
    first = Counter(r[0] for _, r in drawn)
    assert len(first) == len(expr.masks[expr.start].nonzero())
    assert max(first.values()) < 0.6 * len(drawn)


def test_counts_are_exact_by_exhausting_a_small_bound(expr):
    counts = count_derivations(expr, 6)
    total = counts.total(expr.start)
    assert counts.by_symbol[expr.start][:7] == (0, 0, 4, 0, 60, 0, 1044)
    everything = generate_expressions(expr, total, max_rules=6, seed=0)
    parser = get_parser(expr)
    assert len(set(everything)) == total
    assert all(len(parser.parse(s)) <= 6 for s in everything)
    with pytest.raises(ValueError, match="only 1,108 derivations"):
        generate_expressions(expr, total + 1, max_rules=6)


def test_works_for_any_grammar_from_its_tables():
    smiles = load_grammar("smiles")
    parser = get_parser(smiles)
    for s, rules in sample_derivations(smiles, 50, max_rules=40, seed=1):
        assert len(rules) <= 40
        assert parser.expand(rules) == s
