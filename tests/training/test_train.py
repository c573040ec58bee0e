"""Training loop: bucketing, masked argmax decoding, checkpoints, exact resume, load_model."""

from __future__ import annotations

import torch
import pytest

from molshape.data.batching import bucket_batches, padded_steps, shard
from molshape.core.checkpoint import CheckpointError, load_checkpoint
from molshape.data.datasets import load_dataset
from molshape.grammar.cfg import load_grammar
from molshape.gvae.checkpoint import load_model
from molshape.gvae.model import PRESETS
from molshape.grammar.decoding import StackDecoder
from molshape.gvae.training import make_evaluator, train_grammar
from molshape.training.fit import TrainConfig




@pytest.fixture(scope="module")
def expr_data(expr_path):
    return load_dataset("expr", data=expr_path, limit=300, progress=False)


def test_bucket_batches_cover_everything_once_and_are_seeded() -> None:
    lengths = torch.randint(5, 200, (1000,), generator=torch.Generator().manual_seed(0))
    a = bucket_batches(lengths, 64, torch.Generator().manual_seed(1), chunk_batches=4)
    b = bucket_batches(lengths, 64, torch.Generator().manual_seed(1), chunk_batches=4)
    c = bucket_batches(lengths, 64, torch.Generator().manual_seed(2), chunk_batches=4)
    assert torch.equal(torch.cat(a).sort().values, torch.arange(1000))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    bucketed, full = padded_steps(a, lengths)
    assert bucketed < 0.75 * full  # batches hold similar lengths
    ids = torch.arange(1000) + 5000
    assert torch.equal(torch.cat(bucket_batches(lengths, 64, torch.Generator().manual_seed(1), 4, ids)).sort().values, ids)


def test_shard_gives_equal_disjoint_shares() -> None:
    batches = [torch.tensor([i]) for i in range(7)]
    s0, s1 = shard(batches, 0, 2), shard(batches, 1, 2)
    assert len(s0) == len(s1) == 3
    assert not {int(x) for x in s0} & {int(x) for x in s1}
    assert shard(batches, 0, 1) == batches


class _Oracle:
    """A stand-in decoder whose logits point at known rules."""

    decoder_feed_rules = False  # a SequenceDecoder: decoded in one decode_logits call

    def __init__(self, rules: torch.Tensor, n_rules: int) -> None:
        self.rules, self.n_rules = rules, n_rules
        self.config = PRESETS["expr"]["paper"]

    def decoder_init(self, z: torch.Tensor) -> None:
        raise AssertionError("a decoder that feeds no rules back is never stepped")

    decoder_step = decoder_init

    def decode_logits(self, z: torch.Tensor, steps: int) -> torch.Tensor:
        return torch.nn.functional.one_hot(self.rules[:, :steps], self.n_rules).float() * 5


def argmax_decode(model, grammar, z, steps):
    out = StackDecoder(grammar, max_length=steps).decode(model, z)
    return out.rules, out.complete


def test_validation_decoder_follows_the_stack(expr_data) -> None:
    grammar = load_grammar("expr")
    rules = expr_data.rules[:20]
    decoded, complete = argmax_decode(_Oracle(rules, 12), grammar, torch.zeros(20, 2), 15)
    assert torch.equal(decoded, rules) and complete.all()
    # logits that prefer an unexpandable-at-this-point rule are masked: decoding stays grammatical
    bad = rules.clone()
    bad[:, 0] = 7  # T -> 'x' is not allowed for the start symbol S
    decoded, _ = argmax_decode(_Oracle(bad, 12), grammar, torch.zeros(20, 2), 15)
    assert (grammar.lhs_tensor()[decoded[:, 0]] == grammar.start).all()
    # too few steps: incomplete
    _, complete = argmax_decode(_Oracle(rules, 12), grammar, torch.zeros(20, 2), 5)
    assert not complete.any()


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 50, "progress": False, "seed": 3, "device": "cpu", **kw})


