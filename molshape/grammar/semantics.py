"""Semantic constraints for Kekulé SMILES: every complete decode is a valid molecule.

The grammar ``grammars/smiles_kekule.cfg`` writes a molecule right-recursively, one atom
at a time, in the order SMILES text has it::

    chain -> atom rings              a new atom, then what follows it
    rings -> ring rings | tail       ring-bond digits first ...
    tail  -> '(' [bond] chain ')' tail | [bond] chain | (empty)   ... then branches, then the next atom

Because the atom is chosen before anything that bonds to it, a decoder can keep exact
bookkeeping beside the grammar stack (the idea of SD-VAE's attribute grammar, Dai et
al. 2018) and allow only productions that keep the molecule completable:

- **valence**: each atom has a bonding capacity (C 4, N 3, O 2, S 6, ``[NH+]`` 3 ...);
  bonds, ring bonds and branches spend it, and nothing may exceed it. Kekulé SMILES has
  no aromatic atoms, so valence alone decides validity (no kekulization can fail);
- **ring bonds**: a digit closes a ring that is open, else opens one. A closure must
  make a ring of 3 to 8 atoms (graph distance 2 to 7 between its ends, so never a
  duplicate bond), and every ring must be closed before the end;
- **length**: a production is allowed only if the molecule can still be completed,
  rings closed and branches ended, in the steps that are left.

The last rule is what makes the others safe. ``need`` is the number of steps of one
explicit completion strategy (close the open rings one per new carbon, farthest first;
then end every open chain); a production is allowed only if ``need`` after it fits in the
steps left. The strategy's own move always lowers ``need`` by one, so the allowed set
is never empty and no decode is ever incomplete or invalid. The strategy is a bound,
not the optimum, so a few real molecules (0.1 % of ZINC250k, mostly rings of more than
8 atoms) fall outside; :func:`molshape.data.teacher_masks.first_violations` finds them.

Everything is tensors over the batch, ``[B x ...]``, updated in the same lock step as
:class:`molshape.grammar.decoding.StackDecoder`. The rule tables and limits are in
:mod:`molshape.grammar.semantic_rules`; :class:`molshape.grammar.semantic_oracle.ReferenceSemantics`
is a per-molecule version of the rules in plain Python, kept as the test oracle.
"""

# Over 400 lines on purpose: SmilesSemantics is one vectorised state machine (valence, rings,
# length, guidance) whose update rules read each other's bookkeeping; apart they do not read.
from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache

import torch
from torch import Tensor

from molshape.grammar.cfg import Grammar
from molshape.grammar.semantic_rules import (GUIDE_MAX_DEPTH, GUIDE_MAX_MULTI, GUIDE_MAX_OPEN, GUIDE_MAX_PER_ATOM, INF,
                                             GUIDE_HOME_SPARE, LONG_CHAIN, MAX_BRANCH_DEPTH, MAX_RING, MIN_RING, SYMBOLS, Column,
                                             Kind, classify, rule_columns, supports)


@dataclass
class State:
    """Bookkeeping of a batch of partial molecules (all ``[B ...]`` tensors).

    Attributes:
        dist: ``B x N x N`` graph distances between the atoms made so far (INF if none).
        n_atoms: atoms made so far.
        cur: the atom whose rings/tail are being written (the parent of a pending atom).
        rem: ``B x N`` bonding capacity left per atom.
        in_bond: ``B x N`` order of the bond that made each atom.
        frames: ``B x F`` atoms whose ``tail`` waits below an open branch.
        depth: number of such frames.
        pend: order of the bond to the next atom (0 for the first atom).
        ring_open: ``B x 8`` ring slots open; ``ring_from`` the atom that opened each.
    """

    dist: Tensor
    n_atoms: Tensor
    cur: Tensor
    rem: Tensor
    in_bond: Tensor
    frames: Tensor
    depth: Tensor
    pend: Tensor
    ring_open: Tensor
    ring_from: Tensor
    ch2: Tensor | None = None  # ``B x N``: the atom can still become a CH2 (carbon, single bond in, nothing else yet)
    run: Tensor | None = None  # ``B``: CH2 atoms in a row just before the current atom on its chain
    digits: Tensor | None = None  # ``B``: ring bonds written on the newest atom
    multi: Tensor | None = None  # ``B``: atoms that carry two or more ring bonds
    tcomp: Tensor | None = None  # ``B x N``: component of each atom in the graph without its triple bonds


