"""The Python API (molshape.load / encode / decode / sample / score / optimize)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import molshape
from molshape.grammar.cfg import GrammarError


def test_load_names_and_paths():
    expr = molshape.load("expr")
    assert expr.grammar.name == "expr" and expr.path.name == "expr-gmm-cpu.pt"
    assert molshape.load(expr.path).path == expr.path
    assert molshape.load("zinc-gmm-cpu").grammar.name == "smiles"
    assert molshape.load("zinc").grammar.name == "smiles_kekule"  # the default SMILES model is the Kekulé one
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        molshape.load("no-such-model")


def test_encode_decode_sample_are_seeded_and_shaped():
    m = molshape.load("expr")
    z = m.encode(["x*sin(x)", "1+x"])
    assert z.shape == (2, 25) and z.dtype == torch.float32
    assert m.decode(z) == m.decode(z.clone())
    assert list(m.sample(8, seed=3)) == list(m.sample(8, seed=3))
    assert m.latents(4, component=2).shape == (4, 25)
    with pytest.raises(GrammarError):
        m.encode(["x+"])


def test_score_is_a_frame_per_target():
    logp = molshape.score(["CCO", "C(("], target="logp")
    assert isinstance(logp, pd.DataFrame) and list(logp["valid"]) == [True, False]
    assert {"logp", "sa", "cycle", "reason"} <= set(logp.columns)
    expr = molshape.score(["x*sin(x)", "x+"], target="expr")
    assert list(expr["valid"]) == [True, False]
