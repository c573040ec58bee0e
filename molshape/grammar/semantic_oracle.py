"""The semantic constraints for one molecule in plain Python: the test oracle of
:class:`molshape.grammar.semantics.SmilesSemantics` (and of the reference decoder)."""

from __future__ import annotations

from collections import Counter

from molshape.grammar.cfg import Grammar
from molshape.grammar.semantic_rules import INF, MAX_BRANCH_DEPTH, MIN_RING, Kind, classify


class ReferenceSemantics:
    """The same rules for one molecule in plain Python: the test oracle of :class:`SmilesSemantics`.

    Distances come from a breadth-first search over the bonds made so far rather than the
    incremental shortest-path matrix, so the two share the rules but not the arithmetic.
    """

    def __init__(self, grammar: Grammar, max_length: int | None = None) -> None:
        self.grammar = grammar
        self.max_length = max_length or grammar.max_length
        self.kinds, self.args = classify(grammar)
        self.n_rings = sum(1 for k in self.kinds if k == Kind.DIGIT)
        self.rem: list[int] = []
        self.in_bond: list[int] = []
        self.adj: list[set[int]] = []
        self.cur = 0
        self.frames: list[int] = []
        self.pend = 0
        self.rings: dict[int, int] = {}  # slot -> opening atom

    def _dist(self, a: int, b: int) -> int:
        seen, frontier, d = {a}, [a], 0
        while frontier:
            if b in frontier:
                return d
            frontier = [y for x in frontier for y in self.adj[x] if y not in seen]
            seen.update(frontier)
            d += 1
        return INF

    def update(self, rule: int) -> None:
        kind, arg = self.kinds[rule], self.args[rule]
        if kind == Kind.START:
            self.pend = 0
        elif kind in (Kind.CHAIN, Kind.BRANCH):
            self.rem[self.cur] -= 1
            self.pend = 1
        elif kind in (Kind.BOND_CHAIN, Kind.BRANCH_BOND):
            self.pend = 1
        elif kind == Kind.BOND:
            self.rem[self.cur] -= arg
            self.pend = arg
        if kind in (Kind.BRANCH, Kind.BRANCH_BOND):
            self.frames.append(self.cur)
        elif kind == Kind.NEW_ATOM:
            x = len(self.rem)
            self.rem.append(0)
            self.in_bond.append(self.pend)
            self.adj.append(set())
            if x > 0:
                self.adj[x].add(self.cur)
                self.adj[self.cur].add(x)
            self.cur = x
        elif kind == Kind.ATOM:
            self.rem[self.cur] = arg - self.in_bond[self.cur]
        elif kind == Kind.DIGIT:
            self.rem[self.cur] -= 1
            if arg in self.rings:
                other = self.rings.pop(arg)
                self.adj[self.cur].add(other)
                self.adj[other].add(self.cur)
            else:
                self.rings[arg] = self.cur
        elif kind == Kind.END and self.frames:
            self.cur = self.frames.pop()

    def _grow(self, levels: list[tuple[int, int]], m: int) -> int:
        """levels: (rings opened at the level atom, capacity left there)."""
        costs = [6 * m + (4 if m and n_at == m else 0) for n_at, rem in levels if m == 0 or rem >= 1]
        return min(costs, default=INF)

    def needs(self) -> list[int]:
        """Steps left after each rule (INF where the rule is not allowed)."""
        m, k, cur = len(self.rings), len(self.frames), self.cur
        at = Counter(self.rings.values())
        rem_c = self.rem[cur] if self.rem else 0
        frames = [(at[f], self.rem[f]) for f in self.frames]
        best_frames = self._grow(frames, m)

        def child(kk: int, others: int) -> int:
            plain = 2 + 1 + kk + 1 + min(6 * m, others)
            closes = 2 + 3 + kk + 1 + 6 * (m - 1)
            return min(plain, closes) if at[cur] < m else plain

        out = []
        for rule, (kind, arg) in enumerate(zip(self.kinds, self.args)):
            need = INF
            if kind in (Kind.START, Kind.NEW_ATOM, Kind.OTHER):
                need = 0
            elif kind == Kind.END:
                need = (0 if m == 0 else INF) if k == 0 else k + best_frames
            elif kind in (Kind.CHAIN, Kind.BOND_CHAIN):
                order = 1 if kind == Kind.CHAIN else 2
                if rem_c >= order:
                    need = (order - 1) + child(k, best_frames)
            elif kind in (Kind.BRANCH, Kind.BRANCH_BOND):
                order = 1 if kind == Kind.BRANCH else 2
                if rem_c >= order and k < MAX_BRANCH_DEPTH:
                    need = (order - 1) + child(k + 1, self._grow([(at[cur], rem_c - order)] + frames, m))
            elif kind == Kind.BOND:
                if rem_c >= arg:
                    if self.frames and self.frames[-1] == cur:
                        after = self._grow([(at[cur], rem_c - arg)] + frames[:-1], m)
                    else:
                        after = best_frames
                    need = child(k, after)
            elif kind == Kind.ATOM and self.rem:
                left = arg - self.in_bond[cur]
                if left >= 0:
                    need = 1 + k + 1 + self._grow([(at[cur], left)] + frames, m)
                    far = any(self._dist(o, cur) >= MIN_RING - 1 for o in self.rings.values())
                    if far and left >= 1 and (m == 1 or left >= 2):
                        need = min(need, 3 + k + 1 + 6 * (m - 1))
            elif kind == Kind.DIGIT:
                need = self._digit_need(arg, at, rem_c, frames, m, k)
            elif kind == Kind.RINGS_DONE:
                need = k + 1 + self._grow([(at[cur], rem_c)] + frames, m)
            out.append(min(need, INF))
        digits = [n for n, kd in zip(out, self.kinds) if kd == Kind.DIGIT]
        for rule, kind in enumerate(self.kinds):
            if kind == Kind.MORE_RINGS:
                out[rule] = min(1 + min(digits, default=INF), INF)
        return out

    def _digit_need(self, slot: int, at: Counter, rem_c: int, frames: list, m: int, k: int) -> int:
        if rem_c < 1:
            return INF
        cur = self.cur
        at = Counter(at)
        if slot in self.rings:
            opener = self.rings[slot]
            if self._dist(opener, cur) < MIN_RING - 1:
                return INF
            at[opener] -= 1
            m2 = m - 1
        else:
            if m >= self.n_rings:
                return INF
            at[cur] += 1
            m2 = m + 1
        levels = [(at[cur], rem_c - 1)] + [(at[f], self.rem[f]) for f in self.frames]
        return 1 + k + 1 + self._grow(levels, m2)

    def allowed(self, steps_left: int) -> list[bool]:
        return [n <= steps_left for n in self.needs()]
