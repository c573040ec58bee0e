"""The GVAE symbolic-regression score of an expression (lower is better).

``score(f) = log(1 + mean(min((f(x) - g(x))^2, 1000)))`` over 1000 points
``x = linspace(-10, 10)``, target ``g(x) = 1/3 + x + sin(x*x)``; an invalid expression,
or one whose score is not finite, scores ``log(1 + 1000)``.

No ``eval``: the string is parsed with the expression grammar and its derivation is
walked with numpy. The grammar is flat (``S -> S '*' T`` has no precedence) but GVAE
evaluated the *string* with Python, so each operator chain is evaluated with Python's
precedence (``*`` and ``/`` before ``+``, left to right). As in GVAE (numpy arrays, true
division), a point that overflows or divides by zero becomes ``inf`` and is capped at
1000 like any other large error; only a non-finite mean (``nan`` from ``inf - inf`` or
``0 * inf``) gives the worst score.

Example:
    >>> round(expression_score("1/3+x+sin(x*x)"), 6)
    0.0
    >>> expression_score("x+") == WORST
    True
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np

from molshape.grammar.cfg import Grammar, GrammarError, load_grammar
from molshape.grammar.parser import get_parser

#: Cap on the squared error at one point, and the worst score ``log(1 + 1000)``.
CAP = 1000.0
WORST = math.log1p(CAP)

#: Expression derivations longer than the model's 15 rules are still scorable.
_SCORING_MAX_LENGTH = 10_000

_BINARY = {"+": np.add, "*": np.multiply, "/": np.divide}
_UNARY = {"sin(": np.sin, "exp(": np.exp, "(": lambda v: v}


@lru_cache(maxsize=1)
def target_points() -> tuple[np.ndarray, np.ndarray]:
    """``(x [1000], g(x) [1000])`` of the GVAE target ``1/3 + x + sin(x*x)``."""
    x = np.linspace(-10, 10, 1000)
    return x, 1 / 3 + x + np.sin(x * x)


def _grammar() -> Grammar:
    return load_grammar("expr", max_length=_SCORING_MAX_LENGTH)


def _tree(rules: Sequence[int], grammar: Grammar) -> tuple:
    """Leftmost derivation -> nested ``(rule, children)`` tree (children: subtrees of nonterminals).

    Built with an explicit stack of open nodes, so deep nesting cannot hit Python's recursion limit.
    """
    arity = [len(nts) for nts in grammar.rhs_nonterminals]
    root: tuple = (rules[0], [])
    open_nodes = [root] if arity[rules[0]] else []
    for r in rules[1:]:
        node: tuple = (r, [])
        parent = open_nodes[-1]
        parent[1].append(node)
        if len(parent[1]) == arity[parent[0]]:
            open_nodes.pop()
        if arity[r]:
            open_nodes.append(node)
    return root


def _evaluate(root: tuple, grammar: Grammar, x: np.ndarray) -> np.ndarray:
    """Values of a derivation tree at ``x``, evaluated with an explicit work stack (no recursion)."""
    values: list[np.ndarray] = []
    todo: list[tuple] = [("eval", root)]
    while todo:
        op, item = todo.pop()
        if op == "apply":  # a unary function of the value just computed
            values[-1] = item(values[-1])
        elif op == "chain":  # combine the last len(ops) + 1 values
            n = len(item) + 1
            operands = values[-n:]
            del values[-n:]
            values.append(_chain(operands, item))
        else:
            todo.extend(_expand_node(item, grammar, x, values))
    return values[0]


def _expand_node(node: tuple, grammar: Grammar, x: np.ndarray, values: list[np.ndarray]) -> list[tuple]:
    """One evaluation step: push a leaf's value, or return the work (popped last-first) for a node."""
    rule, children = node
    toks = grammar.rhs_tokens[rule]
    if len(toks) == 3 and toks[0] is None and toks[2] is None:  # S -> S op T: an operator chain
        terms, ops = [], []
        while len(toks) == 3 and toks[0] is None:
            ops.append(toks[1])
            terms.append(children[1])
            (rule, children) = children[0]
            toks = grammar.rhs_tokens[rule]
        terms.append((rule, children))
        ops.reverse()
        # terms is right-to-left, so the leftmost term is evaluated (popped) first
        return [("chain", ops), *(("eval", t) for t in terms)]
    if toks == (None,):  # S -> T
        return [("eval", children[0])]
    if len(toks) == 3 and toks[1] is None and toks[0] in _UNARY:  # T -> f( S )
        return [("apply", _UNARY[toks[0]]), ("eval", children[0])]
    if len(toks) == 1 and toks[0] == "x":
        values.append(x)
        return []
    if len(toks) == 1 and toks[0].isdigit():
        values.append(np.full_like(x, float(toks[0])))
        return []
    raise ValueError(f"expression evaluator does not know production {grammar.productions[rule]}")


def _chain(values: list[np.ndarray], ops: list[str]) -> np.ndarray:
    """``v0 op1 v1 op2 v2 ...`` with ``*``/``/`` binding tighter than ``+``, left to right."""
    total = None
    product = values[0]
    for op, v in zip(ops, values[1:]):
        if op == "+":
            total = product if total is None else total + product
            product = v
        else:
            product = _BINARY[op](product, v)
    return product if total is None else total + product


def expression_values(s: str, x: np.ndarray | None = None) -> np.ndarray:
    """Values of expression ``s`` at points ``x`` (default: the 1000 scoring points).

    Values may be ``inf``/``nan`` (overflow, division by zero); numpy warnings are silenced.

    Raises:
        GrammarError: ``s`` is not an expression of the grammar.
    """
    x = target_points()[0] if x is None else np.asarray(x, dtype=np.float64)
    g = _grammar()

    rules = get_parser(g).parse(s)
    with np.errstate(all="ignore"):
        return np.broadcast_to(_evaluate(_tree(rules, g), g, x), x.shape).copy()


def expression_score(s: str | None) -> float:
    """GVAE score of ``s`` (lower is better); ``WORST`` for invalid or non-finite."""
    return score_with_reason(s)[0]


def score_with_reason(s: str | None) -> tuple[float, str | None]:
    """``(score, None)`` or ``(WORST, reason)`` for an invalid or non-finite expression."""
    if s is None:
        return WORST, "no string (decoding failed or was incomplete)"
    try:
        f = expression_values(s)
    except GrammarError as e:
        return WORST, f"not an expression: {e.reason}"
    with np.errstate(all="ignore"):
        score = float(np.log1p(np.mean(np.minimum((f - target_points()[1]) ** 2, CAP))))
    if not math.isfinite(score):
        return WORST, "non-finite values (nan)"
    return score, None


def score_many(strings: Iterable[str | None]) -> np.ndarray:
    """Scores of many expressions as float64 ``[N]`` (``WORST`` for invalid ones)."""
    return np.array([expression_score(s) for s in strings], dtype=np.float64)
