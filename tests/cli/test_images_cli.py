"""End to end: `molshape images train` + `images evaluate` on 200 real MNIST images, 1 epoch."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from molshape.cli import main
from molshape.images.inception import UNAVAILABLE
from molshape.images.model import ImageAutoencoder, ImageModelConfig, load_image_model


@pytest.fixture(scope="module")
def trained(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("images") / "run"
    result = CliRunner().invoke(main, [
        "images", "train", "--dataset", "mnist", "--data", str(mnist_dir), "--model", "gmm", "--width", "0.0625",
        "--epochs", "1", "--limit", "200", "--batch-size", "50", "--out", str(out), "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["epochs"] == 1 and summary["n_train"] == 180 and summary["objective"] == "gmm"
    return out


@pytest.mark.full_data
def test_train_writes_checkpoint_and_config(trained: Path) -> None:
    for name in ("last.pt", "best.pt", "metrics.csv", "curves.png", "config.json"):
        assert (trained / name).is_file(), name
    model, ckpt = load_image_model(trained / "last.pt")
    assert ckpt["kind"] == "image" and ckpt["dataset"] == "mnist" and ckpt["epoch"] == 1
    assert ckpt["split"]["train"].numel() == 180 and ckpt["split"]["test"].numel() == 20
    assert model.config.width == 0.0625 and model.config.objective.batch_size == 50
    x = torch.randint(0, 256, (4, 1, 32, 32), dtype=torch.uint8)
    assert model.reconstruct(x).shape == (4, 1, 32, 32)
    config = json.loads((trained / "config.json").read_text())
    assert config["data"]["n_images"] == 200 and config["model_config"]["objective"]["name"] == "gmm"
    # MNIST defaults: the clustering prior (5 e_k, std 1) and lambda_REC 500
    assert (model.config.objective.layout, model.config.objective.center_scale, model.config.lambda_rec) == \
        ("onehot", 5.0, 500.0)
    assert {"valid_inside_share", "valid_occupancy_tv", "valid_mean_nearest_distance"} <= set(ckpt["history"][-1])


@pytest.mark.full_data
def test_evaluate_reports_fid_columns_clustering_and_figures(trained: Path) -> None:
    result = CliRunner().invoke(main, ["images", "evaluate", "--checkpoint", str(trained / "last.pt"),
                                       "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    s = json.loads(result.stdout)
    for col in ("prior", "expost", "reconstruction", "interpolation", "train_vs_test"):
        assert math.isfinite(s[f"fid_offline_{col}"]) and s[f"fid_offline_{col}"] >= 0
    # one epoch on 180 images: generated images are far from real ones, real ones are not
    assert s["fid_offline_prior"] > s["fid_offline_train_vs_test"]
    # Hungarian matching guarantees 1/10 on its own; the mixture prior must do better
    assert s["cluster_acc"] > 0.1 and s["n_fid"] == 20
    # in-mode diagnostics of the 20 test latents against the (default onehot) prior
    d = s["latent_diagnostics"]
    assert 0.0 <= d["inside_share"] <= 1.0 and len(d["occupancy"]) == 10 and d["n"] == 20
    assert abs(sum(d["occupancy"]) - 1.0) < 1e-9 and d["radius"] > 4.8 and d["mean_nearest_distance"] > 0
    assert Path(s["figures"]["latent_diagnostics"]).name == "latent_diagnostics.png"
    assert Path(s["figures"]["latent_diagnostics"]).is_file()
    if importlib.util.find_spec("pytorch_fid") is None:
        assert s["fid_inception"] == UNAVAILABLE
    figures = {k: Path(v) for k, v in s["figures"].items()}
    assert figures["components"].name == "samples_per_component.png"
    from PIL import Image

    with Image.open(figures["components"]) as im:  # 10 rows (components) x 10 columns, upscaled 2x
        assert im.size == (2 * (10 * 34 + 2), 2 * (10 * 34 + 2))
    assert (trained / "eval" / "evaluation.json").is_file()


def test_evaluate_rejects_other_checkpoints(tmp_path: Path) -> None:
    from molshape.core.checkpoint import save_checkpoint

    save_checkpoint({"kind": "grammar", "model": {}}, tmp_path / "g.pt")
    result = CliRunner().invoke(main, ["images", "evaluate", "--checkpoint", str(tmp_path / "g.pt")])
    assert result.exit_code != 0 and "not an image autoencoder" in result.output


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["images", "train", "--dataset", "svhn", "--data", str(tmp_path),
                                       "--epochs", "1", "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "svhn" in result.output and "--data" in result.output


@pytest.mark.parametrize("objective", ["vae", "rae", "ae"])
def test_baseline_objectives_share_the_network(objective: str) -> None:
    cfg = ImageModelConfig.for_dataset("mnist", objective=objective, width=0.0625)
    model = ImageAutoencoder(cfg)
    out = model(torch.randint(0, 256, (8, 1, 32, 32), dtype=torch.uint8))
    assert torch.isfinite(out["loss"]) and out["mse"] > 0
    # each objective adds exactly its own latent term to the reconstruction term
    assert set(out) - {"loss", "mse"} == {"vae": {"kl"}, "rae": {"l2"}, "ae": set()}[objective]
    gmm = ImageAutoencoder(ImageModelConfig.for_dataset("mnist", width=0.0625))
    assert sum(p.numel() for p in gmm.decoder.parameters()) == sum(p.numel() for p in model.decoder.parameters())


@pytest.mark.full_data
def test_resume_continues_the_same_run(trained: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    result = CliRunner().invoke(main, [
        "images", "train", "--dataset", "mnist", "--data", str(Path(load_image_model(run / "last.pt")[1]["data"]["source"])),
        "--width", "0.0625", "--epochs", "2", "--limit", "200", "--batch-size", "50", "--out", str(run),
        "--device", "cpu", "--resume", "--json"])
    assert result.exit_code == 0, result.output
    _, ckpt = load_image_model(run / "last.pt")
    assert ckpt["epoch"] == 2 and len(ckpt["history"]) == 2
    assert ckpt["history"][0] == load_image_model(trained / "last.pt")[1]["history"][0]