class SmilesSemantics:
    """Vectorised valence, ring and length bookkeeping for ``smiles_kekule``.

    Args:
        grammar: a grammar with the symbols of ``grammars/smiles_kekule.cfg``.
        max_length: decoding steps (default ``grammar.max_length``).
    """

    def __init__(self, grammar: Grammar, max_length: int | None = None) -> None:
        if not supports(grammar):
            raise ValueError(f"grammar {grammar.name!r} has no semantic constraints (needs symbols {SYMBOLS})")
        self.grammar = grammar
        self.max_length = max_length or grammar.max_length
        kinds, args = classify(grammar)
        self._kind = torch.tensor(kinds, dtype=torch.long)
        self._is_carbon = torch.tensor([toks == ("C",) for toks in grammar.rhs_tokens])
        self._arg = torch.tensor(args, dtype=torch.long)
        self.n_rings = int(sum(1 for k in kinds if k == Kind.DIGIT))
        self.max_atoms = self.max_length // 4 + 2  # every atom costs at least 4 steps
        self.max_depth = MAX_BRANCH_DEPTH
        self._sym = {s: grammar.symbols.index(s) for s in SYMBOLS}
        self._tables: dict[torch.device, tuple[Tensor, Tensor]] = {}
        self._gmasks, self._lhs = grammar.masks, grammar.lhs_tensor()
        # needs() and guidance() build one column per Column, then one per atom capacity, ring
        # slot and bond order, and spread them to rules with one index_select
        caps = sorted({a for kd, a in zip(kinds, args) if kd == Kind.ATOM})
        orders = sorted({a for kd, a in zip(kinds, args) if kd == Kind.BOND})
        self._atom_cap = torch.tensor(caps, dtype=torch.long)
        self._bond_orders = torch.tensor(orders, dtype=torch.long)
        col = rule_columns(kinds, args, caps, self.n_rings, orders)
        self._rule_col = torch.tensor(col, dtype=torch.long)

    def _on(self, device: torch.device) -> tuple[Tensor, Tensor]:
        if device not in self._tables:
            self._tables[device] = (self._kind.to(device), self._arg.to(device))
        return self._tables[device]

    # -- state -------------------------------------------------------------------
    def init(self, batch: int, device: torch.device | str = "cpu") -> State:
        """Bookkeeping before the first step."""
        n, f, k = self.max_atoms, self.max_depth, self.n_rings
        z = dict(dtype=torch.long, device=device)
        return State(dist=torch.full((batch, n, n), INF, dtype=torch.int32, device=device),
                     n_atoms=torch.zeros(batch, **z), cur=torch.zeros(batch, **z),
                     rem=torch.zeros(batch, n, **z), in_bond=torch.zeros(batch, n, **z),
                     frames=torch.zeros(batch, f, **z), depth=torch.zeros(batch, **z),
                     pend=torch.zeros(batch, **z), ring_open=torch.zeros(batch, k, dtype=torch.bool, device=device),
                     ring_from=torch.zeros(batch, k, **z),
                     ch2=torch.zeros(batch, n, dtype=torch.bool, device=device), run=torch.zeros(batch, **z),
                     digits=torch.zeros(batch, **z), multi=torch.zeros(batch, **z),
                     tcomp=torch.arange(n, device=device).expand(batch, n).clone())

    @staticmethod
    def select(s: State, keep: Tensor) -> State:
        """The bookkeeping of rows ``keep [b]`` only (every field has the batch on dim 0)."""
        return State(**{f.name: None if getattr(s, f.name) is None else getattr(s, f.name).index_select(0, keep)
                        for f in fields(s)})

    def update(self, s: State, rule: Tensor) -> None:
        """Apply the chosen ``rule [B]`` to the bookkeeping, in place.

        Written as whole-batch gathers, ``where`` and scatters (a row the rule does not
        touch gets its own value back) rather than boolean-mask indexing: fewer and
        cheaper operations per step, the same bookkeeping.
        """
        kinds, args = self._on(rule.device)
        kind, arg = kinds.index_select(0, rule), args.index_select(0, rule)
        cur = s.cur
        c1 = cur.unsqueeze(1)
        # the bond to the next atom: 0 before the first atom, 1 by default, 2/3 after a bond
        s.pend = torch.where(kind == Kind.START, 0, s.pend)
        to_next = (kind == Kind.CHAIN) | (kind == Kind.BRANCH)
        s.pend = torch.where(to_next | (kind == Kind.BOND_CHAIN) | (kind == Kind.BRANCH_BOND), 1, s.pend)
        bond = kind == Kind.BOND
        spend = to_next.long() + torch.where(bond, arg, 0)
        s.pend = torch.where(bond, arg, s.pend)
        # a branch keeps its parent waiting below it
        push = (kind == Kind.BRANCH) | (kind == Kind.BRANCH_BOND)
        slot = s.depth.clamp(max=self.max_depth - 1).unsqueeze(1)
        _put(s.frames, slot, push, cur)
        s.depth = s.depth + push.long()
        # ring digits: close an open slot, else open it (each end spends one)
        digit = kind == Kind.DIGIT
        ring = arg.clamp(max=self.n_rings - 1).unsqueeze(1)
        is_open = s.ring_open.gather(1, ring).squeeze(1)
        was_open = is_open & digit
        opens = digit & ~is_open
        spend = spend + digit.long()
        s.rem.scatter_add_(1, c1, -spend.unsqueeze(1))
        # ring bonds come right after their atom, so counting on the newest atom is enough
        s.digits = s.digits + digit.long()
        s.multi = s.multi + (digit & (s.digits == 2)).long()
        s.ring_open.scatter_(1, ring, (is_open ^ digit).unsqueeze(1))
        opener = s.ring_from.gather(1, ring).squeeze(1)
        _put(s.ring_from, ring, opens, cur)
        if bool(was_open.any()):
            self._add_edge(s, was_open, cur, opener)
            # a closure joins the triple-free components of its ends (guidance avoids joining two)
            c_cur, c_open = _at(s.tcomp, cur), _at(s.tcomp, opener)
            s.tcomp = torch.where(was_open.unsqueeze(1) & (s.tcomp == c_open.unsqueeze(1)), c_cur.unsqueeze(1), s.tcomp)
        # a new atom: bonded to the current one (none for the first)
        new = kind == Kind.NEW_ATOM
        if bool(new.any()):
            B, N = s.rem.shape
            x = s.n_atoms.clamp(max=self.max_atoms - 1)
            first = new & (s.n_atoms == 0)
            # rows of dist through a (B*N) x N view, columns through a B x (N*N) view: both
            # plain index operations, far cheaper than gathers with expanded indices
            rows = s.dist.view(B * N, N)
            base = torch.arange(B, device=rule.device) * N
            row = rows.index_select(0, base + cur) + 1  # [B, N]
            row = torch.where(first.unsqueeze(1), INF, row).clamp(max=INF)
            row.scatter_(1, x.unsqueeze(1), 0)
            row = torch.where(new.unsqueeze(1), row, rows.index_select(0, base + x))
            rows.index_copy_(0, base + x, row)
            cols = torch.arange(N, device=rule.device).unsqueeze(0) * N + x.unsqueeze(1)  # [B, N]
            s.dist.view(B, N * N).scatter_(1, cols, row)
            _put(s.in_bond, x.unsqueeze(1), new, s.pend)
            # across a triple bond a new component starts: a ring through it would hold the triple bond
            joined = torch.where(first | (s.pend == 3), x, _at(s.tcomp, cur))
            _put(s.tcomp, x.unsqueeze(1), new, joined)
            s.cur = torch.where(new, x, s.cur)
            s.digits = torch.where(new, 0, s.digits)
            s.n_atoms = s.n_atoms + new.long()
        atom = kind == Kind.ATOM
        a1 = s.cur.unsqueeze(1)
        in_bond = s.in_bond.gather(1, a1).squeeze(1)
        _put(s.rem, a1, atom, arg - in_bond)
        # the end of a chain returns to the atom waiting below the branch
        end = (kind == Kind.END) & (s.depth > 0)
        if bool(end.any()):
            top = (s.depth - 1).clamp(min=0).unsqueeze(1)
            s.cur = torch.where(end, s.frames.gather(1, top).squeeze(1), s.cur)
            s.depth = s.depth - end.long()
        # CH2 runs (for the long-chain guidance): an atom stays a CH2 candidate until it gets a
        # ring bond or a branch; a single-bond continuation from a candidate extends the run
        cont = kind == Kind.CHAIN
        ch2_cur = s.ch2.gather(1, c1).squeeze(1)
        s.run = torch.where(cont, torch.where(ch2_cur, s.run + 1, 0), s.run)
        s.run = torch.where(push | (kind == Kind.BOND_CHAIN) | (kind == Kind.END), 0, s.run)
        s.ch2.scatter_(1, c1, (ch2_cur & ~(push | digit)).unsqueeze(1))
        carbon = self._is_carbon.to(rule.device).index_select(0, rule)
        _put(s.ch2, a1, atom, carbon & (in_bond == 1))

    def _add_edge(self, s: State, rows: Tensor, u: Tensor, v: Tensor) -> None:
        """Shortest paths after a ring-closure bond ``u - v`` in ``rows`` (min-plus update)."""
        idx = rows.nonzero().flatten()
        d = s.dist[idx]  # [b, N, N]
        du = d[torch.arange(len(idx)), u[idx]]  # [b, N]
        dv = d[torch.arange(len(idx)), v[idx]]
        via = torch.minimum(du.unsqueeze(2) + 1 + dv.unsqueeze(1), dv.unsqueeze(2) + 1 + du.unsqueeze(1))
        s.dist[idx] = torch.minimum(d, via.clamp(max=INF))

    # -- how many steps a completion needs -----------------------------------------
    def _frames(self, s: State) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The atoms waiting below open branches, as ``B x W`` tensors (W = deepest in the batch).

        Returns:
            ``atoms``, ``valid`` (a real frame), ``rem`` (capacity left) and ``n_at``
            (open rings opened on that atom).
        """
        width = max(int(s.depth.max()) if s.depth.numel() else 0, 1)
        atoms = s.frames[:, :width]
        valid = torch.arange(width, device=atoms.device).unsqueeze(0) < s.depth.unsqueeze(1)
        at = (s.ring_from.unsqueeze(1) == atoms.unsqueeze(2)) & s.ring_open.unsqueeze(1)  # [B, W, K]
        return atoms, valid, s.rem.gather(1, atoms), at.sum(-1)

    @staticmethod
    def _grow_cur(m: Tensor, n_at: Tensor, rem: Tensor) -> Tensor:
        """Steps to close ``m`` open rings by growing a carbon chain from the current atom.

        Ring j is closed on the j-th new carbon (6 steps: the atom's 4 and the digit's 2),
        farthest first; when every open ring was opened on the atom itself, one spacer
        carbon (4 steps) comes first, so that no closure duplicates a bond. INF when a
        ring is open and the atom has no capacity left to grow from.
        """
        cost = 6 * m + 4 * ((n_at == m) & (m > 0)).long()
        return torch.where((m == 0) | (rem >= 1), cost, torch.full_like(cost, INF))

    @staticmethod
    def _grow_frames(m: Tensor, n_at: Tensor, rem: Tensor, usable: Tensor) -> Tensor:
        """The same from the best waiting atom (``... x W`` inputs, ``m`` broadcast to them)."""
        mm = m.unsqueeze(-1)
        ok = usable & ((mm == 0) | (rem >= 1))
        spacer = (n_at == mm) & (mm > 0)
        cost = 6 * m + 4 * (~(ok & ~spacer).any(-1)).long()
        return torch.where(ok.any(-1), cost, torch.full_like(cost, INF))

    def needs(self, s: State, frames: tuple[Tensor, Tensor, Tensor, Tensor] | None = None) -> Tensor:
        """Steps each rule would leave to complete, ``B x R`` (INF: never completes validly).

        ``need[b, r]`` counts the steps after rule ``r`` (not the step itself); the
        caller allows ``r`` when it is at most the steps left after this one. After ``k``
        waiting branches, a completion closes the open rings by growing one chain from
        the current atom or a waiting one, and then ends ``k + 1`` chains.
        """
        dev = s.cur.device
        m, k, cur = s.ring_open.sum(1), s.depth, s.cur
        rem_c, in_b = _at(s.rem, cur), _at(s.in_bond, cur)
        n_cur = ((s.ring_from == cur.unsqueeze(1)) & s.ring_open).sum(1)
        f_atoms, f_valid, f_rem, f_at = frames if frames is not None else self._frames(s)
        frames = self._grow_frames(m, f_at, f_rem, f_valid)
        inf = torch.full_like(m, INF)

        def best(rem0: Tensor, others: Tensor = frames) -> Tensor:
            return torch.minimum(self._grow_cur(m, n_cur, rem0), others)

        def child(kk: Tensor, others: Tensor) -> Tensor:
            return self._child2(m, n_cur, kk, others.unsqueeze(1)).squeeze(1)

        room = k < self.max_depth
        cont = child(k, frames)
        in_branch = (k > 0) & (_at(s.frames, (k - 1).clamp(min=0)) == cur)  # cur also waits as the top frame
        below = self._grow_frames(m, f_at, f_rem, f_valid & (torch.arange(f_valid.shape[1], device=dev) < (k - 1).unsqueeze(1)))
        d_cur = _dist(s, s.ring_from, cur.unsqueeze(1))  # [B, K] opener -> cur
        can_close = (s.ring_open & (d_cur >= MIN_RING - 1)).any(1)
        own = 3 + k + 1 + 6 * (m - 1)
        free, spent = 2 + k + best(torch.ones_like(m)), 2 + k + best(torch.zeros_like(m))
        left = self._atom_cap.to(dev).unsqueeze(0) - in_b.unsqueeze(1)  # [B, capacities]
        atom = torch.where(left >= 1, free.unsqueeze(1), torch.where(left == 0, spent.unsqueeze(1), INF))
        self_close = can_close.unsqueeze(1) & (left >= 1) & ((m == 1).unsqueeze(1) | (left >= 2))
        atom = torch.where(self_close, torch.minimum(atom, own.unsqueeze(1)), atom)
        orders = self._bond_orders.to(dev).unsqueeze(0)  # [1, 2]
        after = torch.where(in_branch.unsqueeze(1), torch.minimum(
            self._grow_cur(m.unsqueeze(1), n_cur.unsqueeze(1), rem_c.unsqueeze(1) - orders), below.unsqueeze(1)),
            frames.unsqueeze(1))
        bond = torch.where(rem_c.unsqueeze(1) >= orders, self._child2(m, n_cur, k, after), INF)
        digits = self._digit_needs(s, d_cur, n_cur, rem_c, f_atoms, f_valid, f_rem, f_at, m, k)
        cols = _columns({
            Column.FREE: torch.zeros_like(m),
            Column.END: torch.where(k == 0, torch.where(m == 0, 0, INF), k + frames),
            Column.CHAIN: torch.where(rem_c >= 1, cont, inf),
            Column.BOND_CHAIN: torch.where(rem_c >= 2, 1 + cont, inf),
            Column.BRANCH: torch.where((rem_c >= 1) & room, child(k + 1, best(rem_c - 1)), inf),
            Column.BRANCH_BOND: torch.where((rem_c >= 2) & room, 1 + child(k + 1, best(rem_c - 2)), inf),
            Column.MORE_RINGS: 1 + _amin(digits, 1).clamp(max=INF - 1),
            Column.RINGS_DONE: k + 1 + best(rem_c),
        })
        table = torch.cat([cols, atom, digits, bond], dim=1)
        return table.index_select(1, self._rule_col.to(dev)).clamp(max=INF)

    @staticmethod
    def _child2(m: Tensor, n_cur: Tensor, k: Tensor, others: Tensor) -> Tensor:
        """Steps after a new carbon bonded to cur is pending, for ``B x J`` alternatives ``others``
        (the best plan from the waiting atoms): make it, close one ring on it when one was
        opened elsewhere, then complete from it or ``others``."""
        mm, kk = m.unsqueeze(1), k.unsqueeze(1)
        plain = 2 + 1 + kk + 1 + torch.minimum(6 * mm, others)
        closes = 2 + 3 + kk + 1 + 6 * (mm - 1)
        return torch.where((n_cur < m).unsqueeze(1), torch.minimum(plain, closes), plain)

    def _digit_needs(self, s: State, d_cur: Tensor, n_cur: Tensor, rem_c: Tensor, f_atoms: Tensor,
                     f_valid: Tensor, f_rem: Tensor, f_at: Tensor, m: Tensor, k: Tensor) -> Tensor:
        """``B x K`` steps left after writing ring digit k on the current atom (close if open, else open)."""
        closing = s.ring_open  # [B, K]; toggling slot v gives variant v
        m_v = m.unsqueeze(1) + torch.where(closing, -1, 1)
        opened_here = s.ring_from == s.cur.unsqueeze(1)
        n_cur_v = n_cur.unsqueeze(1) - (closing & opened_here).long() + (~closing).long()
        g_cur = self._grow_cur(m_v, n_cur_v, (rem_c - 1).unsqueeze(1))
        # a closed ring leaves its opener's count; frames never open the new ring
        f_at_v = f_at.unsqueeze(1) - (closing.unsqueeze(2) & (s.ring_from.unsqueeze(2) == f_atoms.unsqueeze(1))).long()
        g_frames = self._grow_frames(m_v, f_at_v, f_rem.unsqueeze(1), f_valid.unsqueeze(1))
        need = 2 + k.unsqueeze(1) + torch.minimum(g_cur, g_frames)  # rings -> tail, then the tail's completion
        ok = torch.where(closing, d_cur >= MIN_RING - 1, m.unsqueeze(1) < closing.shape[1]) & (rem_c >= 1).unsqueeze(1)
        return torch.where(ok, need, torch.full_like(need, INF))

    def allowed(self, s: State, steps_left: int | Tensor, guide: bool = False) -> Tensor:
        """``B x R`` rules that keep the molecule completable within ``steps_left`` more steps.

        With ``guide``, rules that would leave an open ring unable to close as a
        ring of at most ``MAX_RING`` atoms (:meth:`guidance`) are dropped too, except
        where that would leave a symbol with no rule: validity never depends on them.
        """
        return self.allowed_and_hard(s, steps_left, guide)[0]

    def allowed_and_hard(self, s: State, steps_left: int | Tensor, guide: bool = False) -> tuple[Tensor, Tensor]:
        """``(allowed, hard)``: :meth:`allowed`, and the same without guidance (the masks the
        training loss normalises over, which say where a compressed model's choice points are)."""
        frames = self._frames(s)
        hard = self.needs(s, frames) <= steps_left
        if not guide:
            return hard, hard
        soft = hard & ~self.guidance(s, frames, steps_left)
        dev = hard.device
        # asking for another ring bond when no digit is left but ones to avoid would only end
        # in the fallback below, which then writes one of them (a ring of more than 8 atoms)
        kinds = self._on(dev)[0]
        some_digit = (soft & (kinds == Kind.DIGIT)).any(1, keepdim=True)
        soft = soft & (some_digit | (kinds != Kind.MORE_RINGS))
        masks, lhs = self._gmasks.to(dev), self._lhs.to(dev)
        some = (soft.unsqueeze(1) & masks.unsqueeze(0)).any(-1)  # [B, S]: a guided rule is left
        return torch.where(some.index_select(1, lhs), soft, hard), hard

    def guidance(self, s: State, frames: tuple[Tensor, Tensor, Tensor, Tensor] | None = None,
                 steps_left: int | Tensor | None = None) -> Tensor:
        """``B x R`` rules to avoid so that rings close as rings of at most ``MAX_RING`` atoms.

        The ring a closure makes runs along the shortest path between its two ends, so
        (a) a closure longer than that is avoided, and (b) so is a move after which some
        open ring has no atom left within reach: the current atom itself (while its ring
        bonds are written), a new atom bonded to it or to an atom waiting below a branch,
        or a new atom that first closes another open ring (fused rings: the closure of one
        ring shortens the path of the other). Also avoided: (c) closing a ring with the
        current atom's last bond while another open ring needs it; (d) given ``steps_left``,
        growing away from an open ring that only an atom below a branch can close once
        going back there needs all but ``GUIDE_HOME_SPARE`` of the steps left; (e) a ring
        bond or a chain bond that would put a triple bond inside a ring.
        """
        dev = s.cur.device
        B, K = s.ring_open.shape
        far = MAX_RING - 1
        # distances stay int32 here: far below its range, and min-reductions are much faster on it
        d_cur = _dist(s, s.ring_from, s.cur.unsqueeze(1))  # [B, K]
        f_atoms, f_valid, f_rem, f_at = frames if frames is not None else self._frames(s)
        d_f = _dist(s, s.ring_from.unsqueeze(2), f_atoms.unsqueeze(1))  # [B, K, W]
        d_f = _amin(torch.where(f_valid.unsqueeze(1), d_f, INF), -1)  # nearest waiting atom
        pair = _dist(s, s.ring_from.unsqueeze(2), s.ring_from.unsqueeze(1))  # [B, K, K]
        both = s.ring_open.unsqueeze(2) & s.ring_open.unsqueeze(1) & ~torch.eye(K, dtype=torch.bool, device=dev)


        def via(direct: Tensor) -> Tensor:
            """[B, K] through a new atom that first closes another ring q it can reach directly."""
            ok = both & (direct.unsqueeze(1) + 1 <= far)  # q (last axis) reachable
            return _amin(torch.where(ok, pair, INF), -1)

        near = torch.minimum(d_cur, d_f)
        new_atom = torch.minimum(near, via(near)) + 1  # a new atom can get this close
        # a ring no atom can close within MAX_RING any more is left to the length bound: guiding
        # for it would only steer every later step (one stranded ring turned tails into cages)
        saved_by_cur = s.ring_open & ((d_cur <= far) | (new_atom <= far))
        last_chance = saved_by_cur & (new_atom > far)
        stuck_after_cur = last_chance.any(1)  # cur's own ring bonds are the last chance
        frames_only = torch.minimum(d_f, via(d_f)) + 1
        stuck_without_cur = (saved_by_cur & (frames_only > far)).any(1)
        # an open ring that only a waiting atom can close needs the decoder back there in time:
        # late in the derivation, moves that go on growing away from it are avoided
        cur_side = (d_cur <= far) | (torch.minimum(d_cur, via(d_cur)) + 1 <= far)
        go_home = torch.zeros_like(s.depth, dtype=torch.bool)
        if steps_left is not None:
            home = s.depth + self._grow_frames(s.ring_open.sum(1), f_at, f_rem, f_valid)
            go_home = (s.ring_open & ~cur_side & (new_atom <= far)).any(1) & (home + GUIDE_HOME_SPARE >= steps_left)
            # ... unless ending the chain here would strand a ring at once (then neither move is guided,
            # and the fallback to the hard mask took END)
            go_home = go_home & ~stuck_without_cur
        # what ZINC never has: more open rings at once, more rings opened on one atom, or a third
        # atom with two ring bonds
        n_cur = (s.ring_open & (s.ring_from == s.cur.unsqueeze(1))).sum(1)
        crowded = (s.ring_open.sum(1) >= GUIDE_MAX_OPEN) | (n_cur >= GUIDE_MAX_PER_ATOM)
        # the layout of needs(): the fixed columns, then atoms, digits and bonds
        never = torch.zeros_like(stuck_after_cur)
        eighth_ch2 = _at(s.ch2, s.cur) & (s.run >= LONG_CHAIN - 1)  # a single bond on makes an 8th CH2
        deep = s.depth >= GUIDE_MAX_DEPTH
        # a third atom with two ring bonds: avoid a second ring bond here unless a ring must close here
        caged = (s.multi >= GUIDE_MAX_MULTI) & (s.digits >= 1)
        cols = _columns({Column.FREE: never, Column.END: stuck_without_cur,
                         Column.CHAIN: stuck_after_cur | eighth_ch2 | go_home, Column.BOND_CHAIN: stuck_after_cur | go_home,
                         Column.BRANCH: deep | go_home, Column.BRANCH_BOND: deep | go_home,
                         Column.MORE_RINGS: caged & ~stuck_after_cur, Column.RINGS_DONE: stuck_after_cur})
        # a new atom needs a bond for each ring only it can close, and one more to carry the chain
        # on to an atom that closes the rest (an F or a =O there ends the chain and strands a ring)
        left = self._atom_cap.to(dev).unsqueeze(0) - _at(s.in_bond, s.cur).unsqueeze(1)
        atom = left < _bond_demand(last_chance, saved_by_cur & (frames_only > far)).unsqueeze(1)
        # (two closures on one atom: the shorter goes first, same molecule)
        # while a ring must close on cur, a new ring opened here would only take its place; and a
        # ring opened with cur's last bond leaves it no way on to the atom that would close it
        last_bond = _at(s.rem, s.cur) <= 1
        # closing one ring with cur's last bond strands another that only cur's side can still close
        relies = s.ring_open & (frames_only > far)
        others_rely = (relies.long().sum(1, keepdim=True) - relies.long()) > 0
        strands = last_bond.unsqueeze(1) & others_rely
        # ... or leaves cur fewer bonds than the other rings then demand of it
        strands = strands | self._closure_leaves_too_few_bonds(s, d_cur, d_f, pair, frames_only)
        # a closure whose ends lie on either side of a triple bond puts that bond in a ring
        tc_cur, tc_open = _at(s.tcomp, s.cur), s.tcomp.gather(1, s.ring_from)
        same_side = tc_open == tc_cur.unsqueeze(1)
        digit = torch.where(s.ring_open, (d_cur > far) | strands | ~same_side,
                            (crowded | caged | stuck_after_cur | last_bond | go_home).unsqueeze(1))
        # a triple bond on the chain leaves a ring opened before it to close through it, unless an
        # atom waiting below a branch can close that ring (a nitrile in a branch, C1=C(C#N)...)
        before = (s.ring_open & same_side & (frames_only > far)).any(1)
        bond = torch.stack([before if int(o) == 3 else never for o in self._bond_orders], dim=1)
        avoid = torch.cat([cols, atom, digit, bond], dim=1).index_select(1, self._rule_col.to(dev))
        return avoid

    @staticmethod
    def _closure_leaves_too_few_bonds(s: State, d_cur: Tensor, d_f: Tensor, pair: Tensor,
                                      frames_only: Tensor) -> Tensor:
        """``B x K``: closing ring v on cur leaves cur fewer bonds than the other open rings then
        demand of it (:func:`_bond_demand`, with the reach of :meth:`guidance` recomputed after
        the closure: the new bond shortens paths through v's opener, and no ring can be reached
        through v any more)."""
        B, K = s.ring_open.shape
        far = MAX_RING - 1
        eye = torch.eye(K, dtype=torch.bool, device=s.cur.device)
        # [B, v, q]: ring q's opener after the bond cur - opener of v, and q still open
        d_after = torch.minimum(d_cur.unsqueeze(1), pair.transpose(1, 2) + 1)
        others = s.ring_open.unsqueeze(1) & ~eye
        near = torch.minimum(d_after, d_f.unsqueeze(1))
        first = others & (near + 1 <= far)  # [B, v, p]: rings a new atom can close first
        through = first.unsqueeze(2) & others.unsqueeze(3) & ~eye  # [B, v, q, p]
        via = _amin(torch.where(through, pair.unsqueeze(1).expand(B, K, K, K), INF), -1)
        new_atom = torch.minimum(near, via) + 1
        saved = others & ((d_after <= far) | (new_atom <= far))
        demand = _bond_demand(saved & (new_atom > far), saved & (frames_only.unsqueeze(1) > far))
        return (_at(s.rem, s.cur).unsqueeze(1) - 1) < demand

    # -- training and data -----------------------------------------------------------
    @torch.no_grad()
    def teacher_masks(self, rules: Tensor) -> Tensor:
        """Masks along true derivations: ``rules [B x T]`` -> ``B x T x R`` bool.

        Step t allows what the constraints allow after the true rules before t; pad steps
        allow everything (the grammar mask restricts them to the pad rule).
        """
        B, T = rules.shape
        s = self.init(B, rules.device)
        out = torch.ones(B, T, self.grammar.n_productions, dtype=torch.bool, device=rules.device)
        pad = self.grammar.pad
        for t in range(T):
            live = rules[:, t] != pad
            if not bool(live.any()):
                break
            out[:, t] = self.allowed(s, self.max_length - t - 1) | ~live.unsqueeze(1)
            self.update(s, rules[:, t])
        return out


def _bond_demand(last_chance: Tensor, cur_side_only: Tensor) -> Tensor:
    """Bonds an atom needs (over the last axis of the ``... x K`` ring masks): one for each ring
    only it can close, and one to carry the chain on when another ring relies on its side."""
    return last_chance.sum(-1) + (cur_side_only & ~last_chance).any(-1).long()


def _columns(values: dict[Column, Tensor]) -> Tensor:
    """``B x len(Column)``: one ``B`` tensor per :class:`Column`, stacked in the enum's order."""
    return torch.stack([values[c] for c in Column], dim=1)


def _at(t: Tensor, index: Tensor) -> Tensor:
    """``t[b, index[b]]`` for every row b (``t`` is ``B x ...``, ``index`` is ``B``)."""
    return t.gather(1, index.unsqueeze(1)).squeeze(1)


def _dist(s: State, i: Tensor, j: Tensor) -> Tensor:
    """``s.dist[b, i, j]`` for index tensors ``i``, ``j`` that broadcast to ``B x ...`` (int32)."""
    B, N, _ = s.dist.shape
    flat = i * N + j
    return s.dist.view(B, N * N).gather(1, flat.reshape(B, -1)).view(flat.shape)


def _amin(x: Tensor, dim: int) -> Tensor:
    """``x.amin(dim)`` of small integers, in int32 (many times faster than int64 on CPU)."""
    return x.to(torch.int32).amin(dim)


def _put(t: Tensor, index: Tensor, rows: Tensor, value: Tensor) -> None:
    """``t[b, index[b]] = value[b]`` where ``rows[b]``, in place (``index`` is ``B x 1``)."""
    t.scatter_(1, index, torch.where(rows, value, t.gather(1, index).squeeze(1)).unsqueeze(1))


@lru_cache(maxsize=None)
def _cached(grammar: Grammar) -> SmilesSemantics:
    return SmilesSemantics(grammar)


def semantics_for(grammar: Grammar) -> SmilesSemantics | None:
    """The semantic constraints of ``grammar``, or None when it has none."""
    return _cached(grammar) if supports(grammar) else None
