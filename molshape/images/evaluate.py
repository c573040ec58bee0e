"""Evaluate an image autoencoder checkpoint: the poster's four FID columns and clustering accuracy.

FIDs compare generated images with the held-out ``test`` images:

- ``prior``: decoded samples of the model's prior (the mixture for ``gmm``; N(0, I) otherwise);
- ``expost``: decoded samples of a GaussianMixture (full covariances, scikit-learn)
  fitted after training to the training latents (RAE's ex-post density estimate);
- ``reconstruction``: the test images encoded and decoded;
- ``interpolation``: decoded midpoints of random pairs of test latents.

Each is computed with the offline data-set classifier (:mod:`molshape.images.classifier`,
``fid_offline_*``) and, when pytorch-fid is installed with its weights, with Inception
(``fid_inception_*``). ``fid_offline_train_vs_test`` (real training images against the
test images) is the floor a perfect generator would reach with this many samples.
Clustering accuracy: test latents assigned to mixture components (``prior.assign`` for
``gmm``; the ex-post GMM's components for the others), Hungarian-matched to the labels.
In-mode diagnostics (:func:`molshape.latent.diagnostics.latent_diagnostics`) of the test
latents against the model's prior (the mixture for ``gmm``, N(0, I) otherwise):
``latent_diagnostics`` in the summary and ``latent_diagnostics.png`` (nearest-centre
distances against the prior's chi distribution, occupancy against uniform).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from molshape.images.classifier import extract_features, get_classifier
from molshape.images.data import ImageData, load_images
from molshape.images.grids import interpolation_latents, save_grid
from molshape.images.inception import inception_extractor
from molshape.images.metrics import clustering_accuracy, frechet_distance
from molshape.images.model import ImageAutoencoder, load_image_model
from molshape.images.training import encode_all
from molshape.latent.diagnostics import latent_diagnostics, nearest_distances
from molshape.core.runtime import EXPOST_SEED_OFFSET
from molshape.latent.expost import ExPostGMM

COLUMNS = ("prior", "expost", "reconstruction", "interpolation")


@torch.no_grad()
def decode_all(model: ImageAutoencoder, z: Tensor, batch_size: int = 500) -> Tensor:
    """``[N x d]`` latents -> ``[N x C x S x S]`` float images on the CPU."""
    dev = next(model.parameters()).device
    return torch.cat([model.decode(z[s:s + batch_size].to(dev)).float().cpu() for s in range(0, z.shape[0], batch_size)])


def reload_data(ckpt: dict[str, Any], data: Path | None = None) -> ImageData:
    """The checkpoint's images and split: ``--data`` or the recorded source, checksum-checked."""
    rec = ckpt["data"]
    source = data if data is not None else Path(rec["source"]) if Path(rec["source"]).exists() else None
    images = load_images(ckpt["dataset"], source, **rec.get("load_args", {}))
    if images.source_sha256 != rec["sha256"] or images.images.shape[0] != rec["n_images"]:
        raise ValueError(f"dataset {ckpt['dataset']!r} at {images.source} differs from the one the checkpoint "
                         f"was trained on (sha256 {images.source_sha256[:12]} vs {rec['sha256'][:12]}); pass --data")
    images.split = {k: v.long() for k, v in ckpt["split"].items()}
    return images


def generated_sets(model: ImageAutoencoder, z_test: Tensor, gmm: ExPostGMM, n: int, gen: torch.Generator,
                   expost_gen: torch.Generator | None = None) -> dict[str, Tensor]:
    """The four generated image sets of the poster, ``n`` images each."""
    z_prior = model.objective.sample_prior(n, generator=gen).float()
    z_expost = gmm.sample(n, generator=expost_gen)
    pairs = torch.randint(z_test.shape[0], (2, n), generator=gen)
    z_mid = 0.5 * (z_test[pairs[0]] + z_test[pairs[1]])
    return {
        "prior": decode_all(model, z_prior),
        "expost": decode_all(model, z_expost),
        "reconstruction": decode_all(model, z_test[:n]),
        "interpolation": decode_all(model, z_mid),
    }


