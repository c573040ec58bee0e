"""Beam search over the masked stack decoder: the most likely complete derivation of a latent.

Argmax decoding commits to the best rule at each step; one early mistake then sends the
rest of the derivation elsewhere. Beam search keeps the ``width`` most likely partial
derivations of each latent and returns the complete one with the highest total
log-likelihood.

The score of a rule is its log-probability under the softmax over the rules the decoder
may choose at that step: the grammar mask of the symbol on top of the stack and, with
semantic constraints (Kekulé SMILES), the semantic mask, ring guidance included. That is
the distribution :class:`~molshape.grammar.decoding.StackDecoder` picks from, so a width-1
beam is argmax decoding. A finished derivation keeps its score (the pad rule it writes
afterwards is the only choice, log-probability 0); every other step lowers a score, so the
search stops as soon as each latent's best finished derivation beats all its open ones.

The whole batch moves in lock step: ``B x width`` rows, each with its own stack, semantic
bookkeeping and model state; after each step the rows are re-gathered from their parents.
Model states are re-gathered by :func:`reorder_state` (the model's ``decoder_reorder`` when
it has one; otherwise tensors of 3 dimensions by their second, the ``[layers x B x H]``
hidden state of torch's recurrent layers, and other tensors by their first).

Beam search can drop the argmax path on the way and end below it, so :func:`beam_decode`
also scores the argmax derivation (a width-1 beam) and keeps whichever is more likely:
its result is never less likely than argmax decoding's.

Example:
    >>> out = beam_decode(make_decoder(grammar), model, z, width=5)  # doctest: +SKIP
    >>> out.rules.shape, out.log_likelihood[:3]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from molshape.grammar.decoding import StackDecoder, StepDecoder, choice_step, sequence_logits


@dataclass
class BeamResult:
    """The most likely complete derivation found per latent.

    Attributes:
        rules: ``B x T`` long rule ids, padded with ``grammar.pad``.
        complete: ``B`` bool: a complete derivation was found.
        lengths: ``B`` long: non-pad rules.
        log_likelihood: ``B`` float64: total log-probability of ``rules`` (nats; ``-inf`` if incomplete).
        argmax_log_likelihood: ``B`` float64: that of the argmax derivation (from :func:`beam_decode`).
    """

    rules: Tensor
    complete: Tensor
    lengths: Tensor
    log_likelihood: Tensor
    argmax_log_likelihood: Tensor | None = None


def reorder_state(model: StepDecoder, state: object, index: Tensor) -> object:
    """The model state of rows ``index [B']`` (a re-gather after a beam step).

    Uses ``model.decoder_reorder(state, index)`` when the model defines it; otherwise walks
    tuples and lists: ``None`` stays, a 3-D tensor is gathered along dim 1 (a recurrent
    hidden state ``[layers x B x H]``), any other tensor along dim 0.
    """
    custom = getattr(model, "decoder_reorder", None)
    if custom is not None:
        return custom(state, index)
    return _gather(state, index)


def _gather(state: object, index: Tensor) -> object:
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.index_select(1 if state.dim() == 3 else 0, index)
    if isinstance(state, (tuple, list)):
        return type(state)(_gather(s, index) for s in state)
    raise TypeError(f"cannot reorder a decoder state of type {type(state).__name__}; "
                    "give the model a decoder_reorder(state, index) method")


def _gather_semantics(sem: object, index: Tensor) -> None:
    """Re-gather the rows of a semantic bookkeeping dataclass (every field ``[B ...]``), in place."""
    for f in dataclasses.fields(sem):
        value = getattr(sem, f.name)
        if isinstance(value, Tensor):
            setattr(sem, f.name, value.index_select(0, index))


@torch.no_grad()
def beam_search(decoder: StackDecoder, model: StepDecoder, z: Tensor, width: int) -> BeamResult:
    """Plain beam search of ``width`` (see :func:`beam_decode`, which also guards against argmax).

    Args:
        decoder: the stack decoder (grammar, semantic constraints, ``max_length``).
        model: a :class:`~molshape.grammar.decoding.StepDecoder`.
        z: ``B x d`` latents on the model's device.
        width: hypotheses kept per latent.

    Returns:
        :class:`BeamResult`; ties go to the lowest rule id, as in argmax decoding.
    """
    if width < 1:
        raise ValueError(f"beam width must be >= 1, got {width}")
    g = decoder.grammar
    B, device, k = z.shape[0], z.device, width
    rows = B * k
    t_ = decoder._on(device)
    stack, top = decoder._start(rows, device)
    sem = decoder.semantics.init(rows, device) if decoder.semantics is not None else None
    # Only the first hypothesis of each latent is alive at the start; the rest would copy it.
    score = torch.full((B, k), float("-inf"), dtype=torch.float64, device=device)
    score[:, 0] = 0.0
    score = score.reshape(rows)
    # a decoder that ignores the fed-back rule: one full-sequence call, shared by a latent's beams
    fixed_logits = sequence_logits(model, z, decoder.max_length)  # [B, T, R] or None
    if fixed_logits is None:
        state = model.decoder_init(z.repeat_interleave(k, dim=0))
    prev = torch.full((rows,), g.pad, dtype=torch.long, device=device)
    # each step's chosen rules and their parent rows; the derivations are read back at the end
    chosen: list[Tensor] = []
    parents: list[Tensor] = []
    base = (torch.arange(B, device=device) * k).unsqueeze(1)  # [B, 1] first row of each latent
    G = decoder.n_candidates
    skip = decoder._skips(model)
    for t in range(decoder.max_length):
        symbols = decoder._symbols(stack, top)
        allowed, choice = decoder._masks(sem, t, symbols, skip)
        if fixed_logits is not None:
            logits = fixed_logits[:, t].repeat_interleave(k, dim=0)
        else:
            logits, state = choice_step(model, state, prev, choice, g.n_productions)
        symbol = symbols.squeeze(1)  # [rows]
        cand = t_["cand"].index_select(0, symbol)  # [rows, G]
        scores = logits.gather(1, cand).double() + t_["cand_neg"].index_select(0, symbol).double()
        if allowed is not None:
            scores = scores.masked_fill(~allowed.gather(1, cand), float("-inf"))
        done = top == 0
        # a finished row writes the pad rule, its only choice, at no cost
        finished = torch.full_like(scores, float("-inf"))
        finished[:, 0] = 0.0
        scores = torch.where(done.unsqueeze(1), finished, scores)
        logp = scores - torch.logsumexp(scores, dim=1, keepdim=True)
        logp = torch.nan_to_num(logp, nan=float("-inf"))  # a row with nothing allowed (never expected)
        total = (score.unsqueeze(1) + logp).reshape(B, k * G)
        # stable: equal scores keep the lower parent, then the lower rule id (argmax's tie rule)
        best, pick = torch.sort(total, dim=1, descending=True, stable=True)
        best, pick = best[:, :k], pick[:, :k]
        parent = (base + pick // G).reshape(rows)
        rule = cand.reshape(B, k * G).gather(1, pick).reshape(rows)
        score = best.reshape(rows)
        stack, top = stack.index_select(0, parent), top.index_select(0, parent)
        chosen.append(rule)
        parents.append(parent)
        if sem is not None:
            _gather_semantics(sem, parent)
        if fixed_logits is None:
            state = reorder_state(model, state, parent)
        decoder._push(rule, stack, top)
        if sem is not None:
            decoder.semantics.update(sem, rule)
        prev = rule
        if t % 8 == 7 and _settled(score.reshape(B, k), (top == 0).reshape(B, k)):
            break
    return _best(decoder, _backtrack(chosen, parents, rows, device), score.reshape(B, k), (top == 0).reshape(B, k))


def _backtrack(chosen: list[Tensor], parents: list[Tensor], rows: int, device: torch.device) -> Tensor:
    """``rows x steps`` derivations of the final rows, read back through each step's parents."""
    out = torch.empty((rows, len(chosen)), dtype=torch.long, device=device)
    row = torch.arange(rows, device=device)
    for t in range(len(chosen) - 1, -1, -1):
        out[:, t] = chosen[t].index_select(0, row)
        row = parents[t].index_select(0, row)
    return out


def _settled(score: Tensor, done: Tensor) -> bool:
    """Whether every latent's best finished derivation is at least as likely as all its open ones."""
    best_done = torch.where(done, score, float("-inf")).amax(dim=1)
    best_open = torch.where(done, float("-inf"), score).amax(dim=1)
    return bool((best_done >= best_open).all())


def _best(decoder: StackDecoder, history: Tensor, score: Tensor, done: Tensor) -> BeamResult:
    """The most likely finished hypothesis per latent (the most likely open one when none finished)."""
    B, k = score.shape
    pad = decoder.grammar.pad
    any_done = done.any(dim=1)
    ranked = torch.where(done, score, float("-inf"))
    ranked = torch.where(any_done.unsqueeze(1), ranked, score)
    j = ranked.argmax(dim=1)  # first maximum: the higher-ranked beam on ties
    rows = torch.arange(B, device=score.device) * k + j
    T = decoder.max_length
    out = torch.full((B, T), pad, dtype=torch.long, device=score.device)
    steps = min(history.shape[1], T)
    out[:, :steps] = history.index_select(0, rows)[:, :steps]
    ll = score.gather(1, j.unsqueeze(1)).squeeze(1)
    ll = torch.where(any_done, ll, torch.full_like(ll, float("-inf")))
    return BeamResult(out, any_done, (out != pad).sum(dim=1), ll)


@torch.no_grad()
def beam_decode(decoder: StackDecoder, model: StepDecoder, z: Tensor, width: int = 5) -> BeamResult:
    """The most likely complete derivation found by a beam of ``width``, never less likely than argmax's.

    Runs :func:`beam_search` at ``width`` and at width 1 (argmax decoding, scored) and keeps,
    per latent, the more likely of the two (argmax's on ties). ``width=1`` is argmax decoding.

    Args:
        decoder: the stack decoder (its grammar, semantic constraints and ``max_length``).
        model: a :class:`~molshape.grammar.decoding.StepDecoder`.
        z: ``B x d`` latents on the model's device.
        width: hypotheses kept per latent.

    Returns:
        :class:`BeamResult` on ``z``'s device.
    """
    greedy = beam_search(decoder, model, z, 1)
    greedy.argmax_log_likelihood = greedy.log_likelihood
    if width == 1:
        return greedy
    beam = beam_search(decoder, model, z, width)
    better = beam.log_likelihood > greedy.log_likelihood
    pick = better.unsqueeze(1)
    return BeamResult(torch.where(pick, beam.rules, greedy.rules), torch.where(better, beam.complete, greedy.complete),
                      torch.where(better, beam.lengths, greedy.lengths),
                      torch.where(better, beam.log_likelihood, greedy.log_likelihood), greedy.log_likelihood)
