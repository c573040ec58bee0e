"""Latent objectives: heads, loss terms, priors, registry."""

from __future__ import annotations

import pytest
import torch

from molshape.core.config import ConfigError
from molshape.latent.objectives import CONFIGS, OBJECTIVES, GMMConfig, ObjectiveConfig, VAEConfig, build_objective




def test_registry_and_terms() -> None:
    h = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
    expected = {"gmm": {"ks", "cv"}, "vae": {"kl"}, "rae": {"l2"}, "ae": set()}
    assert set(OBJECTIVES) == set(expected)
    for name, terms in expected.items():
        obj = CONFIGS[name]().fitted_to_batch(64).build(latent_dim=8, feature_dim=32)
        z, out = obj(h)
        assert z.shape == (64, 8)
        assert set(out) == terms
        assert all(v.dim() == 0 and torch.isfinite(v) for v in out.values())
        assert obj.sample_prior(5, torch.Generator().manual_seed(1)).shape == (5, 8)


def test_gmm_terms_are_about_one_on_prior_samples() -> None:
    obj = build_objective("gmm", latent_dim=8, feature_dim=8, batch_size=200, n_components=10, layout="spread")
    assert obj.prior.n_components == 10 and obj.prior.layout == "spread"
    z, _ = obj.prior.sample(200, generator=torch.Generator().manual_seed(3))
    terms = obj.terms(z)
    assert 0.2 < terms["ks"].item() < 5 and 0.2 < terms["cv"].item() < 5
    # latents collapsed at the origin are far from a spread mixture
    assert obj.terms(torch.zeros(200, 8) + 0.01 * z)["ks"].item() > 20


def test_vae_kl_is_gvae_mean_over_dims_and_noise_is_small() -> None:
    torch.manual_seed(0)
    obj = build_objective("vae", latent_dim=6, feature_dim=10)
    h = torch.randn(50, 10)
    mu, logvar = obj.head(h), obj.logvar(h)
    kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp()).mean(dim=1)).mean()
    obj.train()
    z, terms = obj(h)
    torch.testing.assert_close(terms["kl"], kl)
    noise = (z - mu).abs().max().item()
    assert 0 < noise < 0.01 * 5 * logvar.exp().sqrt().max().item()
    obj.eval()
    z_eval, _ = obj(h)
    torch.testing.assert_close(z_eval, mu)
    torch.testing.assert_close(obj.encode(h), mu)


def test_rae_l2_and_decoder_decay() -> None:
    obj = build_objective("rae", latent_dim=4, feature_dim=4, beta=0.5, decoder_weight_decay=1e-3)
    z = torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0]])
    assert obj.terms(z)["l2"].item() == pytest.approx(0.5 * 0.5 * (5 + 9) / 2)
    assert obj.decoder_weight_decay == 1e-3
    assert build_objective("gmm", 4, batch_size=10).decoder_weight_decay == 0


def test_bad_names_and_settings() -> None:
    with pytest.raises(ValueError, match="unknown objective 'nope'"):
        build_objective("nope", 4)
    with pytest.raises(ConfigError, match="unknown setting 'center_scale'"):
        build_objective("rae", 4, center_scale=5.0)  # a setting of another objective
    with pytest.raises(ConfigError, match="unknown setting 'bogus'"):
        ObjectiveConfig.from_dict({"name": "gmm", "bogus": 1})


def test_configs_round_trip_and_name_the_registry() -> None:
    assert sorted(CONFIGS) == sorted(OBJECTIVES)
    for name, cls in CONFIGS.items():
        cfg = cls()
        assert cfg.to_dict()["name"] == name
        assert ObjectiveConfig.from_dict(cfg.to_dict()) == cfg
        assert type(cfg.build(4, 6)) is OBJECTIVES[name]
    assert GMMConfig().settings() == ("n_components", "std", "layout", "center_scale", "batch_size")
    assert GMMConfig().fitted_to_batch(32).batch_size == 32 and VAEConfig().fitted_to_batch(32) == VAEConfig()


def test_gmm_weights_not_estimated_when_loading() -> None:
    """estimate=False leaves NaN placeholders (loud if never loaded) that load_state_dict fills exactly."""
    trained = GMMConfig(batch_size=50).build(6, 8)
    blank = GMMConfig(batch_size=50).build(6, 8, estimate=False)
    assert torch.isnan(blank.regularizer.lambda_ks) and torch.isnan(blank.regularizer.lambda_cv)
    blank.load_state_dict(trained.state_dict())
    assert blank.regularizer.lambda_ks.item() == trained.regularizer.lambda_ks.item() > 0


def test_vae_kl_weight_none_sums_over_dimensions() -> None:
    assert VAEConfig(kl_weight=None).build(7, 4).kl_weight == 7.0


def test_gmm_center_scale_knob_and_onehot_layout() -> None:
    obj = build_objective("gmm", latent_dim=10, feature_dim=16, batch_size=100, layout="onehot", center_scale=5.0)
    torch.testing.assert_close(obj.prior.centers, 5.0 * torch.eye(10))
    default = build_objective("gmm", latent_dim=10, feature_dim=16, batch_size=100, layout="onehot")
    torch.testing.assert_close(default.prior.centers, 10.0 * torch.eye(10))
    assert build_objective("rae", latent_dim=10).prior.n_components == 1
    # unchanged defaults: spread layout, no scale
    plain = build_objective("gmm", latent_dim=10, feature_dim=16, batch_size=100)
    assert plain.prior.layout == "spread" and plain.prior.center_scale is None
