"""The shipped models load safely, match their grammar, and sample as their model card says."""

from __future__ import annotations

import pytest
import torch

from molshape import pretrained
from molshape.core.checkpoint import load_checkpoint
from molshape.gvae.generation import decode_latents, prior_latents
from molshape.grammar.cfg import load_grammar
from molshape.gvae.checkpoint import load_model

SHIPPED = pretrained.available()


def test_every_grammar_has_a_shipped_default() -> None:
    for grammar, name in pretrained.DEFAULTS.items():
        assert name in SHIPPED, f"no shipped model for {grammar}"
        assert pretrained.default_checkpoint(grammar).is_file()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_loads_with_weights_only_and_matches_grammar(name: str) -> None:
    path = pretrained.checkpoint_path(name)
    ckpt = load_checkpoint(path)  # torch.load(weights_only=True) inside
    card = pretrained.model_card(name)
    grammar = load_grammar(ckpt["grammar"])
    assert ckpt["grammar_hash"] == grammar.hash == card["grammar_hash"]
    assert "optimizer" not in ckpt, "shipped models carry no optimizer state"
    assert path.stat().st_size < 25 * 2**20


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_prior_validity_matches_its_card(name: str) -> None:
    card = pretrained.model_card(name)
    claimed = card["evaluate"]["samples"]["validity"]
    model, grammar, _ = load_model(pretrained.checkpoint_path(name))
    n = 300
    z = prior_latents(model, n, torch.Generator().manual_seed(1))
    with torch.no_grad():
        decoded = decode_latents(model, grammar, z)
    validity = sum(s is not None for s in decoded) / n
    # 300 samples: the binomial standard error is at most 0.029, so 90 % of the card's
    # figure (measured on 10,000 samples) is a margin of several standard errors.
    assert validity >= 0.9 * claimed, f"{name}: validity {validity:.3f} vs card {claimed:.3f}"
