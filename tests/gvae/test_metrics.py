"""Generation metrics on real molecules and expressions; KS statistics; CSV rows."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from molshape.gvae import metrics
from molshape.grammar.cfg import load_grammar
from molshape.latent.regularizer import GMMPrior




def test_sample_metrics_smiles(zinc_sample: list[str]) -> None:
    g = load_grammar("smiles")
    train = zinc_sample[:100]
    reference = metrics.reference_set(g, train)
    # the same molecule written two ways, a training molecule, an invalid one, a failure
    samples = ["OCC", "CCO", train[0], "C1CC", None, "c1ccccc1"]
    m = metrics.sample_metrics(g, samples, reference)
    assert m["n_samples"] == 6 and m["n_valid"] == 4
    assert m["validity"] == pytest.approx(4 / 6)
    assert m["n_unique"] == 3 and m["uniqueness"] == pytest.approx(3 / 4)
    assert m["n_novel"] == 2 and m["novelty"] == pytest.approx(2 / 3)  # ethanol, benzene


def test_reference_set_is_canonical_and_cached(zinc_sample: list[str]) -> None:
    g = load_grammar("smiles")
    first = metrics.reference_set(g, zinc_sample[:50], key="t50")
    assert len(first) == 50 and all(metrics.canonical_forms(g, [s])[0] == s for s in list(first)[:5])
    again = metrics.reference_set(g, ["CCO"], key="t50")  # the key wins: served from the cache
    assert again == first


def test_sample_metrics_expressions() -> None:
    g = load_grammar("expr")
    m = metrics.sample_metrics(g, ["x+1", "x+1", "exp(exp(exp(x)))", None, "sin(x)"], {"x+1"})
    assert m["n_valid"] == 3  # exp(exp(exp(x))) overflows on the scoring grid: not a finite function
    assert m["n_unique"] == 2 and m["n_novel"] == 1


def test_fcd_small_sets(zinc_sample: list[str]) -> None:
    near = metrics.fcd(zinc_sample[:100], zinc_sample[100:200], reference_key="fcd-test")
    # cached reference statistics: the reference list is not read again
    assert metrics.fcd(zinc_sample[:100], ["CCO", "CCN"], reference_key="fcd-test") == pytest.approx(near)
    far = metrics.fcd(["C" * k for k in range(1, 40)] + ["c1ccccc1" + "C" * k for k in range(40)],
                      zinc_sample[100:200], reference_key="fcd-test")
    assert 0 <= near < far
    with pytest.raises(ValueError, match=">= 2"):
        metrics.fcd(["CCO"], zinc_sample[:10])


def test_ks_statistics() -> None:
    prior = GMMPrior(4, n_components=3, layout="spread")
    z, _ = prior.sample(4000, torch.Generator().manual_seed(0))
    good = metrics.ks_statistics(z, prior)
    bad = metrics.ks_statistics(z * 0.3, prior)
    assert good["ks_mean"] < 0.03 and good["ks_max"] < 0.05  # ~1.36 / sqrt(4000) = 0.02
    assert bad["ks_mean"] > 0.1 and bad["ks_max"] >= bad["ks_mean"]


def test_append_csv_widens_header(tmp_path: Path) -> None:
    path = tmp_path / "evaluate.csv"
    metrics.append_csv(path, {"a": 1, "b": 2.5})
    metrics.append_csv(path, {"a": 3, "c": "x"})
    rows = list(csv.DictReader(path.open()))
    assert [r["a"] for r in rows] == ["1", "3"] and rows[0]["c"] == "" and rows[1]["c"] == "x"
    assert all(r["timestamp"] for r in rows)


def test_flat_numbers() -> None:
    flat = metrics.flat_numbers({"a": {"b": 1, "c": [1, 2]}, "d": "s", "e": None})
    assert flat == {"a.b": 1, "d": "s", "e": None}


def test_plot_latents(tmp_path: Path) -> None:
    prior = GMMPrior(5, n_components=4, layout="spread")
    z, k = prior.sample(300, torch.Generator().manual_seed(0))
    path = metrics.plot_latents(z, prior.assign(z), tmp_path / "l.png", "t", centers=prior.centers)
    assert path.stat().st_size > 10_000
    mean, axes = metrics.pca_axes(z)
    assert axes.shape == (2, 5) and torch.allclose(axes @ axes.T, torch.eye(2, dtype=axes.dtype), atol=1e-6)
