"""The driver ``decode --n`` and ``score --input`` share: chunk tasks on an engine, results in chunk order.

The tasks run on the screening engine (:mod:`molshape.screening.engine`: this process, a
local Dask cluster or a running one). Their results come back in chunk order whatever
order they finish in, and each becomes text appended to a
:class:`~molshape.screening.partial.ChunkedOutput` (which a killed run continues) or handed
to ``emit`` (standard output). What a caller counts it folds in as results arrive, so the
driver holds no rows.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from molshape.screening.engine import DaskEngine, InProcess, expected_line, ordered
from molshape.screening.partial import ChunkedOutput, Progress, partial_path


def run_chunks(engine: InProcess | DaskEngine, task: Callable[..., Any], todo: Iterable[tuple],
               consume: Callable[[Any], tuple[str, dict[str, Any]]], *, sizes: Iterable[int],
               output: ChunkedOutput | None = None, emit: Callable[[str], None] | None = None, total: int = 0,
               done: int = 0, progress: bool = False, desc: str = "", unit: str = "it") -> float:
    """Run ``task(*args)`` for each of ``todo`` (read as the engine takes them), feed each result in
    order to ``consume`` (``-> (text, totals)``) and write its text; returns the wall seconds.

    Args:
        sizes: items per task (what the progress bar counts); ``total`` / ``done``: items in the
            run, and already finished (a resumed run).
        output: where text goes, with the totals after each chunk; else to ``emit``.

    An interrupted run (Ctrl-C, a kill, Dask workers dying) keeps ``output``'s finished chunks
    for ``resume``; one failing with any other error removes them.
    """
    token = uuid.uuid4().hex[:10]  # task names unique to this run: two runs on one cluster never share a result
    names = (f"{desc}-{token}-chunk-{i}" for i in itertools.count())
    bar = tqdm(total=total, initial=done, desc=desc, unit=unit, disable=not progress, smoothing=0.1)
    ok = keep = False
    start = time.perf_counter()
    try:
        for size, result in zip(sizes, ordered(engine, task, todo, names)):
            text, totals = consume(result)
            if output is not None:
                output.append(text, totals)
            elif emit is not None:
                emit(text)
            bar.update(size)
        ok = True
    except KeyboardInterrupt:
        keep = True
        raise
    except Exception as e:
        keep = type(e).__name__ == "KilledWorker"  # Dask's: the finished chunks stay good
        raise
    finally:
        bar.close()
        if output is not None:
            output.close(ok, keep)
    return time.perf_counter() - start


def destination(output: str | Path | None, start: Progress, announce: Callable[[str], None] | None) -> str:
    """Where a run's results go (its partial file, or standard output), said first through
    ``announce`` when this run drops the finished chunks of an earlier one (``start.dropped``)."""
    where = str(partial_path(output)) if output is not None else "standard output"
    if start.dropped and announce is not None:
        announce(f"note: starting over: {where} held {start.dropped:,} finished chunk(s) of an earlier run "
                 "(--resume continues such a run)")
    return where


def announce_run(announce: Callable[[str], None] | None, engine: InProcess | DaskEngine, probe: Callable[[], float],
                 n: int, unit: str, chunks: int, chunk_size: int, where: str, measured: str,
                 cores: int | None = None) -> float | None:
    """Say the expected time (``probe()``: seconds per item here, shared among ``cores``,
    default the engine's) through ``announce``; returns it, or None when not announced."""
    if announce is None or not n:
        return None
    seconds = probe() * n / (cores or engine.cores)
    announce(expected_line(n, unit, chunks, chunk_size, engine, seconds, where, measured))
    return seconds


def run_fields(engine: InProcess | DaskEngine, n_chunks: int, chunk_size: int, chunks_run: int, items_run: int,
               wall: float, expected: float | None, unit: str, output: str | Path | None) -> dict[str, Any]:
    """The summary fields about the run itself: engine, chunks, times, throughput, the output file."""
    return {"engine": engine.describe(), "cores": engine.cores, "chunk_size": chunk_size, "chunks": n_chunks,
            "chunks_run": chunks_run, "chunks_skipped": n_chunks - chunks_run,
            "expected_s": None if expected is None else round(expected, 1), "wall_s": round(wall, 3),
            f"{unit}_per_s": round(items_run / wall, 2) if chunks_run and wall > 0 else None,
            "output": None if output is None else str(output)}
