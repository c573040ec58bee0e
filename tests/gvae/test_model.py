"""Grammar autoencoder: masked loss, bucketing invariance, decoder API, presets, configs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from molshape.data.datasets import load_dataset
from molshape.grammar.cfg import load_grammar
from molshape.core.config import ConfigError
from molshape.gvae.model import GRAMMAR_OBJECTIVES, PRESETS, GrammarAutoencoder, ModelConfig, build_model, rec_heuristic
from molshape.latent.objectives import GMMConfig, RAEConfig, VAEConfig




@pytest.fixture(scope="module")
def expr_data(expr_path):
    return load_dataset("expr", data=expr_path, limit=200, progress=False)


@pytest.fixture(scope="module")
def zinc_data(zinc_path):
    return load_dataset("smiles", data=zinc_path, limit=40, progress=False)


def _small_smiles(objective: str = "gmm", **kw) -> GrammarAutoencoder:
    cfg = PRESETS["smiles"]["paper"].replace(dec_hidden=32, dec_layers=2, enc_dense=32, latent_dim=8,
                                             objective=GRAMMAR_OBJECTIVES[objective].fitted_to_batch(16),
                                             lambda_rec=1.0, **kw)
    torch.manual_seed(0)
    return build_model(cfg)


@pytest.mark.parametrize("objective", ["gmm", "vae", "rae", "ae"])
def test_bucketing_does_not_change_the_loss(zinc_data, objective: str) -> None:
    """Past a sequence's end only the pad rule is allowed, so those steps add exactly 0."""
    model = _small_smiles(objective=objective).eval()
    idx = zinc_data.split["train"][:16]
    rules, lengths = zinc_data.rules[idx], zinc_data.lengths[idx]
    assert int(lengths.max()) < rules.shape[1]
    with torch.no_grad():
        short = model(rules, lengths)
        full = model(rules, torch.full_like(lengths, rules.shape[1]))
    assert short["rec"].item() == pytest.approx(full["rec"].item(), rel=1e-6)
    assert short["loss"].item() == pytest.approx(full["loss"].item(), rel=1e-6)


def test_masked_cross_entropy_matches_manual(expr_data) -> None:
    grammar = load_grammar("expr")
    cfg = PRESETS["expr"]["paper"].replace(lambda_rec=2.0, objective="ae")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    rules, lengths = expr_data.rules[:8], expr_data.lengths[:8]
    with torch.no_grad():
        out = model(rules, lengths)
        logits = model.decode_logits(model.encode(rules), int(lengths.max()))
    manual = 0.0
    for b in range(8):
        for t in range(int(lengths.max())):
            allowed = grammar.masks[grammar.lhs[int(rules[b, t])]]
            logp = F.log_softmax(logits[b, t][allowed], dim=0)
            manual -= logp[allowed.nonzero().flatten().tolist().index(int(rules[b, t]))].item()
    assert out["rec"].item() == pytest.approx(manual / 8, rel=1e-5)
    assert out["loss"].item() == pytest.approx(2.0 * manual / 8, rel=1e-5)


@pytest.mark.parametrize("feed,encoder,dec_init", [(False, "conv", False), (True, "conv", False),
                                                  (True, "gru", True), (False, "gru", True)])
def test_decoder_step_matches_teacher_logits(expr_data, feed: bool, encoder: str, dec_init: bool) -> None:
    # rule dropout is on, but it only acts in training: eval-mode teacher logits equal the steps
    cfg = PRESETS["expr"]["paper"].replace(objective=GMMConfig(batch_size=8), decoder_feed_rules=feed, encoder=encoder,
                                           dec_init=dec_init, rule_dropout=0.5)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    rules = expr_data.rules[:5]
    with torch.no_grad():
        z = model.encode(rules)
        teacher = model.teacher_logits(z, rules)  # (B, T, R)
        state, prev, steps = model.decoder_init(z), torch.zeros(5, dtype=torch.long), []
        for t in range(rules.shape[1]):
            logits, state = model.decoder_step(state, prev)
            steps.append(logits)
            prev = rules[:, t]
        torch.testing.assert_close(torch.stack(steps, 1), teacher, rtol=1e-5, atol=1e-5)
        if feed:
            with pytest.raises(ValueError, match="decoder_step"):
                model.decode_logits(z, 15)
        else:
            torch.testing.assert_close(model.decode_logits(z, 15), teacher, rtol=1e-5, atol=1e-5)


