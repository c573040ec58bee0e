"""Strings <-> latents with a real (tiny, briefly trained) model; latent sources."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from molshape.gvae import generation as gen
from molshape.grammar.decoding import StackDecoder
from molshape.grammar.cfg import GrammarError, load_grammar
from molshape.gvae.model import PRESETS, build_model




@pytest.fixture(scope="module")
def expr_model(expr_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """An expression model trained for 2 epochs on 360 expressions, and its checkpoint.

    The data file holds 1,400 expressions: the standard expression split holds out 1,000.
    """
    from conftest import read_lines

    from molshape.data.datasets import load_dataset
    from molshape.gvae.checkpoint import load_model
    from molshape.gvae.training import train_grammar
    from molshape.training.fit import TrainConfig

    out = tmp_path_factory.mktemp("expr_model")
    data_file = out / "expr.txt"
    data_file.write_text("\n".join(read_lines(expr_path, 1400)) + "\n")
    data = load_dataset("expr", data_file, progress=False)
    cfg = PRESETS["expr"]["cpu"].replace(dec_hidden=48, dec_layers=1, enc_dense=48)
    train_grammar(cfg, TrainConfig(epochs=2, batch_size=100, device="cpu", progress=False, seed=0), data, out)
    model, grammar, ckpt = load_model(out / "best.pt")
    return model, grammar, ckpt, out / "best.pt", data


def test_encode_decode_shapes_and_validity(expr_model) -> None:
    model, grammar, *_ = expr_model
    z = gen.encode_strings(model, grammar, ["x+1", "sin(x)*2", "exp(x/3)"])
    assert z.shape == (3, model.config.latent_dim) and z.dtype == torch.float32
    out = gen.decode_latents(model, grammar, z)
    assert len(out) == 3 == len(out.reasons) == len(out.raw)
    for s, why, raw in zip(out, out.reasons, out.raw):
        assert (s is None) == (why is not None)
        if s is not None:
            assert s == raw and gen.invalid_reason(grammar, s) is None


def test_encode_strings_names_the_bad_input(expr_model) -> None:
    model, grammar, *_ = expr_model
    with pytest.raises(GrammarError, match="input 2"):
        gen.encode_strings(model, grammar, ["x+1", "x+-", "1"])
    parsed = gen.parse_inputs(grammar, ["x", "", "x+-", "sin(x)"])
    assert parsed.index == [0, 3]
    assert [i for i, *_ in parsed.failed] == [1, 2]
    assert parsed.rules.shape == (2, grammar.max_length)


def test_full_sequence_and_stepwise_paths_agree(expr_model) -> None:
    """GVAE decoders take the one-call decode_logits path; it must equal stepping."""
    model, grammar, *_ = expr_model
    z = gen.prior_latents(model, 64, torch.Generator().manual_seed(0))
    fast = StackDecoder(grammar).decode(model, z)

    class Stepper(torch.nn.Module):  # hides decode_logits / config
        def __init__(self, m):
            super().__init__()
            self.m = m

        def decoder_init(self, z):
            return self.m.decoder_init(z)

        def decoder_step(self, state, prev):
            return self.m.decoder_step(state, prev)

    slow = StackDecoder(grammar).decode(Stepper(model), z)
    assert torch.equal(fast.rules, slow.rules) and torch.equal(fast.complete, slow.complete)


def test_feedback_decoder_runs_stepwise() -> None:
    grammar = load_grammar("expr")
    cfg = PRESETS["expr"]["cpu"].replace(dec_hidden=16, dec_layers=1, enc_dense=16, decoder_feed_rules=True)
    torch.manual_seed(0)
    model = build_model(cfg, grammar).eval()
    z = gen.prior_latents(model, 32, torch.Generator().manual_seed(1))
    out = gen.decode_latents(model, grammar, z, mode="sample", generator=torch.Generator().manual_seed(2))
    assert len(out) == 32
    assert all(r is None or r == "incomplete" or r.startswith("invalid") for r in out.reasons)


def test_sampling_is_reproducible_and_attempts_aggregate(expr_model) -> None:
    model, grammar, *_ = expr_model
    z = gen.prior_latents(model, 40, torch.Generator().manual_seed(3))
    a = gen.decode_latents(model, grammar, z, "sample", generator=torch.Generator().manual_seed(5))
    b = gen.decode_latents(model, grammar, z, "sample", generator=torch.Generator().manual_seed(5))
    assert list(a) == list(b) and a.reasons == b.reasons
    k = 5
    agg = gen.decode_latents(model, grammar, z, "sample", attempts=k, generator=torch.Generator().manual_seed(5))
    each = gen.decode_latents(model, grammar, z.repeat_interleave(k, 0), "sample",
                              generator=torch.Generator().manual_seed(5))
    assert len(agg) == 40
    for i, s in enumerate(agg):
        group = [x for x in each[i * k:(i + 1) * k] if x is not None]
        if s is None:
            assert not group
        else:
            assert group.count(s) == max(group.count(x) for x in group)
    assert sum(s is not None for s in agg) >= sum(s is not None for s in a)
    with pytest.raises(ValueError, match="sample"):
        gen.decode_latents(model, grammar, z, "argmax", attempts=3)


def test_latent_sources(expr_model) -> None:
    model, grammar, ckpt, path, data = expr_model
    prior = model.objective.prior
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(gen.prior_latents(model, 10, g()), gen.prior_latents(model, 10, g()))
    zk = gen.component_latents(model, 3, 500, g())
    assert (prior.assign(zk) == 3).float().mean() > 0.95  # spread centres are >= 6 apart
    line = gen.interpolate_latents(model, grammar, "x+1", "sin(x)", 5)
    ends = gen.encode_strings(model, grammar, ["x+1", "sin(x)"])
    assert torch.allclose(line[0], ends[0]) and torch.allclose(line[-1], ends[1])
    assert torch.allclose(line[2], ends.mean(0), atol=1e-6)


def test_expost_gmm_fits_training_latents_and_is_cached(expr_model) -> None:
    model, grammar, ckpt, path, data = expr_model
    gmm = gen.expost_gmm(model, grammar, ckpt, path, data=Path(data.source))
    assert gmm.means.shape == (10, model.config.latent_dim)
    assert torch.allclose(gmm.weights.sum(), torch.tensor(1.0, dtype=torch.float64))
    z = gmm.sample(4000, torch.Generator().manual_seed(0))
    train_z = gen.encode_rules(model, data.rules[ckpt.split["train"]])
    # samples follow the training latents, not the prior
    assert torch.allclose(z.mean(0), train_z.mean(0), atol=0.25 * float(train_z.std()))
    again = gen.expost_gmm(model, grammar, ckpt, path, data=Path("/nonexistent/never-read"))
    assert torch.equal(again.means, gmm.means)  # served from the cache, data not read


def test_expost_refuses_other_data(expr_model, tmp_path: Path) -> None:
    from molshape.core.checkpoint import load_checkpoint, save_checkpoint

    model, grammar, ckpt, path, data = expr_model
    other = tmp_path / "other.txt"
    other.write_text("x+1\nsin(x)\n" * 600)
    fresh = tmp_path / "fresh.pt"  # other bytes than the fixture's checkpoint: no cached GMM
    save_checkpoint({**load_checkpoint(path), "epoch": -1}, fresh)
    with pytest.raises(ValueError, match="not the data"):
        gen.expost_gmm(model, grammar, ckpt, fresh, data=other)
