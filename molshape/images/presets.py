"""Image benchmark presets: the paper's settings per data set and the ``paper`` / ``cpu`` presets."""

from __future__ import annotations

from typing import Any

#: Paper settings of the public GMM-DAE image code, per data set.
PAPER: dict[str, dict[str, Any]] = {
    "mnist": {"latent_dim": 10, "n_components": 10, "lr": 2e-4},
    "fashion-mnist": {"latent_dim": 10, "n_components": 10, "lr": 2e-4},
    "svhn": {"latent_dim": 100, "n_components": 10, "lr": 2e-3},
    "celeba": {"latent_dim": 64, "n_components": 20, "lr": 2e-3},
}
#: ``paper``: width 1, 100 epochs, the paper's lr. ``cpu``: the reduced network that trains
#: on 2 CPU cores in minutes (16-32-64-128 channels) with a larger lr for its short budget.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"width": 1.0, "epochs": 100},
    "cpu": {"width": 0.125, "epochs": 15, "lr": 1e-3},
}
#: image data sets the benchmarks run on
DATASETS = tuple(PAPER)