def test_resume_after_a_kill_mid_epoch_gives_identical_weights(expr_data, tmp_path) -> None:
    # vae: its reparameterisation noise checks that the RNG state is restored too
    model_cfg = PRESETS["expr"]["paper"].replace(objective="vae", dec_hidden=32, dec_layers=1)
    full = train_grammar(model_cfg, _cfg(), expr_data, tmp_path / "full")

    class Killed(RuntimeError):
        pass

    def kill(epoch: int, batch: int) -> None:
        if epoch == 1 and batch == 2:
            raise Killed

    with pytest.raises(Killed):
        train_grammar(model_cfg, _cfg(), expr_data, tmp_path / "killed", on_batch_end=kill)
    assert load_checkpoint(tmp_path / "killed" / "last.pt")["epoch"] == 1
    resumed = train_grammar(model_cfg, _cfg(), expr_data, tmp_path / "killed", resume=True)
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "killed" / "last.pt")
    assert b["epoch"] == 2 and len(b["history"]) == 2
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert resumed["best_valid_loss"] == full["best_valid_loss"]


def test_checkpoint_contents_and_load_model(expr_data, tmp_path) -> None:
    cfg = PRESETS["expr"]["cpu"].replace(dec_hidden=32)
    s = train_grammar(cfg, _cfg(epochs=1), expr_data, tmp_path)
    for name in ("last.pt", "best.pt", "metrics.csv", "curves.png"):
        assert (tmp_path / name).is_file(), name
    ckpt = load_checkpoint(tmp_path / "last.pt")  # weights_only=True
    for key in ("model", "optimizer", "scheduler", "model_config", "train_config", "grammar", "grammar_hash",
                "data", "split", "epoch", "step", "best_valid_loss", "history", "rng", "kind"):
        assert key in ckpt, key
    assert ckpt["kind"] == "grammar" and ckpt["model_config"]["lambda_rec"] == pytest.approx(s["lambda_rec"])
    assert set(ckpt["split"]) == {"train", "valid", "test"}
    assert "objective.regularizer.lambda_ks" in ckpt["model"]
    for key in ("valid_loss", "valid_recon_acc", "valid_ks_stat", "valid_ks", "valid_cv", "train_rec"):
        assert key in ckpt["history"][0], key
    # the reported test accuracy is that of best.pt on the checkpoint's own test rows
    best, best_grammar, best_ckpt = load_model(tmp_path / "best.pt")
    test_rows = best_ckpt.split["test"]
    evaluate = make_evaluator(best_grammar, expr_data.rules[test_rows], expr_data.lengths[test_rows], 50, "test")
    with torch.no_grad():
        assert evaluate(best)["test_recon_acc"] == pytest.approx(s["test_recon_acc"])
    assert s["n_test"] == len(test_rows) > 0
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "valid_recon_acc" in header and "lr" in header

    model, grammar, _ = load_model(tmp_path / "best.pt")
    assert grammar.name == "expr" and not model.training
    rules = expr_data.rules[expr_data.split["valid"][:10]]
    with torch.no_grad():
        z = model.encode(rules)
    assert z.shape == (10, 25)

    ckpt["grammar_hash"] = "0" * 64
    torch.save(ckpt, tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="another version of grammar 'expr'"):
        load_model(tmp_path / "tampered.pt")


def test_resume_without_checkpoint_is_a_clear_error(expr_data, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="--resume: no checkpoint"):
        train_grammar(PRESETS["expr"]["cpu"], _cfg(), expr_data, tmp_path, resume=True)


def test_time_budget_stops_mid_epoch_checkpoints_and_resumes(expr_data, tmp_path) -> None:
    model_cfg = PRESETS["expr"]["cpu"].replace(dec_hidden=32, dec_layers=1)
    s = train_grammar(model_cfg, _cfg(epochs=3, max_minutes=1e-6), expr_data, tmp_path)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert s["stopped_by_time_limit"] and s["epochs"] == 1
    assert ckpt["step"] == 1 and ckpt["history"][0]["partial"] == 1.0  # one step, then validate + save
    assert "test_recon_acc" in s  # best.pt was still evaluated on the test split
    resumed = train_grammar(model_cfg, _cfg(epochs=3), expr_data, tmp_path, resume=True)
    history = load_checkpoint(tmp_path / "last.pt")["history"]
    assert not resumed["stopped_by_time_limit"] and [r["epoch"] for r in history] == [1, 2, 3]
    assert [r["partial"] for r in history] == [1.0, 0.0, 0.0]


