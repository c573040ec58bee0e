"""Prior and loss options of `molshape images`: defaults, validation (exit code 2) and the
Fashion-MNIST loader on small IDX files written here."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from molshape.cli import main
from molshape.images.data import load_images
from molshape.images.model import DEFAULT_LAMBDA_REC, ImageAutoencoder, ImageModelConfig
from molshape.latent.objectives import GMMConfig, RAEConfig, VAEConfig


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    """Write ``array`` (uint8) as an IDX file: 0 0 0x08 ndim, big-endian sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    raw = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


@pytest.fixture()
def fashion_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path / "fashion"
    folder.mkdir()
    # Not the official ".gz" names (those are checked against the published checksums):
    # gzip content under the plain name for train (the reader sniffs the magic bytes), a
    # plain file in the "t10k-images.idx3-ubyte" spelling for the test images.
    for prefix, n, gz in (("train", 60, True), ("t10k", 20, False)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        images = f"{prefix}-images-idx3-ubyte" if gz else f"{prefix}-images.idx3-ubyte"
        write_idx(folder / images, x, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", y, gz)
    return folder


def test_fashion_mnist_loader_on_written_idx(fashion_dir: Path) -> None:
    data = load_images("fashion-mnist", fashion_dir)
    assert data.name == "fashion-mnist" and data.official_split
    assert data.images.shape == (80, 1, 32, 32) and data.images.dtype == torch.uint8
    assert data.split["train"].tolist() == list(range(60)) and data.split["test"].tolist() == list(range(60, 80))
    assert data.labels.tolist() == [i % 10 for i in range(60)] + [i % 10 for i in range(20)]
    # padded 28 -> 32 with every original pixel kept, gzip and plain files alike
    raw = gzip.decompress((fashion_dir / "train-images-idx3-ubyte").read_bytes())[16:]
    first = np.frombuffer(raw, dtype=np.uint8)[: 28 * 28].reshape(28, 28)
    assert torch.equal(data.images[0, 0, 2:30, 2:30], torch.from_numpy(first.copy()))
    plain = np.frombuffer((fashion_dir / "t10k-images.idx3-ubyte").read_bytes()[16:], dtype=np.uint8)
    assert torch.equal(data.images[60, 0, 2:30, 2:30], torch.from_numpy(plain[: 28 * 28].reshape(28, 28).copy()))
    assert data.images[:, :, :2].sum() == 0
    limited = load_images("fashion-mnist", fashion_dir, limit=30)
    assert limited.split["train"].numel() == 30 and limited.split["test"].numel() == 3


def test_fashion_mnist_train_cli_uses_the_clustering_prior(fashion_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "images", "train", "--dataset", "fashion-mnist", "--data", str(fashion_dir), "--width", "0.0625",
        "--epochs", "1", "--batch-size", "20", "--threads", "1", "--device", "cpu", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    from molshape.images.model import load_image_model

    model, ckpt = load_image_model(out / "last.pt")
    prior = model.config.objective
    assert prior.layout == "onehot" and prior.center_scale == 5.0 and model.config.lambda_rec == 500.0
    torch.testing.assert_close(model.prior.centers, 5.0 * torch.eye(10))
    assert "valid_inside_share" in ckpt["history"][-1] and "valid_cluster_acc" in ckpt["history"][-1]
    assert torch.get_num_threads() == 1


def test_dataset_defaults_and_overrides() -> None:
    for name in ("mnist", "fashion-mnist"):
        cfg = ImageModelConfig.for_dataset(name)
        assert (cfg.objective.layout, cfg.objective.center_scale, cfg.lambda_rec) == ("onehot", 5.0, 500.0)
    for name in ("svhn", "celeba"):
        cfg = ImageModelConfig.for_dataset(name)
        assert (cfg.objective.layout, cfg.objective.center_scale, cfg.lambda_rec) == ("spread", None, DEFAULT_LAMBDA_REC)
    # another layout drops the onehot scale; explicit values win
    cfg = ImageModelConfig.for_dataset("mnist", layout="spread", lambda_rec=2000.0, latent_noise=0.5)
    assert (cfg.objective.layout, cfg.objective.center_scale, cfg.lambda_rec, cfg.latent_noise) == \
        ("spread", None, 2000.0, 0.5)
    cfg = ImageModelConfig.for_dataset("mnist", center_scale=10.0)
    assert (cfg.objective.layout, cfg.objective.center_scale) == ("onehot", 10.0)
    # the image models' own objective settings, stated (not the grammar models' GVAE values)
    assert ImageModelConfig.for_dataset("mnist", objective="vae").objective == VAEConfig(epsilon_std=1.0, kl_weight=None)
    assert ImageModelConfig.for_dataset("mnist", objective="rae").objective == RAEConfig(beta=1.0)
    assert ImageModelConfig.for_dataset("svhn").objective == GMMConfig(batch_size=100)
    assert ImageModelConfig.from_dict(cfg.to_dict()) == cfg


def test_old_configs_rebuild_the_spread_prior_unchanged() -> None:
    """A flat checkpoint config written before center_scale existed rebuilds exactly as before."""
    old = {k: v for k, v in ImageModelConfig.for_dataset("mnist", width=0.0625).to_dict().items() if k != "objective"}
    old.update(objective="gmm", n_components=10, std=1.0, layout="spread", reg_batch_size=100, epsilon_std=1.0,
               kl_weight=None, beta=1.0, decoder_weight_decay=1e-6, lambda_rec=DEFAULT_LAMBDA_REC)
    torch.manual_seed(0)
    model = ImageAutoencoder(ImageModelConfig.from_dict(old))
    from molshape.latent.regularizer import spread_centers

    torch.testing.assert_close(model.prior.centers, spread_centers(10, 10).float())
    assert model.config.objective == GMMConfig(batch_size=100) and model.config.lambda_rec == DEFAULT_LAMBDA_REC
    vae = ImageModelConfig.from_dict({**old, "objective": "vae"})
    assert vae.objective == VAEConfig(epsilon_std=1.0, kl_weight=None)


def test_latent_noise_reaches_the_decoder_only_while_training() -> None:
    torch.manual_seed(0)
    model = ImageAutoencoder(ImageModelConfig.for_dataset("mnist", width=0.0625, latent_noise=0.0))
    x = torch.randint(0, 256, (8, 1, 32, 32), dtype=torch.uint8)
    model.eval()
    a, b = model(x)["loss"], model(x)["loss"]
    assert torch.equal(a, b)
    noisy = ImageAutoencoder(ImageModelConfig.for_dataset("mnist", width=0.0625, latent_noise=5.0))
    noisy.load_state_dict(model.state_dict())
    noisy.eval()  # eval: no noise, same loss
    torch.testing.assert_close(noisy(x)["loss"], a)
    with pytest.raises(ValueError, match="latent_noise"):
        ImageModelConfig.for_dataset("mnist", latent_noise=-0.1)
    with pytest.raises(ValueError, match="lambda_rec"):
        ImageModelConfig(lambda_rec=0.0)


BAD_OPTIONS = [
    (["--lambda-rec", "-5"], "--lambda-rec", "> 0"),
    (["--lambda-rec", "0"], "--lambda-rec", "> 0"),
    (["--lambda-rec", "nan"], "--lambda-rec", "finite"),
    (["--lambda-rec", "abc"], "--lambda-rec", "not a valid float"),
    (["--latent-noise", "-0.1"], "--latent-noise", ">= 0"),
    (["--latent-noise", "inf"], "--latent-noise", "finite"),
    (["--center-scale", "0"], "--center-scale", "> 0"),
    (["--threads", "0"], "--threads", "0"),
    (["--layout", "grid"], "--layout", "grid"),
    (["--layout", "onehot", "--components", "20"], "--layout", "n_components <= dim"),
    (["--epochs", "0"], "--epochs", "> 0"),
    (["--lr", "-1e-3"], "--lr", "> 0"),
]


@pytest.mark.parametrize("args,option,message", BAD_OPTIONS)
def test_train_refuses_nonsense_options(args: list[str], option: str, message: str, tmp_path: Path) -> None:
    # validation happens before any data is read: the data folder is empty
    result = CliRunner().invoke(main, ["images", "train", "--dataset", "mnist", "--data", str(tmp_path),
                                       "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2, result.output
    assert option in result.output and message in result.output
    assert not (tmp_path / "o").exists()


def test_evaluate_refuses_nonsense_options(tmp_path: Path) -> None:
    ckpt = tmp_path / "x.pt"
    ckpt.write_bytes(b"")
    for args, option in ((["--threads", "0"], "--threads"), (["--n-samples", "1"], "--n-samples"),
                         (["--expost-components", "0"], "--expost-components")):
        result = CliRunner().invoke(main, ["images", "evaluate", "--checkpoint", str(ckpt), *args])
        assert result.exit_code == 2 and option in result.output, result.output


def test_latent_warmup_weights_the_latent_terms_in_training_only() -> None:
    x = torch.randint(0, 256, (20, 1, 32, 32), dtype=torch.uint8)
    torch.manual_seed(0)
    model = ImageAutoencoder(ImageModelConfig.for_dataset("mnist", width=0.0625, latent_noise=0.0, latent_warmup=4))
    model.eval()  # batch norm frozen: the same terms every call
    full = model(x)
    latent = sum(full[k] for k in ("ks", "cv"))
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    for epoch, weight in ((0, 0.0), (1, 0.25), (4, 1.0), (9, 1.0)):
        model.start_epoch(epoch)
        out = model(x)
        torch.testing.assert_close(out["loss"], 500.0 * out["mse"] + weight * latent)
    model.eval()  # validation always sees the full objective
    torch.testing.assert_close(model(x)["loss"], full["loss"])
    plain = ImageAutoencoder(ImageModelConfig.for_dataset("mnist", width=0.0625))
    plain.start_epoch(0)
    assert plain.latent_weight == 1.0  # default 0: the paper's objective from the start
    with pytest.raises(ValueError, match="latent_warmup"):
        ImageModelConfig(latent_warmup=-1)
