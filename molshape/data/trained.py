"""The data a checkpoint was trained on: the one loader every command uses (evaluate, decode
``--source expost``, optimize ``--init data``), so they all see exactly the model's rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from torch import Tensor

from molshape.data.datasets import PreparedData, load_dataset
from molshape.grammar.cfg import Grammar


class TrainedOn(Protocol):
    """What a model checkpoint records of its data (:class:`molshape.gvae.checkpoint.ModelCheckpoint`).

    Attributes:
        data: ``{"source", "sha256"}`` of the training file. split: ``train``/``valid``/``test``
        row indices. train_config: the training settings (their ``limit``), or None.
    """

    data: dict[str, Any]
    split: dict[str, Tensor]
    train_config: Any


def checkpoint_data(checkpoint: TrainedOn, grammar: Grammar, data: str | Path | None = None) -> PreparedData:
    """The :class:`molshape.data.datasets.PreparedData` whose rows ``checkpoint.split`` indexes.

    ``molshape train --limit N`` prepares only the first N training records (rows are then
    those of the limited data), so the same limit is applied here.

    Raises:
        ValueError: the data found is not the checkpoint's (sha256), or the split does not fit it.
    """
    limit = getattr(checkpoint.train_config, "limit", None)
    recorded = checkpoint.data
    want = recorded.get("sha256")

    def same_data(label: str, sha256: str) -> None:
        if want and sha256 != want:
            # name the file the model was trained on: a user without it needs to know what to fetch
            trained_on = Path(str(recorded.get("source") or "the training file")).name
            raise ValueError(f"data {label} (sha256 {sha256[:12]}) is not the data the checkpoint was trained on "
                             f"({trained_on}, sha256 {want[:12]}); pass --data with that file or set "
                             f"$MOLSHAPE_DATA_DIR to its folder")

    prepared = load_dataset(grammar.name, data, limit=limit, progress=False, check=same_data)
    biggest = max((int(v.max()) for v in checkpoint.split.values() if len(v)), default=-1)
    if biggest >= len(prepared):
        raise ValueError(f"the checkpoint's split indexes row {biggest} but {prepared.source} has "
                         f"{len(prepared)} rows (limit {limit}); was it trained on other data?")
    return prepared


def training_strings(checkpoint: TrainedOn, prepared: PreparedData) -> list[str]:
    """The strings of the checkpoint's training rows, in split order."""
    return [prepared.strings[int(i)] for i in checkpoint.split["train"]]