def save_figures(model: ImageAutoencoder, test: Tensor, z_test: Tensor, gmm, out_dir: Path,
                 gen: torch.Generator, per_row: int = 10) -> dict[str, str]:
    """Samples per component (one row each), interpolations and reconstructions as PNGs."""
    prior = model.prior
    if model.config.objective.name == "gmm":
        z = torch.cat([prior.sample_component(k, per_row, generator=gen) for k in range(prior.n_components)])
        rows, name = prior.n_components, "samples_per_component.png"
    else:  # an N(0, I) prior has no components: show the ex-post GMM's instead
        means, covs = gmm.means.numpy(), gmm.covariances.numpy()
        rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=gen)))
        z = torch.from_numpy(np.concatenate([rng.multivariate_normal(m, c, per_row) for m, c in zip(means, covs)]))
        rows, name = len(means), "samples_per_component_expost.png"
    paths = {"components": save_grid(decode_all(model, z.float()), rows, out_dir / name)}
    pairs = torch.randint(z_test.shape[0], (2, 8), generator=gen)
    path_z = interpolation_latents(z_test[pairs[0]], z_test[pairs[1]], per_row)
    paths["interpolations"] = save_grid(decode_all(model, path_z), 8, out_dir / "interpolations.png")
    k = min(per_row, test.shape[0])
    pairs_img = torch.stack([test[:k].float() / 255.0, decode_all(model, z_test[:k])])  # [2, k, C, S, S]
    paths["reconstructions"] = save_grid(pairs_img.flatten(0, 1), 2, out_dir / "reconstructions.png")
    paths["prior_samples"] = save_grid(decode_all(model, model.objective.sample_prior(8 * per_row, generator=gen)),
                                       8, out_dir / "prior_samples.png")
    return {k: str(v) for k, v in paths.items()}


def plot_latent_diagnostics(z: Tensor, model: ImageAutoencoder, diag: dict[str, Any], path: Path,
                            title: str = "") -> Path:
    """Histogram of nearest-centre distances (std units) against the chi_d density, the 99 %
    radius, and per-component occupancy against uniform; the diagnostics in the titles."""
    from matplotlib.figure import Figure
    from scipy import stats

    prior = model.prior
    dist, _ = nearest_distances(z, prior)
    dist = dist.double().cpu().numpy()
    fig = Figure(figsize=(9, 3.2))
    a, b = fig.subplots(1, 2)
    top = max(float(np.quantile(dist, 0.99)), diag["radius"]) * 1.2
    a.hist(np.clip(dist, 0, top), bins=50, range=(0, top), density=True, alpha=0.6, label="test latents")
    t = np.linspace(0, top, 200)
    a.plot(t, stats.chi.pdf(t, prior.dim), "k-", lw=1, label=f"prior (chi, d={prior.dim})")
    a.axvline(diag["radius"], color="r", ls="--", lw=1, label=f"{diag['level']:.0%} radius")
    a.set_xlabel("distance to nearest centre (std units)")
    a.set_title(f"{diag['inside_share']:.1%} inside; mean {diag['mean_nearest_distance']:.2f} "
                f"(prior {diag['expected_nearest_distance']:.2f})", fontsize=9)
    a.legend(fontsize=7)
    occ = np.asarray(diag["occupancy"])
    b.bar(np.arange(len(occ)), occ, color="tab:blue", alpha=0.7)
    b.axhline(1.0 / len(occ), color="k", ls="--", lw=1, label="uniform")
    b.set_xlabel("component (nearest centre)")
    b.set_ylabel("share of test latents")
    b.set_title(f"occupancy TV {diag['occupancy_tv']:.3f}, {diag['occupancy_min_ratio']:.2f}-"
                f"{diag['occupancy_max_ratio']:.2f} x uniform", fontsize=9)
    b.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path


