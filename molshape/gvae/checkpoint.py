"""A grammar model's checkpoint, typed: read once, checked once, rebuilt with its saved weights.

:class:`ModelCheckpoint` is what a trained grammar autoencoder's file (``best.pt``, ``last.pt``,
a shipped ``molshape/pretrained/*.pt``) holds: the model's config and weights, the grammar it
was trained on, its data set record and split, and its training history. A run's ``last.pt``
is the same kind of file with the optimizer's state besides (``training_state``), which
:func:`molshape.training.fit.fit` reads itself on ``--resume``.

Example:
    >>> from molshape.pretrained import checkpoint_path
    >>> ckpt = ModelCheckpoint.load(checkpoint_path("expr-gmm-cpu"))
    >>> ckpt.config.objective.name, ckpt.grammar.name
    ('gmm', 'expr')
    >>> model = ckpt.to_model()  # eval mode, the saved weights; nothing re-estimated
    >>> model.config.latent_dim
    25
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from molshape.core.checkpoint import CheckpointError, load_checkpoint
from molshape.core.errors import MolshapeError
from molshape.grammar.cfg import Grammar, load_grammar
from molshape.gvae.model import GrammarAutoencoder, ModelConfig
from molshape.training.fit import TrainConfig

#: keys every grammar-model checkpoint has
MODEL_KEYS = ("model", "model_config", "grammar", "grammar_hash")
#: what a training run's ``last.pt`` holds besides the model (read by ``fit`` on resume)
TRAINING_KEYS = ("optimizer", "scheduler", "scaler", "rng")


class GrammarMismatch(MolshapeError):
    """A checkpoint was trained on another grammar than the one asked for."""


@dataclass
class ModelCheckpoint:
    """A grammar model checkpoint (see the module docstring).

    Attributes:
        path: the file. config: the model's settings. grammar: the grammar it was trained on
        (its file unchanged since). weights: the model's ``state_dict``.
        data: ``{"source", "sha256"}`` of the training data (empty if not recorded).
        split: row indices of the ``train`` / ``valid`` / ``test`` splits of that data.
        train_config: the optimisation settings (None if not recorded).
        history: one dict of metrics per epoch. epoch, step, best_valid_loss: where training stood.
        training_state: optimizer, scheduler, scaler and RNG state (a run's ``last.pt`` only).
    """

    path: Path
    config: ModelConfig
    grammar: Grammar
    weights: dict[str, Tensor]
    data: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Tensor] = field(default_factory=dict)
    train_config: TrainConfig | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch: int | None = None
    step: int | None = None
    best_valid_loss: float | None = None
    training_state: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike, grammar: str | None = None) -> ModelCheckpoint:
        """Read a checkpoint file (once, ``weights_only=True``) and check it.

        Args:
            grammar: when given, the checkpoint must have been trained on this grammar.

        Raises:
            FileNotFoundError: no such file.
            CheckpointError: not a usable grammar-model checkpoint (with the reason).
            GrammarMismatch: trained on another grammar than ``grammar``.
        """
        path = Path(path)
        raw = load_checkpoint(path)  # the format version is checked there
        kind = raw.get("kind", "grammar")
        if kind != "grammar":
            raise CheckpointError(path, f"holds a {kind!r} model, not a grammar autoencoder")
        missing = [k for k in MODEL_KEYS if k not in raw]
        if missing:
            raise CheckpointError(path, f"is not a molshape model checkpoint (missing {', '.join(missing)})")
        weights = raw["model"]
        if not isinstance(weights, dict) or not all(isinstance(v, Tensor) for v in weights.values()):
            raise CheckpointError(path, "its 'model' entry is not a dict of tensors")
        if not isinstance(raw["model_config"], dict) or not isinstance(raw["grammar"], str):
            raise CheckpointError(path, "its 'model_config' or 'grammar' entry has the wrong type")
        if grammar is not None and raw["grammar"] != grammar:
            raise GrammarMismatch(f"{path} was trained on grammar {raw['grammar']!r}, not {grammar!r}")
        try:
            g = load_grammar(raw["grammar"])
        except (FileNotFoundError, ValueError):
            raise CheckpointError(path, f"names grammar {raw['grammar']!r}, which this molshape cannot load") from None
        if raw["grammar_hash"] != g.hash:
            raise CheckpointError(path, f"was trained with another version of grammar {g.name!r} "
                                        f"(hash {str(raw['grammar_hash'])[:12]} != {g.hash[:12]})")
        try:
            config = ModelConfig.from_dict(raw["model_config"])
            train_config = TrainConfig.from_dict(raw["train_config"]) if raw.get("train_config") else None
        except (TypeError, ValueError) as e:  # ConfigError is a ValueError
            raise CheckpointError(path, f"its settings are not readable: {e}") from None
        return cls(path=path, config=config, grammar=g, weights=weights, data=dict(raw.get("data") or {}),
                   split=dict(raw.get("split") or {}), train_config=train_config,
                   history=list(raw.get("history") or []), epoch=raw.get("epoch"), step=raw.get("step"),
                   best_valid_loss=raw.get("best_valid_loss"),
                   training_state={k: raw[k] for k in TRAINING_KEYS if k in raw})

    @property
    def is_training_run(self) -> bool:
        """Whether this is a run's ``last.pt`` that training can resume (optimizer state, split, data)."""
        return "optimizer" in self.training_state and bool(self.split) and bool(self.data) and self.epoch is not None

    def to_model(self, device: str | torch.device = "cpu") -> GrammarAutoencoder:
        """The model with the saved weights, in eval mode on ``device``.

        Nothing the weights hold is recomputed: the ``gmm`` KS/CV weights are loaded, not estimated.

        Raises:
            CheckpointError: the weights do not fit the model the config describes.
        """
        try:
            model = GrammarAutoencoder(self.config, self.grammar, estimate=False)
            model.load_state_dict(self.weights)
        except (RuntimeError, KeyError, TypeError, ValueError) as e:  # weights of another shape, a broken config
            raise CheckpointError(self.path, f"its weights do not fit the model it describes "
                                             f"({type(e).__name__})") from None
        return model.to(device).eval()


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu",
               grammar: str | None = None) -> tuple[GrammarAutoencoder, Grammar, ModelCheckpoint]:
    """Rebuild a trained model from its checkpoint file alone.

    Returns:
        ``(model in eval mode, grammar, checkpoint)``.

    Raises:
        CheckpointError: not a usable model checkpoint. GrammarMismatch: trained on another ``grammar``.
    """
    ckpt = ModelCheckpoint.load(path, grammar)
    return ckpt.to_model(device), ckpt.grammar, ckpt
