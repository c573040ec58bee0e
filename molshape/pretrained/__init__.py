"""Models shipped inside the package, so the main job runs offline on a fresh install.

Each model is a checkpoint ``<name>.pt`` beside a model card ``<name>.json`` (data set
and checksum, preset, epochs, wall time, machine, and its ``molshape evaluate`` numbers).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

#: grammar -> the shipped model used when ``--checkpoint`` is not given. ``smiles_kekule`` (the
#: default SMILES grammar of every command): the Kekulé model, whose semantic decoding makes every
#: complete decode a valid molecule; ``smiles`` (GVAE's grammar): the model kept for the paper protocol.
DEFAULTS = {"smiles_kekule": "zinc-kekule-gmm-cpu", "smiles": "zinc-gmm-cpu", "expr": "expr-gmm-cpu"}


def pretrained_dir() -> Path:
    return Path(str(resources.files("molshape") / "pretrained"))


def available() -> list[str]:
    """Names of the shipped models."""
    return sorted(p.stem for p in pretrained_dir().glob("*.pt"))


def checkpoint_path(name: str) -> Path:
    """Path of a shipped checkpoint by name (see :func:`available`)."""
    path = pretrained_dir() / f"{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no shipped model {name!r}; shipped: {available() or 'none'}")
    return path


def default_checkpoint(grammar: str) -> Path:
    """The shipped model for a grammar (``smiles_kekule``, ``smiles`` or ``expr``)."""
    if grammar not in DEFAULTS:
        raise ValueError(f"no shipped default model for grammar {grammar!r}; pass --checkpoint")
    return checkpoint_path(DEFAULTS[grammar])


def model_card(name: str) -> dict[str, Any]:
    """The JSON model card of a shipped model."""
    path = pretrained_dir() / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"shipped model {name!r} has no model card at {path}")
    return json.loads(path.read_text())
