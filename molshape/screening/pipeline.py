"""One chunk of a screen: latents -> decode -> canonical strings -> scores -> hash-partition shards.

:func:`run_chunk` is the task every engine runs (in-process or on a Dask worker). It is a
pure function of the run's :class:`ScreenSpec` and the :class:`~molshape.screening.chunks.Chunk`:
the same chunk gives the same rows on any machine. Its rows (valid, first occurrence of each
canonical string within the chunk) go to one Parquet shard per hash partition,
``shards/p<P>/c<chunk>.parquet``, each written atomically; the chunk's marker
``chunks/c<chunk>.json`` (its counts) is written last, so a chunk counts as done only when
all its shards are on disk. A re-run replaces the same files with the same content.

Models are loaded once per process (:func:`worker_model`, keyed by the checkpoint's sha256),
so a worker loads the model for its first chunk and reuses it after.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch

from molshape import pretrained
from molshape.core.atomic import write_bytes, write_json
from molshape.core.hashing import file_hash
from molshape.grammar.representation import is_kekule
from molshape.gvae import generation as gen
from molshape.gvae.checkpoint import load_model
from molshape.screening.chunks import Chunk, partition_of
from molshape.screening.columns import columns_of, score_columns

#: latent sources a screen draws from
SOURCES = ("prior", "component")
#: latents (or rows) timed here to say a run's expected time
PROBE = 64


@dataclass(frozen=True)
class ModelRef:
    """How a worker finds the model: a shipped name (resolved on the worker) or a checkpoint path
    (visible to every worker: a shared file system), checked against ``sha256``."""

    path: str
    sha256: str
    shipped: str | None = None


@dataclass(frozen=True)
class ScreenSpec:
    """Everything that decides a chunk's rows (and where they go); picklable, sent with each task."""

    out_dir: str
    model: ModelRef
    targets: tuple[str, ...]
    partitions: int
    source: str = "prior"
    component: int | None = None
    mode: str = "argmax"
    attempts: int = 1
    constraints: str = "auto"
    batch_size: int = 1000
    threads: int = 1


def model_ref(path: str | Path) -> ModelRef:
    """How workers find ``path``: by name when it is a shipped model, else by path (made absolute)."""
    path = Path(path).resolve()
    shipped = path.stem if path.parent == pretrained.pretrained_dir().resolve() else None
    return ModelRef(str(path), file_hash(path), shipped)


_MODELS: dict[str, Any] = {}


def remember(ref: ModelRef, loaded: Any) -> None:
    """Put an already loaded ``(net, grammar)`` in this process's cache (the in-process engine)."""
    _MODELS[ref.sha256] = loaded


def worker_model(ref: ModelRef) -> Any:
    """``(net, grammar)`` of ``ref``, loaded once per process."""
    if ref.sha256 not in _MODELS:
        path = pretrained.checkpoint_path(ref.shipped) if ref.shipped else Path(ref.path)
        if file_hash(path) != ref.sha256:
            raise ValueError(f"{path} on this worker is not the checkpoint the run was started with (sha256 differs)")
        net, grammar, _ = load_model(path, "cpu")  # the driver checked this checkpoint (same sha256) before the run
        _MODELS[ref.sha256] = (net, grammar)
    return _MODELS[ref.sha256]


def shard_path(out_dir: str | Path, partition: int, chunk: int) -> Path:
    return Path(out_dir) / "shards" / f"p{partition:05d}" / f"c{chunk:07d}.parquet"


def marker_path(out_dir: str | Path, chunk: int) -> Path:
    return Path(out_dir) / "chunks" / f"c{chunk:07d}.json"