def test_a_few_training_steps_lower_the_loss(expr_data) -> None:
    """The loop learns: 30 Adam steps on one fixed batch lower its loss well below the start."""
    from molshape.gvae.model import build_model
    from molshape.latent.objectives import GMMConfig

    torch.manual_seed(0)
    cfg = PRESETS["expr"]["cpu"].replace(dec_hidden=32, dec_layers=1, enc_dense=32, objective=GMMConfig(batch_size=50),
                                         lambda_rec=1.0)
    model = build_model(cfg)
    rows = expr_data.split["train"][:50]
    rules, lengths = expr_data.rules[rows].long(), expr_data.lengths[rows]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        out = model(rules, lengths)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["rec"]))
    assert losses[-1] < 0.7 * losses[0], losses


def test_exp_schedule_halves_per_half_life_and_resumes_on_the_same_curve(expr_data, tmp_path) -> None:
    """The rate follows the step count (not the validation loss) and a resumed run stays on it."""
    model_cfg = PRESETS["expr"]["cpu"].replace(dec_hidden=32, dec_layers=1)
    cfg = _cfg(epochs=3, schedule="exp", lr=2e-3, lr_half_life=2, min_lr=1e-4)
    train_grammar(model_cfg, cfg, expr_data, tmp_path / "full")
    train_grammar(model_cfg, _cfg(**{**cfg.to_dict(), "epochs": 1}), expr_data, tmp_path / "split")
    train_grammar(model_cfg, cfg, expr_data, tmp_path / "split", resume=True)
    full = load_checkpoint(tmp_path / "full" / "last.pt")
    steps_per_epoch = full["step"] // 3
    expected = [max(1e-4, 2e-3 * 0.5 ** (steps_per_epoch * (e + 1) / 2)) for e in range(3)]
    assert [r["lr"] for r in full["history"]] == pytest.approx(expected, rel=1e-6)
    assert expected[0] < 2e-3 and expected[-1] == 1e-4  # it decayed, down to the floor
    split = load_checkpoint(tmp_path / "split" / "last.pt")
    assert [r["lr"] for r in split["history"]] == [r["lr"] for r in full["history"]]
    for k, v in full["model"].items():
        assert torch.equal(v, split["model"][k]), k


def test_cpu_bf16_trains_to_nearly_the_same_loss_and_differs_from_fp32(expr_data, tmp_path, monkeypatch) -> None:
    """bfloat16 autocast on CPU changes the arithmetic (weights differ) but not the learning."""
    monkeypatch.setattr("molshape.training.fit.cpu_bf16_supported", lambda: True)  # slow but exact on any CPU
    model_cfg = PRESETS["expr"]["cpu"].replace(dec_hidden=32, dec_layers=1)
    fp32 = train_grammar(model_cfg, _cfg(epochs=1), expr_data, tmp_path / "fp32")
    bf16 = train_grammar(model_cfg, _cfg(epochs=1, cpu_bf16=True), expr_data, tmp_path / "bf16")
    assert bf16["best_valid_loss"] == pytest.approx(fp32["best_valid_loss"], rel=0.05)
    a = load_checkpoint(tmp_path / "fp32" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "bf16" / "last.pt")["model"]
    assert any(not torch.equal(v, b[k]) for k, v in a.items())  # the flag did take effect
    assert load_checkpoint(tmp_path / "bf16" / "last.pt")["train_config"]["cpu_bf16"] is True


def test_cpu_bf16_falls_back_to_float32_on_a_cpu_without_bf16_arithmetic(expr_data, tmp_path, monkeypatch, caplog) -> None:
    """Where bf16 has no native arithmetic it is 16 times slower, so the flag trains in float32 and says so."""
    monkeypatch.setattr("molshape.training.fit.cpu_bf16_supported", lambda: False)
    model_cfg = PRESETS["expr"]["cpu"].replace(dec_hidden=32, dec_layers=1)
    train_grammar(model_cfg, _cfg(epochs=1), expr_data, tmp_path / "fp32")
    with caplog.at_level("WARNING", logger="molshape.training.fit"):
        train_grammar(model_cfg, _cfg(epochs=1, cpu_bf16=True), expr_data, tmp_path / "asked")
    assert "training in float32 instead" in caplog.text
    a = load_checkpoint(tmp_path / "fp32" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "asked" / "last.pt")["model"]
    assert all(torch.equal(v, b[k]) for k, v in a.items())