def test_gru_encoder_reads_each_sequence_to_its_own_end(zinc_data) -> None:
    """Packed by length: a molecule's latent does not depend on its batch-mates' lengths or padding."""
    model = _small_smiles(encoder="gru").eval()
    idx = zinc_data.split["train"][:6]
    rules, lengths = zinc_data.rules[idx], zinc_data.lengths[idx]
    with torch.no_grad():
        together = model.encode(rules)
        alone = torch.cat([model.encode(rules[i:i + 1, : int(lengths[i]) + 3]) for i in range(6)])
        changed = rules.clone()
        changed[0, : int(lengths[0])] = rules[1, : int(lengths[0])]  # a different sequence, same length
        moved = model.encode(changed)
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(moved[0], together[0]) and torch.allclose(moved[1:], together[1:], atol=1e-6)



def test_gru_encoder_equals_a_packed_bidirectional_gru(zinc_data) -> None:
    """The two padded passes give the packed sequence's numbers, and its gradients."""
    model = _small_smiles(encoder="gru").train()
    enc = model.encoder
    idx = zinc_data.split["train"][:10]
    rules = zinc_data.rules[idx].long()
    lengths = (rules != enc.pad).sum(dim=1)
    assert len(set(lengths.tolist())) > 5

    def packed() -> torch.Tensor:
        x = enc.embed(rules[:, : int(lengths.max())])
        seq = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, h = enc.gru(seq)
        return enc.dense(torch.cat([h[0], h[1]], dim=-1))

    want, got = packed(), enc(rules)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    params = [enc.gru.weight_hh_l0, enc.gru.weight_hh_l0_reverse, enc.embed.weight]
    for a, b in zip(torch.autograd.grad(got.square().sum(), params), torch.autograd.grad(want.square().sum(), params)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)

def test_rule_dropout_hides_previous_rules_in_training_only(expr_data) -> None:
    cfg = PRESETS["expr"]["paper"].replace(objective=GMMConfig(batch_size=8), decoder_feed_rules=True, rule_dropout=0.5)
    torch.manual_seed(0)
    model = build_model(cfg)
    rules = expr_data.rules[:50]
    none = cfg.n_rules
    eval_prev = model.eval()._shifted(rules)
    train_prev = model.train()._shifted(rules)
    assert (eval_prev[:, 1:] != none).all()
    hidden = (train_prev[:, 1:] == none).float().mean().item()
    assert 0.4 < hidden < 0.6
    kept = train_prev[:, 1:] != none
    assert torch.equal(train_prev[:, 1:][kept], eval_prev[:, 1:][kept])


def test_paper_presets_are_gvae_sizes() -> None:
    s = PRESETS["smiles"]["paper"]
    assert (s.conv_filters, s.conv_kernels, s.enc_dense, s.latent_dim) == ((9, 9, 10), (9, 9, 11), 435, 56)
    assert (s.dec_hidden, s.dec_layers, s.n_rules, s.max_length, s.decoder_feed_rules) == (501, 3, 76, 277, False)
    model = GrammarAutoencoder(s)
    assert model.encoder.dense[1].in_features == 10 * (277 - 8 - 8 - 10)
    assert model.gru.hidden_size == 501 and model.gru.num_layers == 3 and model.out.out_features == 76
    e = PRESETS["expr"]["paper"]
    assert (e.latent_dim, e.dec_hidden, e.dec_layers, e.enc_dense, e.conv_filters, e.conv_kernels, e.max_length) == \
        (25, 100, 3, 100, (2, 3, 4), (2, 3, 4), 15)


