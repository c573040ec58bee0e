"""Pinned decodes of the shipped Kekulé model: any change to decoding, the semantic
bookkeeping or the model's arithmetic that alters a decoded molecule fails here."""

from __future__ import annotations

import pytest
import torch

from molshape.gvae.generation import decode_latents, prior_latents
from molshape.gvae.checkpoint import load_model
from molshape.pretrained import checkpoint_path

ARGMAX = [
    'O=S(=O)(CCC[NH+](C)C)C1CCCCC1',
    'CC1=NC2=C(C(=O)N1CC1=CC=C(S(=O)(=O)N3CCN(C4=CC=C(F)C=C4)CC3)C(=O)N1C)C(=O)N3CC1=CC=CC=C1C=C1C=CC=C1C3=CC=C2',
    'CC(=O)NCCC(=O)C1=CC=CC=C1CN1C=CC=N1',
    'O=S(=O)(NC1=CC=C(NC(=O)C2=CC=C(F)C=C2)C=C1)C1=CC2=C(C=C1)OCO2',
    'O=[N+]([O-])C1CCCCC2=C1CCCC2',
    'CC1=CC=C(C2=NN=C(SCC(=O)N3CCN(C4=CC=CC=C4F)CC3)C=C2)C=C1',
    'CNS(=O)(=O)C1=C(C)C=CC(NCCC(C)C)=C1',
    'CC(=S)NCC(=O)NC1=CC(C(=O)N(C)C)=C(F)C=C1',
    'CCS(=O)(=O)C1=C(C(=O)NCC2=CC3=C(C=C2)N(C)C(C(N)=O)=C3C)C=C(C)C=C1',
    'C#CC1=CC=C(C(=O)NC2=NC3=C(C(=O)N2CC2=CC=CC=C2)CCCC3=O)CCC1',
]

# mode="sample", generator seeded 1, batch_size=4 (three batches share the generator)
SAMPLE = [
    'O=S1SC(SCCCl)=NC1=O',
    'CC1=NC2=C(C(=O)N2C2=CC=C(S(=O)(=O)N3CCN(C4=CC=CC=C4)C=C3C=C3)CC213)NC1=CC=CC=C1O',
    'CC(=O)NC(CC(=O)[O-])C1CC1',
    'N#CC(C#N)CC(=O)NC(=S)NC1=CC=C(C(=O)[O-])C=C1',
    'N#CC1=C(C(=O)N(CC(F)(F)F)C2CCC2)SC2=CC=CC=C21',
    'CC1=CC=C(S(=O)(=O)C2[NH+]=C3NC(CCC(=O)NCC4=CC=C(Cl)C=C4)=C3)CC2=C1',
    'CCS(=O)(=O)C1=C(C#N)C(NCC(N)=SCC(=O)[O-])=C(C)C=C1',
    'CC(=O)NCC(=O)NC1=C(OCC2=CC=CO2)C=C(F)C=C1',
    'CNC(=O)C1=C2C(=NC(C(C)(N)CC(=O)NC3=NN=C4C=CC(C(F)(F)F)=NC43O)C2=O)C=C1',
    'N#CC1=CC=C(COC2=C3C(=CN=N3)N2CCC2=CC=CC=C2C2=NC(C[NH+]3CC[NH+](C)CC3)=N2)C(C)C1',
]
# the generator's next two draws after those decodes
AFTER = [0.2766039967536926, 0.6946853995323181]


@pytest.fixture(scope="module")
def shipped():
    model, grammar, _ = load_model(checkpoint_path("zinc-kekule-gmm-cpu"), "cpu")
    z = prior_latents(model, 2000, torch.Generator().manual_seed(0))[:10]
    return model, grammar, z


def test_argmax_decodes_are_pinned(shipped) -> None:
    model, grammar, z = shipped
    assert list(decode_latents(model, grammar, z).raw) == ARGMAX


def test_sampled_decodes_and_generator_state_are_pinned(shipped) -> None:
    model, grammar, z = shipped
    gen = torch.Generator().manual_seed(1)
    assert list(decode_latents(model, grammar, z, mode="sample", generator=gen, batch_size=4).raw) == SAMPLE
    assert torch.rand(2, generator=gen).tolist() == pytest.approx(AFTER, abs=0)


def test_decoding_alone_or_in_a_batch_agrees(shipped) -> None:
    model, grammar, z = shipped
    alone = [decode_latents(model, grammar, z[i:i + 1]).raw[0] for i in (0, 4, 9)]
    assert alone == [ARGMAX[i] for i in (0, 4, 9)]
