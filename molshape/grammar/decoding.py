"""Masked grammar decoding: logits -> production sequences that the grammar accepts.

GVAE's decoder (Kusner et al. 2017) keeps a stack of nonterminals, start symbol first.
At each step it pops the top (an empty stack gives the padding symbol ``Nothing``),
allows only productions whose left side is that symbol, picks one (argmax, or a sample
by the Gumbel-max trick) and pushes the nonterminals of its right side in reverse
order, so that the leftmost one is expanded next. Productions needing a symbol with no
production (29 and 31 of the SMILES grammar) are masked everywhere and never chosen.

Here the whole batch moves in lock step on the model's device: the stacks are one
``[B x depth]`` tensor with a ``[B]`` top pointer, and one step is a handful of tensor
operations on ``[B x G]`` tensors, G the most productions any symbol has (10 for SMILES,
against 76 rules): gather the top symbol, gather its candidate rules' logits, argmax,
scatter the pushed symbols. There is no
per-molecule Python loop; :func:`reference_decode` is that loop, kept as the oracle for
tests and ``scripts/bench_decode.py``.

A sequence whose stack is still not empty after ``max_length`` steps is reported as
incomplete (``complete[b] == False``), never cut into a wrong string.

Example:
    >>> dec = StackDecoder(load_grammar("smiles"))  # doctest: +SKIP
    >>> out = dec.decode(model, z, mode="sample", generator=torch.Generator().manual_seed(0))  # doctest: +SKIP
    >>> out.rules.shape, out.complete.float().mean()  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from molshape.grammar.cfg import Grammar
from molshape.grammar.semantic_oracle import ReferenceSemantics
from molshape.grammar.semantics import SmilesSemantics, semantics_for

MODES = ("argmax", "sample")
#: Decoding constraints: ``grammar`` (GVAE's masks only), ``semantic`` (valence, rings and
#: length too; grammars that support it), ``auto`` (semantic wherever supported).
CONSTRAINTS = ("auto", "semantic", "grammar")


class StepDecoder(Protocol):
    """What :meth:`StackDecoder.decode` and beam search need from a model: its decoder, one
    step at a time (:class:`molshape.gvae.model.GrammarAutoencoder` is one).

    A model may also say how to take rows of its state, ``decoder_select(state, keep)``
    (:func:`select_state`) and ``decoder_reorder(state, index)``
    (:func:`molshape.grammar.beam.reorder_state`); without them the state is walked as
    tensors.
    """

    def decoder_init(self, z: Tensor) -> object:
        """The state before the first step, for latents ``z [B x d]``."""

    def decoder_step(self, state: object, prev_rule: Tensor) -> tuple[Tensor, object]:
        """``(logits [B x R], next state)`` after the rules ``prev_rule [B]`` chosen last."""


@runtime_checkable
class SequenceDecoder(StepDecoder, Protocol):
    """A step decoder that can also give every step's logits in one call.

    When ``decoder_feed_rules`` is False the logits do not depend on the rules fed back
    (GVAE's decoder), so the decoders take one ``decode_logits`` call instead of
    ``max_length`` single steps: identical logits, and one full-sequence GRU call is far
    faster.
    """

    @property
    def decoder_feed_rules(self) -> bool:
        """Whether each step reads the previous rule (the steps must then run one by one)."""

    def decode_logits(self, z: Tensor, steps: int) -> Tensor:
        """``B x steps x R`` logits of latents ``z [B x d]``."""


def skips_forced(model: StepDecoder) -> bool:
    """Whether ``model`` is stepped at choice points only (compressed derivations): its
    ``decoder_skips_forced`` is True. A step whose masks allow a single rule is then applied
    without calling the model, which reads it as the previous rule at its next step."""
    return bool(getattr(model, "decoder_skips_forced", False))


def choice_step(model: StepDecoder, state: object, prev: Tensor, choice: Tensor | None,
                n_rules: int) -> tuple[Tensor, object]:
    """``model.decoder_step`` on the rows where ``choice [B]`` is True (every row when None).

    Returns ``(logits [B x R], state)``: the other rows get zero logits (their single allowed
    rule is taken anyway) and keep their state.
    """
    if choice is None or bool(choice.all()):
        return model.decoder_step(state, prev)
    rows = choice.nonzero().squeeze(1)
    if not len(rows):
        return torch.zeros(len(choice), n_rules, device=choice.device), state
    logits, sub = model.decoder_step(select_state(model, state, rows), prev.index_select(0, rows))
    full = logits.new_zeros(len(choice), logits.shape[1]).index_copy(0, rows, logits)
    return full, merge_state(model, state, sub, rows)


def sequence_logits(model: StepDecoder, z: Tensor, steps: int) -> Tensor | None:
    """Every step's logits in one call when ``model`` is a :class:`SequenceDecoder` that feeds
    no rules back; None when it must be stepped."""
    if isinstance(model, SequenceDecoder) and not model.decoder_feed_rules:
        return model.decode_logits(z, steps)
    return None


@dataclass
class DecodeResult:
    """Decoded production sequences.

    Attributes:
        rules: ``B x T`` long rule ids, padded with ``grammar.pad`` once complete.
        complete: ``B`` bool: the stack emptied within ``T`` steps.
        lengths: ``B`` long: number of non-pad rules (``T`` when incomplete).
    """

    rules: Tensor
    complete: Tensor
    lengths: Tensor

    def cpu(self) -> "DecodeResult":
        return DecodeResult(self.rules.cpu(), self.complete.cpu(), self.lengths.cpu())


def gumbel_noise(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Standard Gumbel noise ``-log(-log U)`` of ``shape`` on ``device``.

    Drawn on the generator's own device and moved, so that a seeded CPU generator gives
    the same samples whether the model runs on CPU or CUDA.
    """
    gen_device = generator.device if generator is not None else device
    u = torch.rand(shape, generator=generator, device=gen_device)
    # clamp keeps log finite at u == 0 (tiny bias, far below sampling noise)
    g = -torch.log(-torch.log(u.clamp_(min=1e-20)))
    return g.to(device, non_blocking=True)


class StackDecoder:
    """Vectorised masked decoder of one grammar.

    Args:
        grammar: the grammar whose masks and right-hand sides drive the stack.
        max_length: number of decoding steps T (default ``grammar.max_length``).
    """

    def __init__(self, grammar: Grammar, max_length: int | None = None,
                 semantics: SmilesSemantics | None = None, guide: bool = True) -> None:
        self.grammar = grammar
        self.max_length = max_length or grammar.max_length
        self.semantics = semantics
        self.guide = guide
        self.max_rhs = max(max((len(r) for r in grammar.rhs_nonterminals), default=0), 1)
        rev = torch.full((grammar.n_productions, self.max_rhs), grammar.pad_symbol, dtype=torch.long)
        for i, rhs in enumerate(grammar.rhs_nonterminals):
            if rhs:
                rev[i, : len(rhs)] = torch.tensor(rhs[::-1])  # reversed: leftmost ends on top
        self._rhs_rev = rev  # [R, max_rhs]
        self._rhs_len = torch.tensor([len(r) for r in grammar.rhs_nonterminals], dtype=torch.long)  # [R]
        # Candidates per symbol: its allowed rule ids ascending (ties go to the lowest id, as
        # argmax does), padded to the widest symbol; padding repeats the first id and is
        # scored -inf. A step then scores B x G candidates instead of B x R rules.
        allowed = [[r for r in range(grammar.n_productions) if grammar.masks[s, r]] for s in range(grammar.n_symbols)]
        self.n_candidates = max(len(a) for a in allowed)
        cand = torch.full((grammar.n_symbols, self.n_candidates), grammar.pad, dtype=torch.long)
        cand_neg = torch.full((grammar.n_symbols, self.n_candidates), float("-inf"))
        for s, a in enumerate(allowed):
            if a:  # a symbol with no production is never pushed
                cand[s, : len(a)] = torch.tensor(a)
                cand[s, len(a):] = a[0]
                cand_neg[s, : len(a)] = 0.0
        self._cand, self._cand_neg = cand, cand_neg  # [S, G]
        # Column 0 is a sentinel holding the pad symbol, so an empty stack (top == 0) reads
        # as ``Nothing`` with no branch. Each step pops one and pushes at most max_rhs.
        self.depth = 2 + self.max_length * max(self.max_rhs - 1, 0) + self.max_rhs
        self._tables: dict[torch.device, dict[str, Tensor]] = {}

    def _on(self, device: torch.device) -> dict[str, Tensor]:
        if device not in self._tables:
            self._tables[device] = {"cand": self._cand.to(device), "cand_neg": self._cand_neg.to(device),
                                    "rhs_rev": self._rhs_rev.to(device), "rhs_len": self._rhs_len.to(device),
                                    "arange": torch.arange(1, self.max_rhs + 1, device=device)}
        return self._tables[device]

    # -- the stack machine -------------------------------------------------------
    def _start(self, batch: int, device: torch.device) -> tuple[Tensor, Tensor]:
        stack = torch.full((batch, self.depth), self.grammar.pad_symbol, dtype=torch.long, device=device)
        stack[:, 1] = self.grammar.start
        top = torch.ones(batch, dtype=torch.long, device=device)  # index of the top symbol; 0 = empty
        return stack, top

    def _symbols(self, stack: Tensor, top: Tensor) -> Tensor:
        """``[B x 1]`` symbol on top of each stack (the pad symbol when empty)."""
        return stack.gather(1, top.unsqueeze(1))

    def _push(self, rule: Tensor, stack: Tensor, top: Tensor) -> None:
        """Pop the top and push the right side of ``rule [B]`` reversed; in place."""
        t = self._on(rule.device)
        top.sub_(1).clamp_(min=0)
        # Slots past rhs_len lie above the new top, so writing filler there is harmless.
        # (index_select: much cheaper per call than advanced indexing on small tensors)
        stack.scatter_(1, top.unsqueeze(1) + t["arange"], t["rhs_rev"].index_select(0, rule))
        top.add_(t["rhs_len"].index_select(0, rule))

    def _choose(self, logits: Tensor, symbol: Tensor, mode: str, generator: torch.Generator | None,
                allowed: Tensor | None = None, noise: Tensor | None = None) -> Tensor:
        """Rule ``[B]`` among those allowed for ``symbol [B x 1]``, scored by ``logits [B x R]``.

        Sampling adds Gumbel noise to the allowed candidates only (``B x G`` per step),
        which is the Gumbel-max trick on the masked softmax; ``noise`` (``B x G``) is used
        instead of a fresh draw when given.
        """
        t = self._on(logits.device)
        sym = symbol.squeeze(1)
        cand = t["cand"].index_select(0, sym)  # [B, G]
        scores = logits.gather(1, cand).float() + t["cand_neg"].index_select(0, sym)
        if allowed is not None:  # semantic constraints: [B x R] rules that keep the molecule valid
            scores = scores.masked_fill(~allowed.gather(1, cand), float("-inf"))
        if mode == "sample":
            scores += gumbel_noise(tuple(scores.shape), generator, scores.device) if noise is None else noise
        return cand.gather(1, scores.argmax(dim=1, keepdim=True)).squeeze(1)

    def _allowed(self, sem, t: int) -> Tensor | None:
        """Semantically allowed rules at step ``t`` (None without semantic constraints)."""
        return None if sem is None else self.semantics.allowed(sem, self.max_length - t - 1, self.guide)

    def _skips(self, model: StepDecoder) -> bool:
        """:func:`skips_forced` for ``model``, checking that these masks find its choice points."""
        skip = skips_forced(model)
        if skip and self.semantics is None and getattr(getattr(model, "config", None), "constraints", "") == "semantic":
            raise ValueError("a compressed model trained under semantic constraints decodes under them "
                             "(constraints 'auto' or 'semantic'): its choice points are theirs")
        return skip

    def _masks(self, sem, t: int, symbol: Tensor, skip: bool) -> tuple[Tensor | None, Tensor | None]:
        """``(allowed, choice)`` at step ``t``: :meth:`_allowed`, and with ``skip`` the ``B`` rows
        with more than one rule under the masks the training loss uses (no ring guidance)."""
        if not skip:
            return self._allowed(sem, t), None
        allowed = hard = None
        if sem is not None:
            allowed, hard = self.semantics.allowed_and_hard(sem, self.max_length - t - 1, self.guide)
        tables = self._on(symbol.device)
        sym = symbol.squeeze(1)
        ok = tables["cand_neg"].index_select(0, sym) == 0  # [B, G] the symbol's real candidates
        if hard is not None:
            ok &= hard.gather(1, tables["cand"].index_select(0, sym))
        return allowed, ok.sum(dim=1) > 1

    def _check_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")

    def _finish(self, rules: list[Tensor], top: Tensor, batch: int, device: torch.device) -> DecodeResult:
        pad = self.grammar.pad
        out = torch.full((batch, self.max_length), pad, dtype=torch.long, device=device)
        if rules:
            out[:, : len(rules)] = torch.stack(rules, dim=1)
        return DecodeResult(out, top == 0, (out != pad).sum(dim=1))

    @torch.no_grad()
    def decode_logits(self, logits: Tensor, mode: str = "argmax",
                      generator: torch.Generator | None = None) -> DecodeResult:
        """Decode precomputed logits (GVAE-style decoders that emit all steps at once).

        Args:
            logits: ``B x T x R`` unnormalised scores; ``T`` may be shorter than
                ``max_length`` (sequences still open then are incomplete).
            mode: ``argmax`` or ``sample`` (Gumbel-max).
            generator: seeds the Gumbel noise.

        Returns:
            :class:`DecodeResult` with ``rules [B x max_length]``.
        """
        self._check_mode(mode)
        if logits.dim() != 3 or logits.shape[2] != self.grammar.n_productions:
            raise ValueError(f"logits must be [B x T x {self.grammar.n_productions}], got {tuple(logits.shape)}")
        batch, steps = logits.shape[0], min(logits.shape[1], self.max_length)
        stack, top = self._start(batch, logits.device)
        sem = self.semantics.init(batch, logits.device) if self.semantics is not None else None
        rules: list[Tensor] = []
        for t in range(steps):
            rule = self._choose(logits[:, t], self._symbols(stack, top), mode, generator, self._allowed(sem, t))
            self._push(rule, stack, top)
            if sem is not None:
                self.semantics.update(sem, rule)
            rules.append(rule)
            if t % 16 == 15 and not bool(top.any()):  # a host sync; done sparingly
                break
        return self._finish(rules, top, batch, logits.device)

    @torch.no_grad()
    def decode(self, model: StepDecoder, z: Tensor, mode: str = "argmax",
               generator: torch.Generator | None = None) -> DecodeResult:
        """Decode latents step by step, feeding each chosen rule back to the model.

        A :class:`SequenceDecoder` whose decoder ignores the fed-back rule (GVAE's,
        ``decoder_feed_rules`` False) takes one ``model.decode_logits`` call instead.

        Every 8 steps the rows whose stack has emptied leave the batch (model state,
        stack and semantic bookkeeping alike), so the model only runs for molecules
        still being written; the rest of a finished row is padding. Results are those of
        decoding every row to the end: each row's arithmetic does not depend on the
        other rows, and sampling still draws the noise of the whole batch each step so
        that a seeded generator gives the same molecules and ends in the same state.

        Args:
            model: a :class:`StepDecoder`.
            z: ``B x d`` latents (on the model's device).
            mode: ``argmax`` or ``sample`` (Gumbel-max).
            generator: seeds the Gumbel noise.

        Returns:
            :class:`DecodeResult` with ``rules [B x max_length]``.
        """
        self._check_mode(mode)
        logits = sequence_logits(model, z, self.max_length)
        if logits is not None:
            return self.decode_logits(logits, mode, generator)
        batch, device = z.shape[0], z.device
        stack, top = self._start(batch, device)
        state = model.decoder_init(z)
        # Before the first step there is no previous rule; the pad rule stands in for it.
        prev = torch.full((batch,), self.grammar.pad, dtype=torch.long, device=device)
        sem = self.semantics.init(batch, device) if self.semantics is not None else None
        out = torch.full((batch, self.max_length), self.grammar.pad, dtype=torch.long, device=device)
        complete = torch.ones(batch, dtype=torch.bool, device=device)
        rows = torch.arange(batch, device=device)  # the batch row of each live row
        skip = self._skips(model)
        for t in range(self.max_length):
            if len(rows):
                symbol = self._symbols(stack, top)
                allowed, choice = self._masks(sem, t, symbol, skip)
                logits, state = choice_step(model, state, prev, choice, self.grammar.n_productions)
                noise = self._noise(batch, mode, generator, device)
                prev = self._choose(logits, symbol, mode, generator, allowed,
                                    noise=None if noise is None else noise.index_select(0, rows))
                self._push(prev, stack, top)
                if sem is not None:
                    self.semantics.update(sem, prev)
                out[rows, t] = prev
            else:
                self._noise(batch, mode, generator, device)  # the generator moves on as before
            if t % 8 == 7:
                live = top != 0
                if not bool(live.all()):  # a host sync; done sparingly
                    keep = live.nonzero().squeeze(1)
                    rows, stack, top, prev = rows[keep], stack[keep], top[keep], prev[keep]
                    state = select_state(model, state, keep)
                    if sem is not None:
                        sem = self.semantics.select(sem, keep)
                if not len(rows):
                    break
        complete[rows] = top == 0
        return DecodeResult(out, complete, (out != self.grammar.pad).sum(dim=1))

    def _noise(self, batch: int, mode: str, generator: torch.Generator | None, device: torch.device) -> Tensor | None:
        """The Gumbel noise of one step for the whole batch (``B x G``; None for argmax)."""
        return gumbel_noise((batch, self.n_candidates), generator, device) if mode == "sample" else None


def select_state(model: StepDecoder, state: object, keep: Tensor) -> object:
    """Rows ``keep`` of a decoder state.

    A model may say how (``model.decoder_select(state, keep)``); otherwise the state is a
    tensor or a (nested) tuple of tensors, with the batch on dim 0, except 3-d tensors (RNN
    hidden states, ``layers x B x H``) that have it on dim 1; anything else is kept as is.
    """
    if hasattr(model, "decoder_select"):
        return model.decoder_select(state, keep)
    if isinstance(state, (tuple, list)):
        return type(state)(select_state(model, s, keep) for s in state)
    if not isinstance(state, Tensor):  # None, step counters: not per row
        return state
    return state.index_select(1 if state.dim() == 3 else 0, keep)


def merge_state(model: StepDecoder, state: object, sub: object, rows: Tensor) -> object:
    """``state`` with its rows ``rows`` replaced by ``sub`` (the inverse of :func:`select_state`,
    same layout rules; a model may say how with ``decoder_merge(state, sub, rows)``)."""
    if hasattr(model, "decoder_merge"):
        return model.decoder_merge(state, sub, rows)
    if isinstance(state, (tuple, list)):
        return type(state)(merge_state(model, a, b, rows) for a, b in zip(state, sub))
    if not isinstance(sub, Tensor):
        return state
    if not isinstance(state, Tensor):  # a state made at the first step: only whole batches start
        raise ValueError("merge_state: the first decoder step must run on every row")
    return state.index_copy(1 if state.dim() == 3 else 0, rows, sub)


def make_decoder(grammar: Grammar, constraints: str = "auto", max_length: int | None = None,
                 guide: bool = True) -> StackDecoder:
    """A :class:`StackDecoder` for ``grammar`` under the chosen constraints.

    Semantic decoding also steers ring closures towards rings of at most 8 atoms
    (``guide``; :meth:`molshape.grammar.semantics.SmilesSemantics.guidance`), a
    preference that never overrides validity.

    Raises:
        ValueError: ``semantic`` was asked of a grammar without semantic constraints.
    """
    if constraints not in CONSTRAINTS:
        raise ValueError(f"constraints must be one of {CONSTRAINTS}, got {constraints!r}")
    sem = semantics_for(grammar) if constraints != "grammar" else None
    if constraints == "semantic" and sem is None:
        raise ValueError(f"grammar {grammar.name!r} has no semantic constraints; use --constraints grammar "
                         "or a model trained on smiles_kekule")
    return StackDecoder(grammar, max_length=max_length, semantics=sem, guide=guide)


def reference_decode(grammar: Grammar, scores: Tensor, noise: Tensor | None = None,
                     max_length: int | None = None, semantics: bool = False) -> DecodeResult:
    """The same algorithm one molecule at a time with Python lists (the oracle).

    Args:
        grammar: the grammar.
        scores: ``B x T x R`` logits; the best allowed rule is taken at each step.
        noise: optional ``B x T x G`` Gumbel noise added to the allowed candidates in
            ascending rule order (what :class:`StackDecoder` draws when sampling).
        max_length: steps (default ``grammar.max_length``).
        semantics: also apply the semantic constraints (per molecule,
            :class:`molshape.grammar.semantic_oracle.ReferenceSemantics`).

    Returns:
        :class:`DecodeResult` on CPU.
    """
    T = max_length or grammar.max_length
    allowed = [[r for r in range(grammar.n_productions) if grammar.masks[s, r]] for s in range(grammar.n_symbols)]
    rows = scores.float().cpu().tolist()
    noise_rows = noise.float().cpu().tolist() if noise is not None else None
    out, complete = [], []
    for b, row in enumerate(rows):
        stack = [grammar.start]
        seq = []
        ref = ReferenceSemantics(grammar, T) if semantics else None
        for t in range(min(T, len(row))):
            symbol = stack.pop() if stack else grammar.pad_symbol
            cands = allowed[symbol]
            values = [row[t][r] for r in cands]
            if noise_rows is not None:
                values = [v + e for v, e in zip(values, noise_rows[b][t])]
            if ref is not None:
                ok = ref.allowed(T - t - 1)
                values = [v if ok[r] else float("-inf") for v, r in zip(values, cands)]
            rule = cands[values.index(max(values))]  # first maximum: the lowest rule id
            if ref is not None:
                ref.update(rule)
            seq.append(rule)
            stack.extend(reversed(grammar.rhs_nonterminals[rule]))
        seq += [grammar.pad] * (T - len(seq))
        out.append(seq)
        complete.append(not stack)
    rules = torch.tensor(out, dtype=torch.long)
    return DecodeResult(rules, torch.tensor(complete), (rules != grammar.pad).sum(dim=1))
