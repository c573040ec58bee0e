"""Strings <-> production sequences (leftmost derivations) for a :class:`Grammar`.

A canonical LR(1) automaton built from the grammar file (:mod:`molshape.grammar.lr_tables`)
drives a tight shift/reduce loop. Each stack value is a node ``[rule, child, ...]`` of
the parse tree (terminals are ``None``); the accepted tree is flattened once, in
preorder, so parsing is linear in the input length and the result is the leftmost
derivation, the same one
``nltk.ChartParser`` returns (the grammars are unambiguous; :func:`nltk_parse` is kept
as the reference for tests and benchmarks) at a few hundred times its speed. The one
kind of LR(1) conflict in the SMILES grammar (bond after an atom: ring bond or chain)
is settled by a trial parse of the next tokens. Empty (epsilon) productions are
supported: their reduce pops nothing and pushes ``[rule]``.

Work is bounded: a line with more tokens than ``max_length`` derivation steps can
produce is refused before it is parsed, and a parse stops as soon as it has reduced
more than ``max_length`` rules.

Example:
    >>> p = get_parser(load_grammar("expr"))  # doctest: +SKIP
    >>> p.expand(p.parse("x+sin(1)")) == "x+sin(1)"  # doctest: +SKIP
    True
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from multiprocessing import get_context
from typing import Iterable, Sequence

import nltk

from molshape.core.runtime import init_pool_worker
from molshape.grammar.cfg import Grammar, GrammarError
from molshape.grammar.lr_tables import ACCEPT, END, build_tables

_WHITESPACE = re.compile(r"\s+")
#: Grammars whose strings may carry whitespace between tokens (the GVAE expression file does).
WHITESPACE_SEPARATED = frozenset({"expr"})


class Parser:
    """Tokenise, parse and expand strings of one grammar."""

    def __init__(self, grammar: Grammar) -> None:
        self.grammar = grammar
        self._skip_space = grammar.name in WHITESPACE_SEPARATED
        alternatives = "|".join(re.escape(t) for t in grammar.terminals)  # longest first
        self._token_re = re.compile(alternatives)
        self._tables = build_tables(grammar)
        # per rule, its right side reversed for the expansion stack (symbols as ints)
        self._pending = []
        for toks, nts in zip(grammar.rhs_tokens, grammar.rhs_nonterminals):
            it = iter(nts)
            self._pending.append(tuple(reversed([t if t is not None else next(it) for t in toks])))
        # reduce action -> (rule id, right-hand length, left-hand symbol)
        self._reduce_info = {-r - 1: (r, n, lhs) for r, (n, lhs) in
                             enumerate(zip(self._tables.rule_length, self._tables.rule_lhs))}
        # most terminals one rule yields, and the longest terminal: bounds for _check_size
        self._max_yield = max(1, max(sum(t is not None for t in toks) for toks in grammar.rhs_tokens))
        self._max_token = max(map(len, grammar.terminals), default=1)

    def _tokens_with_positions(self, s: str) -> tuple[list[str], list[int]]:
        """Tokens and their 0-based character offsets in ``s`` (slow path, used on errors)."""
        if not s.strip():
            raise GrammarError(s, 0, "empty string")
        tokens: list[str] = []
        positions: list[int] = []
        i, n = 0, len(s)
        match = self._token_re.match
        while i < n:
            if self._skip_space and s[i].isspace():
                i += 1
                continue
            m = match(s, i)
            if m is None:
                raise GrammarError(s, i, f"unknown character {s[i]!r}")
            tokens.append(m.group())
            positions.append(i)
            i = m.end()
        return tokens, positions

    def tokenize(self, s: str) -> list[str]:
        """Split ``s`` into grammar terminals (longest match first); raises GrammarError.

        Expression grammars ignore whitespace between tokens; SMILES allows none.
        """
        compact = _WHITESPACE.sub("", s) if self._skip_space else s
        self._check_size(s, len(compact))
        tokens = self._token_re.findall(compact)
        if not tokens or sum(map(len, tokens)) != len(compact):
            return self._tokens_with_positions(s)[0]  # raises with the exact position
        return tokens

    def _check_size(self, s: str, n_chars: int) -> None:
        """Refuse a string too long for any derivation of ``max_length`` rules, before any work.

        Each rule yields at most ``_max_yield`` terminals of at most ``_max_token`` characters,
        so longer strings cannot parse; refusing them early keeps a 1 MB line cheap.
        """
        limit = self.grammar.max_length * self._max_yield
        if n_chars > limit * self._max_token:
            raise GrammarError(s, None, f"{n_chars} characters: too long for a derivation of at most "
                                        f"max_length {self.grammar.max_length} rules")

    def parse(self, s: str) -> list[int]:
        """Leftmost derivation of ``s`` as rule ids (not padded); raises GrammarError."""
        tokens = self.tokenize(s)
        limit = self.grammar.max_length
        if len(tokens) > limit * self._max_yield:
            raise GrammarError(s, None, f"{len(tokens)} tokens: more than max_length {limit} rules can produce")
        try:
            return self._parse_tokens(s, tokens, limit)
        except _RuleLimit:
            # the parse stopped at rule limit + 1; the full derivation (bounded by the token
            # check above) only serves to point at the first token beyond the limit
            raise self._too_long(s, self._parse_tokens(s, tokens, None)) from None

    def _too_long(self, s: str, rules: list[int]) -> GrammarError:
        # position: the first token not yet produced after max_length leftmost-derivation steps
        limit = self.grammar.max_length
        produced, _ = self._expand(rules[:limit])
        position = self._tokens_with_positions(s)[1][len(produced)]
        return GrammarError(s, position, f"derivation needs {len(rules)} rules, more than max_length {limit}")

    def _parse_tokens(self, s: str, tokens: list[str], limit: int | None) -> list[int]:
        """Shift/reduce loop building tree nodes ``[rule, *children]``; preorder at the end.

        Raises:
            GrammarError: the tokens are not a sentence of the grammar.
            _RuleLimit: more than ``limit`` rules were reduced (``None``: no limit).
        """
        action, goto, reduce_info = self._tables.action, self._tables.goto, self._reduce_info
        tokens = tokens + [END]
        states = [0]
        values: list = []
        i = 0
        tok = tokens[0]
        budget = -1 if limit is None else limit
        while True:
            a = action[states[-1]].get(tok)
            if a.__class__ is not int:
                if a is None:
                    raise self._unexpected(s, tokens, i, states[-1])
                if a == ACCEPT:
                    return _preorder(values[0])
                a = self._resolve(states, tokens, i, a)
            if a >= 0:  # shift; terminals contribute no rules
                states.append(a)
                values.append(None)
                i += 1
                tok = tokens[i]
                continue
            if budget == 0:
                raise _RuleLimit
            budget -= 1
            r, n, lhs = reduce_info[a]
            if n == 0:  # epsilon production: nothing to pop
                values.append([r])
                states.append(goto[states[-1]][lhs])
            elif n == 1:
                values[-1] = [r, values[-1]]
                states[-1] = goto[states[-2]][lhs]
            else:
                node = [r, *values[-n:]]
                del values[-n:]
                del states[-n:]
                values.append(node)
                states.append(goto[states[-1]][lhs])

    def _resolve(self, states: list[int], tokens: list[str], i: int, options: tuple) -> int:
        """Pick the one action of an LR(1) conflict that survives a trial parse of the next tokens."""
        horizon = 1
        while True:
            reached = [self._trial(states, tokens, i, a, i + horizon) for a in options]
            alive = [a for a, k in zip(options, reached) if k is None]
            if len(alive) == 1:
                return alive[0]
            if not alive:  # continue with the furthest one so the main loop reports the error
                return options[max(range(len(options)), key=lambda j: reached[j])]
            if i + horizon >= len(tokens) - 1:
                raise GrammarError("".join(tokens), None, "ambiguous grammar: several parses")
            horizon *= 2

    def _trial(self, states: list[int], tokens: list[str], i: int, a, target: int) -> int | None:
        """Run the recogniser from action ``a``; None if it shifts ``tokens[target]``
        (or accepts), else the index of the token where it fails."""
        action, goto, reduce_info = self._tables.action, self._tables.goto, self._reduce_info
        states = states[:]
        while True:
            if a is None:
                return i
            if a == ACCEPT:
                return None
            if a.__class__ is tuple:
                reached = [self._trial(states, tokens, i, b, target) for b in a]
                return None if None in reached else max(reached)
            if a >= 0:
                if i == target:
                    return None
                states.append(a)
                i += 1
            else:
                _, n, lhs = reduce_info[a]
                if n:  # an epsilon production pops nothing (del states[-0:] would clear it)
                    del states[-n:]
                states.append(goto[states[-1]][lhs])
            a = action[states[-1]].get(tokens[i])

    def _unexpected(self, s: str, tokens: list[str], i: int, state: int) -> GrammarError:
        expected = sorted(t for t in self._tables.action[state] if t != END)
        exp = ", ".join(repr(t) for t in expected[:12]) + (" ..." if len(expected) > 12 else "")
        if tokens[i] == END:
            where = len(s.rstrip()) if s.strip() else 0
            return GrammarError(s, where, f"unexpected end of input (expected {exp})")
        ends = "end of input" if END in self._tables.action[state] else ""
        expect = ", ".join(x for x in (exp, ends) if x)
        position = self._tokens_with_positions(s)[1][i]
        return GrammarError(s, position, f"unexpected {tokens[i]!r} (expected {expect})")

    def expand(self, rules: Iterable[int]) -> str:
        """The string a leftmost derivation produces; trailing pad rules are ignored.

        Raises:
            GrammarError: a rule does not expand the leftmost open nonterminal, the
                derivation ends early, or non-pad rules follow a complete derivation.
        """
        seq = [int(r) for r in rules]
        out, stack = self._expand(seq)
        if stack:
            raise GrammarError(_short(seq), len(seq),
                               f"incomplete derivation: {self.grammar.symbols[stack[-1]]} left unexpanded")
        return "".join(out)

    def _expand(self, seq: list[int]) -> tuple[list[str], list[int | str]]:
        """Apply ``seq`` leftmost-first: (terminals produced, pending stack: ints are symbols)."""
        g = self.grammar
        out: list[str] = []
        stack: list[int | str] = [g.start]  # pending right-hand items, leftmost on top
        for k, r in enumerate(seq):
            while stack and stack[-1].__class__ is str:
                out.append(stack.pop())
            if not stack:
                if r != g.pad:
                    raise GrammarError(_short(seq), k, f"rule {r} after the derivation is complete")
                continue
            if not 0 <= r < g.n_productions:
                raise GrammarError(_short(seq), k, f"rule id {r} out of range 0..{g.n_productions - 1}")
            symbol = stack.pop()
            if g.lhs[r] != symbol:
                raise GrammarError(_short(seq), k, f"rule {r} ({g.productions[r]}) cannot expand {g.symbols[symbol]}")
            stack.extend(self._pending[r])
        while stack and stack[-1].__class__ is str:
            out.append(stack.pop())
        return out, stack


class _RuleLimit(Exception):
    """A parse reduced more rules than its limit (internal: :meth:`Parser.parse` reports it)."""


def _preorder(root: list) -> list[int]:
    """Rule ids of a tree of nodes ``[rule, *children]`` (terminals ``None``) in preorder.

    Iterative, so no recursion limit: deep nesting is as cheap as a long chain.
    """
    out: list[int] = []
    stack = [root]
    while stack:
        node = stack.pop()
        out.append(node[0])
        stack.extend(c for c in reversed(node[1:]) if c is not None)
    return out


def _short(seq: Sequence[int], n: int = 12) -> str:
    head = ", ".join(map(str, seq[:n]))
    return f"[{head}{', ...' if len(seq) > n else ''}] ({len(seq)} rules)"


@lru_cache(maxsize=None)
def get_parser(grammar: Grammar) -> Parser:
    """The (cached) parser of ``grammar``."""
    return Parser(grammar)


_worker_parser: Parser | None = None


def _init_worker(grammar: Grammar) -> None:
    global _worker_parser
    init_pool_worker()
    _worker_parser = get_parser(grammar)


def _parse_chunk(strings: list[str]) -> list[list[int] | tuple[str, int | None, str]]:
    # GrammarError does not pickle (its args differ from __init__'s), so ship its fields
    assert _worker_parser is not None
    return [r if isinstance(r, list) else (r.input, r.position, r.reason)
            for r in _parse_all(_worker_parser, strings)]


def _parse_all(parser: Parser, strings: Iterable[str]) -> list[list[int] | GrammarError]:
    out: list[list[int] | GrammarError] = []
    for s in strings:
        try:
            out.append(parser.parse(s))
        except GrammarError as e:
            out.append(e)
    return out


def parse_many(grammar: Grammar, strings: Sequence[str], workers: int | None = None,
               progress: bool = False, chunk_size: int = 2000) -> list[list[int] | GrammarError]:
    """Parse many strings, order preserved; a failure is returned as its GrammarError.

    Args:
        grammar: the grammar.
        strings: input strings.
        workers: processes to use (None: all cores); small inputs run in-process.
        progress: show a tqdm bar on stderr.
        chunk_size: strings per task sent to a worker.
    """
    from tqdm import tqdm

    strings = list(strings)
    workers = (os.cpu_count() or 1) if workers is None else max(1, workers)
    parser = get_parser(grammar)
    if workers == 1 or len(strings) < 2 * chunk_size:
        out: list[list[int] | GrammarError] = []
        with tqdm(total=len(strings), disable=not progress, unit="str", desc="parse") as bar:
            for i in range(0, len(strings), chunk_size):
                out.extend(_parse_all(parser, strings[i:i + chunk_size]))
                bar.update(min(chunk_size, len(strings) - i))
        return out
    chunks = [strings[i:i + chunk_size] for i in range(0, len(strings), chunk_size)]
    out = []
    with get_context().Pool(workers, initializer=_init_worker, initargs=(grammar,)) as pool, \
            tqdm(total=len(strings), disable=not progress, unit="str", desc="parse") as bar:
        for part in pool.imap(_parse_chunk, chunks):
            out.extend(r if isinstance(r, list) else GrammarError(*r) for r in part)
            bar.update(len(part))
    return out


def nltk_parse(grammar: Grammar, tokens: list[str]) -> list[int] | None:
    """Reference: the first ``nltk.ChartParser`` tree's productions as rule ids (None: no parse)."""
    rule_of = {p: i for i, p in enumerate(grammar.productions)}
    # nltk >= 3.9 stops a parse after 5 s by default; a reference must not depend on machine load
    tree = next(iter(nltk.ChartParser(grammar.cfg, max_time=None).parse(tokens)), None)
    return None if tree is None else [rule_of[p] for p in tree.productions()]
