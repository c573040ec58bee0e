"""ModelCheckpoint: one read, one check, CheckpointError for every bad file, saved weights not re-estimated."""

from __future__ import annotations

import click
import pytest
import torch

import molshape
import molshape.latent.regularizer as regularizer
from molshape.cli.common import resolve_checkpoint
from molshape.core.checkpoint import FORMAT_KEY, CheckpointError
from molshape.gvae.checkpoint import GrammarMismatch, ModelCheckpoint
from molshape.latent.objectives import GMMConfig
from molshape.pretrained import checkpoint_path, default_checkpoint

EXPR = checkpoint_path("expr-gmm-cpu")


def _no_estimate(*args, **kwargs):
    raise AssertionError("estimate_weights ran while loading a checkpoint")


def test_load_reads_the_checkpoint_once_and_estimates_nothing(monkeypatch) -> None:
    reads = []
    real_load = torch.load

    def counting_load(*args, **kwargs):
        reads.append(args[0])
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    monkeypatch.setattr(regularizer, "estimate_weights", _no_estimate)
    m = molshape.load("zinc")
    assert len(reads) == 1 and reads[0] == default_checkpoint("smiles_kekule")
    # the KS/CV weights are the saved ones, not NaN placeholders
    saved = real_load(default_checkpoint("smiles_kekule"), weights_only=True)["model"]
    assert m.net.objective.regularizer.lambda_ks.item() == saved["objective.regularizer.lambda_ks"].item()
    assert torch.isfinite(m.net.objective.regularizer.lambda_cv)


def test_typed_fields_of_a_shipped_checkpoint() -> None:
    ckpt = ModelCheckpoint.load(EXPR)
    assert ckpt.grammar.name == "expr" and ckpt.config.objective == GMMConfig(batch_size=100)
    assert set(ckpt.split) == {"train", "valid", "test"} and ckpt.data["sha256"]
    assert ckpt.train_config.batch_size == 100 and ckpt.epoch >= 1 and ckpt.history
    assert not ckpt.is_training_run  # shipped files carry no optimizer state


def test_nested_config_saves_and_rebuilds_the_same_model(tmp_path) -> None:
    """A checkpoint written with the nested config reads back to the model the flat (shipped) one gives."""
    raw = torch.load(EXPR, weights_only=True)
    old = ModelCheckpoint.load(EXPR)
    raw["model_config"] = old.config.to_dict()
    assert isinstance(raw["model_config"]["objective"], dict)
    torch.save(raw, tmp_path / "nested.pt")
    new = ModelCheckpoint.load(tmp_path / "nested.pt")
    assert new.config == old.config
    rules = torch.full((2, new.grammar.max_length), new.grammar.pad)
    rules[:, 0] = 0
    with torch.no_grad():
        torch.testing.assert_close(new.to_model().encode(rules), old.to_model().encode(rules), rtol=0, atol=0)


def _write(tmp_path, name: str, **changes) -> object:
    raw = torch.load(EXPR, weights_only=True)
    for key, value in changes.items():
        if value is None:
            raw.pop(key)
        else:
            raw[key] = value
    path = tmp_path / name
    torch.save(raw, path)
    return path


def test_every_bad_checkpoint_is_a_checkpoint_error(tmp_path) -> None:
    raw = torch.load(EXPR, weights_only=True)
    cases = {
        "image.pt": ({"kind": "image"}, "holds a 'image' model"),
        "nomodel.pt": ({"model": None}, "missing model"),
        "newer.pt": ({FORMAT_KEY: 99}, "newer than this molshape reads"),
        "bogus.pt": ({"model_config": {**raw["model_config"], "bogus": 1}}, "unknown setting 'bogus'"),
        "badobj.pt": ({"model_config": {**raw["model_config"], "objective": "nope"}}, "unknown objective 'nope'"),
        "trainbogus.pt": ({"train_config": {**raw["train_config"], "bogus": 1}}, "unknown setting 'bogus'"),
        "hash.pt": ({"grammar_hash": "0" * 64}, "another version of grammar 'expr'"),
        "grammar.pt": ({"grammar": "nonexistent"}, "names grammar 'nonexistent'"),
    }
    for name, (changes, message) in cases.items():
        with pytest.raises(CheckpointError, match=message):
            ModelCheckpoint.load(_write(tmp_path, name, **changes))
    shapes = {**raw["model"], "out.bias": torch.zeros(3)}
    with pytest.raises(CheckpointError, match="weights do not fit"):
        ModelCheckpoint.load(_write(tmp_path, "shape.pt", model=shapes)).to_model()
    with pytest.raises(GrammarMismatch, match="trained on grammar 'expr', not 'smiles'"):
        ModelCheckpoint.load(EXPR, grammar="smiles")


def test_cli_resolves_names_through_the_api(tmp_path) -> None:
    assert resolve_checkpoint(None, "expr") == EXPR
    assert resolve_checkpoint(EXPR, "smiles") == EXPR
    assert resolve_checkpoint("expr-gmm-cpu", "smiles") == EXPR  # a shipped name
    assert resolve_checkpoint("expr", "smiles") == EXPR  # an alias, as molshape.load("expr")
    with pytest.raises(click.BadParameter, match="no such checkpoint file"):
        resolve_checkpoint(tmp_path / "missing.pt", "expr")
    with pytest.raises(click.BadParameter, match="is a directory"):
        resolve_checkpoint(tmp_path, "expr")
