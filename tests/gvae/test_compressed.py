"""Compressed derivations: the decoder GRU runs at choice points only, in training, teacher
forcing, argmax, sampling and beam decoding alike."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from molshape.cli import main
from molshape.data.datasets import load_dataset
from molshape.grammar.beam import beam_search
from molshape.grammar.decoding import make_decoder
from molshape.gvae.checkpoint import ModelCheckpoint
from molshape.gvae.latent_quality import teacher_forced_nlls
from molshape.gvae.model import GRAMMAR_OBJECTIVES, PRESETS, GrammarAutoencoder, build_model


@pytest.fixture(scope="module")
def kekule(zinc_path):
    return load_dataset("smiles_kekule", data=zinc_path, limit=60, progress=False)


def _model(compressed: bool = True, seed: int = 0) -> GrammarAutoencoder:
    cfg = PRESETS["smiles_kekule"]["cpu"].replace(
        dec_hidden=32, enc_dense=32, enc_hidden=16, latent_dim=8, lambda_rec=1.0, compressed=compressed,
        objective=GRAMMAR_OBJECTIVES["gmm"].fitted_to_batch(16))
    torch.manual_seed(seed)
    return build_model(cfg).eval()


class CountingSteps:
    """A model wrapper that counts decoder steps and the rows each one ran."""

    def __init__(self, model: GrammarAutoencoder) -> None:
        self.model, self.calls, self.rows = model, 0, 0

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def decoder_step(self, state, prev):
        self.calls += 1
        self.rows += len(prev)
        return self.model.decoder_step(state, prev)


def test_training_loss_equals_the_step_by_step_pass(kekule) -> None:
    """The packed sequence pass (training) and the one-step-at-a-time pass (decoders) agree, on
    real molecules whose choice points fall at different steps."""
    model = _model()
    idx = kekule.split["train"][:12]
    rules, lengths = kekule.rules[idx].long(), kekule.lengths[idx]
    steps = int(lengths.max())
    allowed = model.allowed_rules(rules[:, :steps])
    choices = (allowed.sum(-1) > 1).sum(1)
    # a good share of each derivation is forced, and rows differ in where their choices are
    assert (choices < 0.85 * lengths).all() and len(set(choices.tolist())) > 3
    with torch.no_grad():
        rec = model(rules, lengths)["rec"]
    z = model.encode(rules)
    per_step = teacher_forced_nlls(model, model.grammar, {"z": z}, rules, lengths)["z"]
    assert rec.item() == pytest.approx(per_step.mean().item(), rel=1e-5)


def test_forced_steps_add_nothing_and_the_gru_runs_fewer_steps(kekule) -> None:
    model = _model()
    idx = kekule.split["train"][:8]
    rules, lengths = kekule.rules[idx].long(), kekule.lengths[idx]
    target = rules[:, :int(lengths.max())]
    allowed = model.allowed_rules(target)
    seen = []
    hook = model.gru.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1]))
    with torch.no_grad():
        logits = model.masked_logits(model.teacher_logits(model.encode(rules), target, allowed), target,
                                     allowed=allowed)
    hook.remove()
    ce = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
    forced = allowed.sum(-1) == 1
    assert ce[forced].abs().max().item() == 0.0 and (ce[~forced] > 0).all()
    assert seen == [int((~forced).sum(1).max())] and seen[0] < target.shape[1]


def test_argmax_decoding_follows_the_teacher_forced_pass() -> None:
    """Each rule argmax decoding takes at a choice point is the best allowed rule of the training
    pass over the decoded derivation; the decoder skips the model at forced steps."""
    model = _model(seed=1)
    grammar = model.grammar
    decoder = make_decoder(grammar, guide=False)  # the training masks exactly
    counting = CountingSteps(model)
    z = torch.randn(24, model.config.latent_dim, generator=torch.Generator().manual_seed(3))
    out = decoder.decode(counting, z)
    assert out.complete.all()
    steps = int(out.lengths.max())
    rules = out.rules[:, :steps]
    allowed = model.allowed_rules(rules)
    with torch.no_grad():
        logits = model.masked_logits(model.teacher_logits(z, rules, allowed), rules, allowed=allowed)
    live = torch.arange(steps) < out.lengths.unsqueeze(1)
    assert (logits.argmax(-1) == rules)[live].all()
    row_steps = int(live.sum())
    assert counting.rows < 0.85 * row_steps  # forced steps ran no GRU


def test_beam_of_width_one_is_argmax_and_sampling_is_seeded() -> None:
    model = _model(seed=2)
    decoder = make_decoder(model.grammar)
    z = torch.randn(10, model.config.latent_dim, generator=torch.Generator().manual_seed(5))
    argmax = decoder.decode(model, z)
    beam = beam_search(decoder, model, z, 1)
    assert torch.equal(beam.rules, argmax.rules)
    a = decoder.decode(model, z, mode="sample", generator=torch.Generator().manual_seed(0))
    b = decoder.decode(model, z, mode="sample", generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.rules, b.rules) and not torch.equal(a.rules, argmax.rules)


def test_compressed_models_refuse_what_would_misplace_their_choice_points() -> None:
    model = _model()
    with pytest.raises(ValueError, match="semantic constraints"):
        make_decoder(model.grammar, constraints="grammar").decode(model, torch.zeros(2, 8))
    with pytest.raises(ValueError, match="decoder_feed_rules"):
        build_model(PRESETS["smiles"]["cpu"].replace(compressed=True))


def test_train_cli_compressed_run_decodes_and_resumes_only_compressed(zinc_path, tmp_path) -> None:
    out = tmp_path / "run"
    args = ["train", "--grammar", "smiles_kekule", "--data", str(zinc_path), "--limit", "120", "--batch-size",
            "40", "--hidden", "32", "--latent-dim", "8", "--out", str(out), "--device", "cpu", "--no-progress",
            "--threads", "1", "--compressed"]
    res = CliRunner().invoke(main, [*args, "--epochs", "1", "--json"])
    assert res.exit_code == 0, res.output
    assert ModelCheckpoint.load(out / "best.pt").config.compressed is True
    res = CliRunner().invoke(main, ["decode", "--checkpoint", str(out / "best.pt"), "--n", "5", "--seed", "0",
                                    "--json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["n"] == 5
    res = CliRunner().invoke(main, [*args[:-1], "--no-compressed", "--epochs", "2", "--resume"])
    assert res.exit_code == 2 and "compressed True" in res.output
