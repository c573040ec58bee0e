"""Canonical LR(1) tables built from a :class:`~molshape.grammar.cfg.Grammar`, nothing typed twice.

The SMILES grammar is not LR(1): after an atom, a bond token may start a ring bond
(``C-1``) or a chained atom (``C-C``); only the token after the bond decides. Such
conflicts are kept as tuples of actions in the table, and the parser resolves them
by a short trial parse (see :mod:`molshape.grammar.parser`).

Action encoding (per state, a dict terminal -> action):
    ``a >= 0``: shift and go to state ``a``; ``a < 0``: reduce by rule ``-a - 1``;
    :data:`ACCEPT`; a tuple of such ints: an LR(1) conflict.
"""

from __future__ import annotations

from dataclasses import dataclass

from molshape.grammar.cfg import PAD_SYMBOL, Grammar

#: End-of-input pseudo terminal (never a real terminal: terminals are non-empty).
END = ""
#: The accept action.
ACCEPT = "accept"
Action = int | str | tuple[int, ...]


@dataclass(frozen=True)
class LRTables:
    """LR(1) automaton of one grammar.

    Attributes:
        action: per state, terminal (or :data:`END`) -> action (see module doc).
        goto: per state, nonterminal symbol index -> next state.
        rule_length: per rule id, number of right-hand symbols (terminals included).
        rule_lhs: per rule id, left-hand symbol index.
        n_conflicts: number of (state, terminal) entries holding more than one action.
    """

    action: tuple[dict[str, Action], ...]
    goto: tuple[dict[int, int], ...]
    rule_length: tuple[int, ...]
    rule_lhs: tuple[int, ...]
    n_conflicts: int


# Over 60 lines: the canonical LR(1) construction (closure, goto, action table) reads best as
# the one textbook loop it is.
def build_tables(g: Grammar) -> LRTables:
    """Canonical LR(1) collection of ``g`` (all productions but the padding one)."""
    # rhs as symbols: nonterminals are ints (symbol indices), terminals are strings
    rhs: list[tuple[int | str, ...]] = []
    for r in range(g.n_productions):
        nts = iter(g.rhs_nonterminals[r])
        rhs.append(tuple(t if t is not None else next(nts) for t in g.rhs_tokens[r]))
    rules = [r for r in range(g.n_productions) if g.symbols[g.lhs[r]] != PAD_SYMBOL]
    aug = g.n_productions  # augmented rule S' -> start, with S' = symbol -1
    rhs.append((g.start,))
    lhs = list(g.lhs) + [-1]
    by_lhs: dict[int, list[int]] = {}
    for r in rules:
        by_lhs.setdefault(g.lhs[r], []).append(r)

    first = _first_sets(rules, lhs, rhs)

    def first_of(seq: tuple[int | str, ...], la: str) -> set[str]:
        out: set[str] = set()
        for x in seq:
            if isinstance(x, str):
                out.add(x)
                return out
            f = first.get(x, set())
            out |= f - {None}
            if None not in f:
                return out
        out.add(la)
        return out

    def closure(items: frozenset) -> frozenset:
        todo = list(items)
        seen = set(items)
        while todo:
            r, dot, la = todo.pop()
            if dot < len(rhs[r]) and not isinstance(rhs[r][dot], str):
                lookaheads = first_of(rhs[r][dot + 1:], la)
                for q in by_lhs.get(rhs[r][dot], ()):
                    for b in lookaheads:
                        item = (q, 0, b)
                        if item not in seen:
                            seen.add(item)
                            todo.append(item)
        return frozenset(seen)

    states = [closure(frozenset({(aug, 0, END)}))]
    index = {states[0]: 0}
    transitions: list[dict[int | str, int]] = []
    k = 0
    while k < len(states):
        moves: dict[int | str, set] = {}
        for r, dot, la in states[k]:
            if dot < len(rhs[r]):
                moves.setdefault(rhs[r][dot], set()).add((r, dot + 1, la))
        row: dict[int | str, int] = {}
        for x, kernel in moves.items():
            target = closure(frozenset(kernel))
            if target not in index:
                index[target] = len(states)
                states.append(target)
            row[x] = index[target]
        transitions.append(row)
        k += 1

    action: list[dict[str, Action]] = []
    goto: list[dict[int, int]] = []
    n_conflicts = 0
    for items, row in zip(states, transitions):
        acts: dict[str, set] = {}
        for x, target in row.items():
            if isinstance(x, str):
                acts.setdefault(x, set()).add(target)
        for r, dot, la in items:
            if dot == len(rhs[r]):
                acts.setdefault(la, set()).add(ACCEPT if r == aug else -r - 1)
        table: dict[str, Action] = {}
        for t, options in acts.items():
            if len(options) == 1:
                table[t] = options.pop()
            else:
                n_conflicts += 1
                table[t] = tuple(sorted(options, key=str))
        action.append(table)
        goto.append({x: s for x, s in row.items() if not isinstance(x, str)})
    return LRTables(
        action=tuple(action),
        goto=tuple(goto),
        rule_length=tuple(len(x) for x in rhs[:aug]),
        rule_lhs=tuple(g.lhs),
        n_conflicts=n_conflicts,
    )


def _first_sets(rules: list[int], lhs: list[int], rhs: list[tuple]) -> dict[int, set]:
    """FIRST set per nonterminal; ``None`` in a set marks a nullable symbol."""
    first: dict[int, set] = {lhs[r]: set() for r in rules}
    changed = True
    while changed:
        changed = False
        for r in rules:
            acc: set = set()
            nullable = True
            for x in rhs[r]:
                if isinstance(x, str):
                    acc.add(x)
                    nullable = False
                    break
                f = first.get(x, set())
                acc |= f - {None}
                if None not in f:
                    nullable = False
                    break
            if nullable:
                acc.add(None)
            if not acc <= first[lhs[r]]:
                first[lhs[r]] |= acc
                changed = True
    return first