# Over 60 lines: one flat summary assembled from the FID columns, clustering and diagnostics.
def evaluate_checkpoint(checkpoint: Path, out_dir: Path, data: Path | None = None, n_samples: int = 10000,
                        expost_components: int | None = None, device: torch.device | str = "cpu",
                        seed: int = 0, inception: bool = True) -> dict[str, Any]:
    """All image metrics of one checkpoint; writes PNG grids into ``out_dir``.

    Args:
        checkpoint: ``last.pt`` / ``best.pt`` of ``molshape images train``.
        out_dir: where the PNGs go.
        data: local data folder when the recorded source moved.
        n_samples: images per FID set (capped at the number of test images).
        expost_components: ex-post GMM size (default: the prior's K, or 10).
        device: where the networks run.
        seed: sampling seed.
        inception: also try the Inception FID.

    Returns:
        a flat summary (``fid_offline_<column>``, ``fid_inception_<column>`` or a reason,
        ``cluster_acc``, ...).
    """
    device = torch.device(device)
    model, ckpt = load_image_model(checkpoint, device)
    images = reload_data(ckpt, data)
    gen = torch.Generator().manual_seed(seed)
    test = images.images[images.split["test"]]
    n = min(n_samples, test.shape[0])
    z_train = encode_all(model, images.images[images.split["train"]])
    z_test = encode_all(model, test)
    k_expost = expost_components or (model.prior.n_components if model.config.objective == "gmm" else 10)
    gmm = ExPostGMM.fit(z_train, k_expost, seed)
    sets = generated_sets(model, z_test, gmm, n, gen, torch.Generator().manual_seed(seed + EXPOST_SEED_OFFSET))
    real_train = images.images[images.split["train"][torch.randperm(images.split["train"].numel(), generator=gen)[:n]]]
    summary: dict[str, Any] = {
        "checkpoint": str(checkpoint), "dataset": images.name, "objective": model.config.objective.name,
        "width": model.config.width, "latent_dim": model.config.latent_dim, "epoch": ckpt.get("epoch"),
        "n_train": int(images.split["train"].numel()), "n_test": int(test.shape[0]), "n_fid": n,
        "expost_components": k_expost, "test_mse": float(((sets["reconstruction"] - test[:n].float() / 255) ** 2).mean()),
    }
    got = get_classifier(images, device, seed=seed)
    if got is None:
        summary["fid_offline"] = "unavailable: the dataset has no labels to train the feature classifier"
    else:
        clf, info = got
        summary["classifier_test_accuracy"] = info["test_accuracy"]
        ref = extract_features(clf, test[:n], device)
        for col in COLUMNS:
            summary[f"fid_offline_{col}"] = frechet_distance(extract_features(clf, sets[col], device), ref)
        summary["fid_offline_train_vs_test"] = frechet_distance(extract_features(clf, real_train, device), ref)
    summary["fid_inception"] = "skipped"
    if inception:
        feats, status = inception_extractor(device)
        summary["fid_inception"] = status
        if feats is not None:
            ref = feats(test[:n])
            for col in COLUMNS:
                summary[f"fid_inception_{col}"] = frechet_distance(feats(sets[col]), ref)
    if images.labels is not None:
        y_test, y_train = images.labels[images.split["test"]], images.labels[images.split["train"]]
        if model.config.objective.name == "gmm":
            summary["cluster_acc"] = clustering_accuracy(y_test, model.prior.assign(z_test))[0]
            summary["cluster_acc_train"] = clustering_accuracy(y_train, model.prior.assign(z_train))[0]
            summary["cluster_method"] = "prior components (prior.assign)"
        else:
            summary["cluster_acc"] = clustering_accuracy(y_test, gmm.predict(z_test))[0]
            summary["cluster_acc_train"] = clustering_accuracy(y_train, gmm.predict(z_train))[0]
            summary["cluster_method"] = f"ex-post GMM ({k_expost} components)"
        summary["cluster_acc_expost"] = clustering_accuracy(y_test, gmm.predict(z_test))[0]
    diag = latent_diagnostics(z_test, model.prior)
    summary["latent_diagnostics"] = diag
    summary["figures"] = save_figures(model, test, z_test, gmm, Path(out_dir), gen)
    scale = model.prior.center_scale
    title = f"{model.config.objective} on {images.name}, prior {model.prior.layout}" + (
        f" x{scale:g}" if scale is not None else "") + (
        f", clustering {summary['cluster_acc']:.1%}" if "cluster_acc" in summary else "")
    summary["figures"]["latent_diagnostics"] = str(
        plot_latent_diagnostics(z_test, model, diag, Path(out_dir) / "latent_diagnostics.png", title))
    return summary
