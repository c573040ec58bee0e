"""Random derivations of a grammar: the expression data set without a download.

Draws derivations uniformly from all complete leftmost derivations of the start symbol
with at most ``max_rules`` productions, so no expression shape is favoured over another.
Everything comes from the :class:`~molshape.grammar.cfg.Grammar` tables (``masks``,
``rhs_nonterminals``, ``rhs_tokens``): counting by dynamic programming tells how many
derivations of each symbol have exactly ``k`` productions; sampling then walks down,
choosing each production and each child's share of the length in proportion to those
counts. With the GVAE expression grammar every derivation has an even length and the
count grows ~22x per step, so the uniform draw gives ~95 % length 14, 4 % length 12 and
the rest shorter; GVAE's own 100,000-set is less skewed (69 % length 14, 28 % length 12).

Strings come out without spaces (``x+sin(x*2)``) and are unique: the grammar is
unambiguous, so distinct derivations are distinct strings; duplicates drawn are skipped.

Example:
    >>> g = load_grammar("expr")
    >>> generate_expressions(g, 3, seed=1)   # doctest: +SKIP
    ['(x)/3*exp(2)', 'x*1+x/(x)', 'sin(x)/x*2']
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from molshape.grammar.cfg import Grammar, load_grammar


@dataclass(frozen=True)
class DerivationCounts:
    """Number of derivations per symbol and length, for one grammar and length bound.

    Attributes:
        max_rules: the length bound ``K``.
        by_symbol: ``[n_symbols][K + 1]``: derivations of symbol ``X`` with exactly ``k`` rules.
        prefix: per production, ``m + 1`` rows of length ``K + 1``: row ``j`` counts the ways
            its first ``j`` right-hand nonterminals derive ``t`` rules together.
        choices: per symbol, the productions that may expand it.
    """

    max_rules: int
    by_symbol: tuple[tuple[int, ...], ...]
    prefix: tuple[tuple[tuple[int, ...], ...], ...]
    choices: tuple[tuple[int, ...], ...]

    def ways(self, production: int, k: int) -> int:
        """Derivations with exactly ``k`` rules that start with ``production``."""
        return self.prefix[production][-1][k - 1] if k >= 1 else 0

    def total(self, symbol: int) -> int:
        """Derivations of ``symbol`` with at most ``max_rules`` rules."""
        return sum(self.by_symbol[symbol])


def count_derivations(grammar: Grammar, max_rules: int) -> DerivationCounts:
    """Count derivations of every symbol up to ``max_rules`` productions (exact integers)."""
    return _count(grammar, max_rules)


@lru_cache(maxsize=8)
def _count(grammar: Grammar, max_rules: int) -> DerivationCounts:
    K = max_rules
    choices = tuple(tuple(int(p) for p in grammar.masks[s].nonzero().flatten()) for s in range(grammar.n_symbols))
    children = grammar.rhs_nonterminals
    n = [[0] * (K + 1) for _ in range(grammar.n_symbols)]
    # prefix[p][j][t]: ways the first j children of p derive t rules; row 0 is "nothing left"
    prefix = [[[1] + [0] * K] + [[0] * (K + 1) for _ in children[p]] for p in range(grammar.n_productions)]
    for k in range(1, K + 1):
        t = k - 1  # rules left for the children once p itself is used
        # children only ever need counts of length <= t < k, all final by now
        for p in range(grammar.n_productions):
            rows = prefix[p]
            for j, c in enumerate(children[p], start=1):
                rows[j][t] = sum(rows[j - 1][s] * n[c][t - s] for s in range(t + 1))
        for s, ps in enumerate(choices):
            n[s][k] = sum(prefix[p][-1][t] for p in ps)
    return DerivationCounts(
        max_rules=K,
        by_symbol=tuple(tuple(row) for row in n),
        prefix=tuple(tuple(tuple(r) for r in rows) for rows in prefix),
        choices=choices,
    )


def _pick(rng: random.Random, weights: list[int]) -> int:
    """Index drawn with probability proportional to integer ``weights`` (exact, no floats)."""
    r = rng.randrange(sum(weights))
    for i, w in enumerate(weights):
        if r < w:
            return i
        r -= w
    raise AssertionError("unreachable")


def _sample(grammar: Grammar, counts: DerivationCounts, symbol: int, k: int,
            rng: random.Random, rules: list[int]) -> str:
    """Append a uniform derivation of ``symbol`` with exactly ``k`` rules to ``rules``; return its text."""
    ps = counts.choices[symbol]
    p = ps[_pick(rng, [counts.ways(p, k) for p in ps])]
    rules.append(p)
    kids = grammar.rhs_nonterminals[p]
    rows = counts.prefix[p]
    # split the k - 1 remaining rules among the children, last child first
    lengths = [0] * len(kids)
    left = k - 1
    for j in range(len(kids), 0, -1):
        c = kids[j - 1]
        options = range(1, left + 1)
        i = _pick(rng, [counts.by_symbol[c][t] * rows[j - 1][left - t] for t in options])
        lengths[j - 1] = options[i]
        left -= options[i]
    parts = iter(_sample(grammar, counts, c, t, rng, rules) for c, t in zip(kids, lengths))
    # preorder = leftmost derivation, and rhs placeholders are filled left to right
    return "".join(tok if tok is not None else next(parts) for tok in grammar.rhs_tokens[p])


def sample_derivations(grammar: Grammar | str, n: int, max_rules: int = 15, seed: int = 0,
                       unique: bool = True) -> list[tuple[str, list[int]]]:
    """Draw ``n`` derivations uniformly among those with at most ``max_rules`` productions.

    Args:
        grammar: a Grammar or a built-in name.
        n: how many to draw.
        max_rules: length bound on the leftmost derivation (GVAE: 15).
        seed: the draws are a function of (grammar, n, max_rules, seed) only.
        unique: skip strings already drawn.

    Returns:
        ``n`` pairs ``(string, rules)``: the string without spaces and its leftmost
        derivation (unpadded rule ids).

    Raises:
        ValueError: ``n`` exceeds the number of distinct derivations (when ``unique``).
    """
    g = load_grammar(grammar) if isinstance(grammar, str) else grammar
    counts = count_derivations(g, max_rules)
    total = counts.total(g.start)
    if total == 0 or (unique and n > total):
        raise ValueError(f"grammar {g.name!r} has only {total:,} derivations with at most "
                         f"{max_rules} rules; cannot draw {n:,} unique ones")
    rng = random.Random(seed)
    length_weights = list(counts.by_symbol[g.start])
    out: list[tuple[str, list[int]]] = []
    seen: set[str] = set()
    while len(out) < n:
        rules: list[int] = []
        s = _sample(g, counts, g.start, _pick(rng, length_weights), rng, rules)
        if unique:
            if s in seen:
                continue
            seen.add(s)
        out.append((s, rules))
    return out


def generate_expressions(grammar: Grammar | str, n: int, max_rules: int = 15, seed: int = 0) -> list[str]:
    """``n`` unique random strings whose leftmost derivation has at most ``max_rules`` rules.

    Deterministic under ``seed``; see :func:`sample_derivations`.
    """
    return [s for s, _ in sample_derivations(grammar, n, max_rules, seed)]