def decode_chunk(spec: ScreenSpec | Any, chunk: Chunk) -> gen.Decoded:
    """The chunk's latents, drawn and decoded with one generator seeded ``chunk.seed``.

    ``spec`` is a :class:`ScreenSpec` or any spec with its draw and decode fields (``model,
    source, component, mode, attempts, constraints, batch_size, threads``; ``expost``: the
    fitted :class:`~molshape.latent.expost.ExPostGMM` for ``source="expost"``). ``threads``
    None leaves torch's thread count as it is (an in-process run keeps its ``--threads``).
    """
    if spec.threads:
        torch.set_num_threads(spec.threads)
    net, grammar = worker_model(spec.model)
    generator = torch.Generator().manual_seed(chunk.seed)  # seeds the draws and the sampling noise
    if spec.source == "component":
        z = gen.component_latents(net, spec.component, chunk.size, generator)
    elif spec.source == "expost":
        z = spec.expost.sample(chunk.size, generator)
    else:
        z = gen.prior_latents(net, chunk.size, generator)
    return gen.decode_latents(net, grammar, z, spec.mode, spec.attempts, generator, spec.batch_size,
                              constraints=spec.constraints)


def chunk_rows(spec: ScreenSpec, chunk: Chunk) -> tuple[pd.DataFrame, dict[str, int]]:
    """The chunk's rows (``smiles, chunk, row`` and the score columns; first occurrence of each
    canonical string in the chunk) and its counts (``n, valid, incomplete, invalid, repeats``)."""
    decoded = decode_chunk(spec, chunk)
    _, grammar = worker_model(spec.model)
    key = (lambda s: s) if is_kekule(grammar) else gen.canonical_key(grammar)  # Kekulé decodes are canonical already
    seen: set[str] = set()
    strings, rows = [], []
    for i, s in enumerate(decoded):
        if s is None:
            continue
        form = key(s)
        if form not in seen:
            seen.add(form)
            strings.append(form)
            rows.append(i)
    frame = pd.DataFrame({"smiles": pd.Series(strings, dtype=object),
                          "chunk": np.full(len(rows), chunk.index, dtype=np.int64),
                          "row": np.asarray(rows, dtype=np.int64)})
    for column, values in score_columns(spec.targets, strings).items():
        frame[column] = values
    n_valid = sum(s is not None for s in decoded)
    counts = {"n": chunk.size, "valid": n_valid, "incomplete": decoded.n_incomplete,
              "invalid": chunk.size - n_valid - decoded.n_incomplete, "repeats": n_valid - len(strings)}
    return frame, counts


def empty_rows(targets: tuple[str, ...]) -> pd.DataFrame:
    """A frame with a screen's columns and no rows."""
    frame = pd.DataFrame({"smiles": pd.Series([], dtype=object), "chunk": np.zeros(0, np.int64),
                          "row": np.zeros(0, np.int64)})
    for column in columns_of(targets):
        frame[column] = np.zeros(0, np.float64)
    return frame


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` as Parquet (no pandas index)."""
    import pyarrow as pa  # optional dependency: the screen extra
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf)
    return buf.getvalue()


def run_chunk(spec: ScreenSpec, chunk: Chunk) -> dict[str, Any]:
    """Compute one chunk and write its shards, then its marker; returns the marker's counts."""
    start = time.perf_counter()
    frame, counts = chunk_rows(spec, chunk)
    parts = np.array([partition_of(s, spec.partitions) for s in frame["smiles"]], dtype=np.int64)
    for p in np.unique(parts):
        write_bytes(shard_path(spec.out_dir, int(p), chunk.index),
                    parquet_bytes(frame[parts == p].reset_index(drop=True)))
    counts = {"chunk": chunk.index, **counts, "seconds": round(time.perf_counter() - start, 3)}
    write_json(marker_path(spec.out_dir, chunk.index), counts)
    return counts


def read_marker(out_dir: str | Path, chunk: int) -> dict[str, Any] | None:
    """The counts of a finished chunk, or None when it is not finished."""
    try:
        return json.loads(marker_path(out_dir, chunk).read_text())
    except (FileNotFoundError, ValueError):
        return None


def probe_seconds(task: Callable[[Chunk], Any], k: int = PROBE, seed: int = 12345) -> float:
    """Seconds per item of ``task`` (a chunk's work, e.g. ``lambda c: chunk_rows(spec, c)``) on a
    chunk of ``k`` items here, after a first call of 4 that builds caches (decoder tables, RDKit)."""
    task(Chunk(-1, 0, min(4, k), seed + 1))
    t0 = time.perf_counter()
    task(Chunk(-1, 0, k, seed))
    return (time.perf_counter() - t0) / k
