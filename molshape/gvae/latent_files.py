"""Latents to files: ``.npy``, ``.csv`` or ``.parquet`` by the file's suffix, written atomically.

- ``.npy``: the ``N x d`` float32 array alone (rows in input order, skipped inputs left out);
- ``.csv`` / ``.parquet``: one row per encoded input with ``line`` (1-based input line),
  ``name`` (when the input had names), ``input`` and ``z0 .. z{d-1}``. CSV floats are
  written with 9 significant digits, enough to read back the same float32 values.

Parquet needs ``pyarrow`` (``pip install 'molshape[parquet]'``).

Example:
    >>> write_latents("latents.csv", z, inputs=["CCO"], lines=[1], names=None)  # doctest: +SKIP
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
from torch import Tensor

from molshape.core.atomic import atomic_path, write_bytes, write_text

FORMATS = (".npy", ".csv", ".parquet")


def latent_format(path: str | Path) -> str:
    """The format of ``path`` by its suffix.

    Raises:
        ValueError: not one of :data:`FORMATS`, or parquet without pyarrow.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: the latents file must end in {', '.join(FORMATS)}")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ValueError(f"{path}: parquet output needs pyarrow (pip install 'molshape[parquet]'); "
                             "or write .npy / .csv") from None
    return suffix


def write_latents(path: str | Path, z: Tensor, inputs: Sequence[str], lines: Sequence[int],
                  names: Sequence[str | None] | None = None, decodes_back: Sequence[bool] | None = None) -> Path:
    """Write latents ``z [N x d]`` of ``inputs`` (their 1-based ``lines``, optional ``names``) to ``path``;
    ``decodes_back`` (refined encodings: the latent's argmax decode is the input) becomes a column of tables.

    Returns:
        ``path``, replaced only once the new file is complete.
    """
    path = Path(path)
    kind = latent_format(path)
    values = z.detach().float().cpu().numpy()
    if not (len(values) == len(inputs) == len(lines)) or (names is not None and len(names) != len(values)):
        raise ValueError(f"write_latents: {len(values)} latents for {len(inputs)} inputs")
    if kind == ".npy":
        buf = io.BytesIO()
        np.save(buf, values)
        return write_bytes(path, buf.getvalue())
    frame = latent_frame(values, inputs, lines, names, decodes_back)
    if kind == ".csv":
        return write_text(path, frame.to_csv(index=False, float_format="%.9g"))
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return path


def latent_frame(values: np.ndarray, inputs: Sequence[str], lines: Sequence[int],
                 names: Sequence[str | None] | None = None, decodes_back: Sequence[bool] | None = None):
    """A pandas DataFrame ``line, [name,] input, [decodes_back,] z0 .. z{d-1}``."""
    import pandas as pd

    columns: dict[str, object] = {"line": list(lines)}
    if names is not None:
        columns["name"] = list(names)
    columns["input"] = list(inputs)
    if decodes_back is not None:
        columns["decodes_back"] = [bool(b) for b in decodes_back]
    frame = pd.DataFrame(columns)
    latents = pd.DataFrame(values, columns=[f"z{i}" for i in range(values.shape[1])])
    return pd.concat([frame, latents], axis=1)
