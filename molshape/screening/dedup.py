"""Second stage of a screen: deduplicate one hash partition at a time, filter, keep its best rows.

Every copy of a canonical string lands in the same partition (:func:`~molshape.screening.chunks.partition_of`),
so deduplicating each partition on its own deduplicates the whole library while no process
holds more than one partition. Shards are read in chunk order and rows are in draw order
within a chunk, so the copy kept is the first drawn: the result does not depend on which
worker wrote what, or when.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from molshape.core.atomic import write_bytes
from molshape.screening import filters
from molshape.screening.pipeline import empty_rows, parquet_bytes, shard_path


def library_path(out_dir: str | Path, partition: int) -> Path:
    return Path(out_dir) / "library" / f"part-{partition:05d}.parquet"


def read_partition(out_dir: str | Path, partition: int, n_chunks: int, targets: tuple[str, ...]) -> pd.DataFrame:
    """Rows of ``partition`` from chunks ``0 .. n_chunks - 1``, in chunk order (duplicates kept)."""
    import pyarrow.parquet as pq  # optional dependency: the screen extra

    folder = shard_path(out_dir, partition, 0).parent
    names = sorted(p.name for p in folder.glob("c*.parquet")) if folder.is_dir() else []
    frames = [pq.read_table(folder / name).to_pandas() for name in names if int(name[1:8]) < n_chunks]
    return pd.concat(frames, ignore_index=True) if frames else empty_rows(targets)


def top_rows(frame: pd.DataFrame, column: str, k: int, higher_is_better: bool) -> pd.DataFrame:
    """The ``k`` best rows by ``column`` (``nan`` last; ties: the first drawn)."""
    frame = frame[~np.isnan(frame[column].to_numpy(dtype=np.float64))]
    ordered = frame.sort_values([column, "chunk", "row"], ascending=[not higher_is_better, True, True],
                                kind="stable")
    return ordered.head(k)


def merge_partition(out_dir: str | Path, partition: int, n_chunks: int, targets: tuple[str, ...],
                    keeps: Sequence[filters.Keep], top: int, by: str | None,
                    higher_is_better: bool = True) -> dict[str, Any]:
    """Deduplicate and filter one partition; write ``library/part-<P>.parquet`` atomically.

    Returns:
        ``unique`` (distinct strings in the partition), ``kept`` (those passing the filters) and
        ``top`` (its ``top`` best kept rows by column ``by``, as records; empty without ``by``).
    """
    frame = read_partition(out_dir, partition, n_chunks, targets)
    unique = frame.drop_duplicates("smiles", keep="first")
    kept = filters.apply(unique, keeps).reset_index(drop=True)
    write_bytes(library_path(out_dir, partition), parquet_bytes(kept))
    best = top_rows(kept, by, top, higher_is_better).to_dict("records") if by and top else []
    return {"partition": partition, "unique": len(unique), "kept": len(kept), "top": best}
