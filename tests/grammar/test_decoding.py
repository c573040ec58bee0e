"""The vectorised stack decoder against the per-molecule reference, and its guarantees."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from molshape.grammar.decoding import StackDecoder, gumbel_noise, reference_decode
from molshape.grammar.cfg import load_grammar
from molshape.grammar.parser import get_parser




class ReplayModel(torch.nn.Module):
    """Emits precomputed logits step by step and records the rules fed back to it."""

    def __init__(self, logits: Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.fed: list[Tensor] = []

    def decoder_init(self, z: Tensor) -> tuple[int, Tensor]:
        return 0, torch.arange(z.shape[0])  # (step, batch rows still decoded)

    def decoder_step(self, state: tuple[int, Tensor], prev_rule: Tensor) -> tuple[Tensor, tuple[int, Tensor]]:
        t, rows = state
        fed = torch.full((self.logits.shape[0],), -1, dtype=torch.long)  # -1: the row has left the batch
        fed[rows] = prev_rule
        self.fed.append(fed)
        return self.logits[rows, t], (t + 1, rows)


def _logits(grammar_name: str, batch: int, seed: int) -> Tensor:
    g = load_grammar(grammar_name)
    return torch.randn(batch, g.max_length, g.n_productions, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ["smiles", "expr"])
def test_argmax_matches_reference(name: str) -> None:
    g = load_grammar(name)
    logits = _logits(name, 300, 0)
    fast = StackDecoder(g).decode_logits(logits)
    slow = reference_decode(g, logits)
    assert torch.equal(fast.rules, slow.rules)
    assert torch.equal(fast.complete, slow.complete)
    assert 0 < int(fast.complete.sum()) < len(logits)  # random logits give both outcomes


@pytest.mark.parametrize("name", ["smiles", "expr"])
def test_complete_sequences_expand_and_reparse(name: str) -> None:
    g = load_grammar(name)
    parser = get_parser(g)
    out = StackDecoder(g).decode_logits(_logits(name, 200, 1))
    checked = 0
    for rules, n, ok in zip(out.rules, out.lengths, out.complete):
        seq = rules[: int(n)].tolist()
        assert set(seq).isdisjoint(g.unusable)
        assert (rules[int(n):] == g.pad).all()
        if ok:
            checked += 1
            assert parser.parse(parser.expand(seq)) == seq  # a leftmost derivation of its string
        else:
            assert int(n) == g.max_length  # incomplete: ran out of steps, never truncated
            with pytest.raises(ValueError, match="incomplete"):
                parser.expand(seq)
    assert checked > 10


def test_true_derivations_are_recovered(zinc_sample: list[str]) -> None:
    """Logits peaked on a true derivation decode back to exactly that derivation."""
    g = load_grammar("smiles")
    parser = get_parser(g)
    seqs = [parser.parse(s) for s in zinc_sample[:50]]
    rules = torch.tensor([s + [g.pad] * (g.max_length - len(s)) for s in seqs])
    logits = torch.randn(len(rules), g.max_length, g.n_productions) + 20 * torch.nn.functional.one_hot(rules, g.n_productions)
    out = StackDecoder(g).decode_logits(logits)
    assert torch.equal(out.rules, rules)
    assert out.complete.all()
    assert out.lengths.tolist() == [len(s) for s in seqs]


def test_sampling_is_seeded_and_matches_reference_with_same_noise() -> None:
    g = load_grammar("expr")
    logits = _logits("expr", 500, 2)
    dec = StackDecoder(g)
    a = dec.decode_logits(logits, "sample", torch.Generator().manual_seed(7))
    b = dec.decode_logits(logits, "sample", torch.Generator().manual_seed(7))
    c = dec.decode_logits(logits, "sample", torch.Generator().manual_seed(8))
    assert torch.equal(a.rules, b.rules) and not torch.equal(a.rules, c.rules)
    # one [B x G] noise draw per step over the allowed candidates, on both paths
    gen = torch.Generator().manual_seed(7)
    noise = torch.stack([gumbel_noise((500, dec.n_candidates), gen, torch.device("cpu"))
                         for _ in range(g.max_length)], dim=1)
    assert torch.equal(a.rules, reference_decode(g, logits, noise).rules)
    stepped = dec.decode(ReplayModel(logits), torch.zeros(500, 2), "sample", torch.Generator().manual_seed(7))
    assert torch.equal(stepped.rules, a.rules)
    assert not torch.equal(a.rules, dec.decode_logits(logits).rules)


def test_sampling_follows_the_masked_softmax() -> None:
    """Gumbel-max: frequencies of the first rule match the softmax over allowed rules."""
    g = load_grammar("expr")
    n = 20000
    logits = torch.zeros(n, g.max_length, g.n_productions)
    logits[:, 0, :4] = torch.tensor([0.0, 1.0, 2.0, -1.0])  # S -> S+T | S*T | S/T | T
    logits[:, 0, 4:] = 50.0  # disallowed for S: must never win despite huge scores
    out = StackDecoder(g).decode_logits(logits, "sample", torch.Generator().manual_seed(0))
    first = out.rules[:, 0]
    assert first.max() < 4
    freq = torch.bincount(first, minlength=4).float() / n
    expect = torch.softmax(torch.tensor([0.0, 1.0, 2.0, -1.0]), 0)
    assert torch.allclose(freq, expect, atol=0.015)


def test_decode_steps_model_and_feeds_back_chosen_rules() -> None:
    g = load_grammar("smiles")
    logits = _logits("smiles", 64, 3)
    model = ReplayModel(logits)
    out = StackDecoder(g).decode(model, torch.zeros(64, 4))
    ref = StackDecoder(g).decode_logits(logits)
    assert torch.equal(out.rules, ref.rules) and torch.equal(out.complete, ref.complete)
    fed = torch.stack(model.fed, dim=1)  # [B, steps run]
    assert (fed[:, 0] == g.pad).all()
    steps = fed.shape[1]
    live = fed[:, 1:] >= 0
    assert torch.equal(fed[:, 1:][live], out.rules[:, : steps - 1][live])
    # a row leaves the batch (no model call from step k on) only once its derivation is complete
    left = (fed < 0).any(1)
    assert left.any() and out.complete[left].all()
    first = (fed[left] < 0).float().argmax(1)
    assert (out.lengths[left] <= first).all()


def test_decode_stops_model_early_when_all_complete() -> None:
    g = load_grammar("expr")
    # always pick the shortest production: S -> T, T -> x
    logits = torch.full((8, g.max_length, g.n_productions), -5.0)
    logits[:, :, 3] = 5.0
    logits[:, :, 7] = 5.0
    model = ReplayModel(logits)
    out = StackDecoder(g).decode(model, torch.zeros(8, 2))
    assert out.complete.all() and (out.lengths == 2).all()
    assert len(model.fed) < g.max_length
    assert get_parser(g).expand(out.rules[0].tolist()) == "x"


def test_short_logits_are_incomplete_not_truncated() -> None:
    g = load_grammar("smiles")
    out = StackDecoder(g).decode_logits(_logits("smiles", 20, 4)[:, :2])
    assert not out.complete.any()


def test_bad_mode_and_shape() -> None:
    dec = StackDecoder(load_grammar("expr"))
    with pytest.raises(ValueError, match="mode"):
        dec.decode_logits(torch.zeros(2, 15, 12), mode="greedy")
    with pytest.raises(ValueError, match="logits must be"):
        dec.decode_logits(torch.zeros(2, 15, 11))