def test_config_round_trip_and_overrides() -> None:
    cfg = PRESETS["smiles"]["cpu"].replace(latent_dim=12, encoder=None)
    assert cfg.latent_dim == 12 and cfg.encoder == "conv" and cfg.objective == GMMConfig(batch_size=500)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["objective"] == {"name": "gmm", "n_components": 10, "std": 1.0, "layout": "spread",
                                          "center_scale": None, "batch_size": 500}
    with pytest.raises(ConfigError, match="unknown setting 'bogus'"):
        ModelConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ConfigError, match="unknown setting 'bogus'"):
        ModelConfig.from_dict({**cfg.to_dict(), "objective": {"name": "gmm", "bogus": 1}})
    # another objective by name takes the grammar models' settings; the same name keeps the preset's
    assert cfg.replace(objective="vae").objective == VAEConfig(epsilon_std=0.01, kl_weight=1.0)
    assert cfg.replace(objective="rae").objective == RAEConfig(beta=1e-2)
    assert PRESETS["expr"]["cpu"].replace(objective="gmm").objective.batch_size == 600


def test_presets_keep_the_grammar_objective_settings() -> None:
    """The presets state the settings the flat config had as defaults (GVAE's, not the images')."""
    for grammar, presets in PRESETS.items():
        for cfg in presets.values():
            assert cfg.objective == GMMConfig(batch_size=600 if grammar == "expr" else 500)
    assert GRAMMAR_OBJECTIVES["vae"] == VAEConfig(epsilon_std=0.01, kl_weight=1.0)
    assert GRAMMAR_OBJECTIVES["rae"] == RAEConfig(beta=1e-2, decoder_weight_decay=1e-6)


def test_old_flat_config_reads_as_the_same_model() -> None:
    """A config of the flat layout (every objective's settings beside the model's) reads back to
    the nested config with that objective's settings; the other objectives' are dropped."""
    flat = {**{k: v for k, v in PRESETS["expr"]["cpu"].to_dict().items() if k != "objective"},
            "objective": "gmm", "n_components": 7, "std": 0.5, "layout": "basis", "reg_batch_size": 64,
            "epsilon_std": 0.01, "kl_weight": 1.0, "beta": 0.01, "decoder_weight_decay": 1e-06}
    cfg = ModelConfig.from_dict(flat)
    assert cfg.objective == GMMConfig(n_components=7, std=0.5, layout="basis", batch_size=64)
    assert cfg.replace(objective=GMMConfig()) == PRESETS["expr"]["cpu"].replace(objective=GMMConfig())
    vae = ModelConfig.from_dict({**flat, "objective": "vae", "epsilon_std": 0.5})
    assert vae.objective == VAEConfig(epsilon_std=0.5, kl_weight=1.0)
    # a flat config without a setting gets the grammar models' value, not the dataclass default
    rae = {k: v for k, v in flat.items() if k != "beta"}
    assert ModelConfig.from_dict({**rae, "objective": "rae"}).objective == RAEConfig(beta=1e-2)
    with pytest.raises(ConfigError, match="unknown setting 'bogus'"):
        ModelConfig.from_dict({**flat, "bogus": 1})


def test_rec_heuristic_is_scale_over_uniform_decoder_loss(expr_data) -> None:
    grammar = load_grammar("expr")
    rules = expr_data.rules[:50]
    n_allowed = grammar.masks.sum(1)
    h0 = sum(float(torch.log(n_allowed[grammar.lhs[int(r)]].double())) for row in rules for r in row) / 50
    assert rec_heuristic(grammar, rules, scale=1.0) == pytest.approx(1 / h0)
    assert rec_heuristic(grammar, rules) == pytest.approx(100 / h0)
    # an untrained decoder with zero output weights is exactly uniform over allowed rules
    model = build_model(PRESETS["expr"]["paper"].replace(objective="ae", lambda_rec=1.0)).eval()
    torch.nn.init.zeros_(model.out.weight)
    torch.nn.init.zeros_(model.out.bias)
    with torch.no_grad():
        rec = model(rules, expr_data.lengths[:50])["rec"].item()
    assert rec == pytest.approx(h0, rel=1e-5)


def test_rae_decoder_weight_decay_group() -> None:
    model = build_model(PRESETS["expr"]["paper"].replace(objective=RAEConfig(decoder_weight_decay=1e-3)))
    groups = model.parameter_groups(0.0)
    assert [g["weight_decay"] for g in groups] == [0.0, 1e-3]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.gru.parameters()} | \
        {id(p) for p in model.out.parameters()} | {id(p) for p in model.dec_input.parameters()}
