"""``score --input``: rows scored in chunks on any engine, written as CSV in input order.

Scores do not depend on anything but the input, so the CSV is the same whatever the engine
(this process, with a pool of ``workers`` processes per chunk, or a Dask ``scheduler``) and
whatever the chunk size; the chunk size only sets how much a killed run loses and how much
each task carries. Bad rows are scored as ``score`` scores them (``valid`` false, a reason),
counted, and the first :data:`LISTED` listed in the summary.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from molshape.core.runtime import clip
from molshape.scoring.targets import get_target, score_rows
from molshape.screening import chunks as chunking
from molshape.screening.engine import DaskEngine, open_engine
from molshape.screening.partial import ChunkedOutput, Progress, check_resume
from molshape.screening.pipeline import PROBE, probe_seconds
from molshape.screening.stream import announce_run, destination, run_chunks, run_fields

#: rows per chunk by default: about 2.5 minutes of RDKit on one core (logP with SA and cycles)
CHUNK_SIZE = 20_000
#: bad rows listed in the summary (all of them are counted, and have a reason in the CSV)
LISTED = 50
#: what decides the CSV, recorded with a partial output (``resume`` checks it)
FORMAT = 1


@dataclass(frozen=True)
class ScoreSpec:
    """How a chunk is scored: the target, neutralised or not, processes per chunk (None: all cores)."""

    target: str
    neutralise: bool = False
    workers: int | None = 1


def score_task(spec: ScoreSpec, strings: list[str]) -> list[dict[str, Any]]:
    """One chunk's rows (see :func:`molshape.scoring.targets.score_rows`)."""
    return score_rows(spec.target, strings, spec.workers, progress=False, neutralise=spec.neutralise)


def fmt(v: Any) -> Any:
    """A CSV cell: floats with 6 significant digits, ``nan`` empty."""
    if isinstance(v, float):
        return "" if v != v else f"{v:.6g}"
    return v


def csv_text(rows: list[dict[str, Any]], header: bool = True) -> str:
    """``rows`` as CSV (columns: the first row's keys), with or without the header line."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    if header:
        w.writeheader()
    w.writerows({k: fmt(v) for k, v in r.items()} for r in rows)
    return buf.getvalue()


def score(inputs: Sequence[str], output: str | Path | None = None, *, target: str = "logp",
          names: Sequence[str | None] | None = None, neutralise: bool = False, workers: int | None = None,
          chunk_size: int = CHUNK_SIZE, scheduler: str | None = None, resume: bool = False, progress: bool = False,
          announce: Callable[[str], None] | None = None, estimate_from: int = 0,
          emit: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Score ``inputs`` in chunks and write the CSV ``score`` writes, in input order.

    Args:
        names: per input, its name (a ``name`` column follows ``input`` when any is given).
        output: the CSV file (streamed through ``<output>.partial``; ``resume`` continues a killed
            run's). Without it, each chunk's text goes to ``emit``, or the rows are returned in
            the summary as ``rows``.
        workers: processes scoring each chunk in this process (None: all cores); with a
            ``scheduler``, each Dask task scores on one core.
        announce: called with a line before the work starts: the expected time (runs of
            ``estimate_from`` rows and more, and every run on Dask), notes.

    Returns:
        the summary: ``n, valid, invalid, mean_valid_score, best, invalid_rows`` (the first
        :data:`LISTED` bad rows: row number, input, reason), the engine and chunk counts, times.

    Raises:
        ValueError: an unknown target or no inputs. ResumeError: ``output``'s partial file holds
            another run. EngineError: Dask missing or the scheduler unreachable.
    """
    get_target(target)
    if not inputs:
        raise ValueError("no inputs to score")
    named = names is not None and any(names)
    plan = chunking.plan(len(inputs), chunk_size)
    digest = hashlib.blake2b(digest_size=16)
    for s in inputs:
        digest.update(s.encode() + b"\n")
    run = {"format": FORMAT, "command": "score", "inputs_blake2b": digest.hexdigest(), "n": len(inputs),
           "names": named, "target": target, "neutralise": neutralise, "chunk_size": chunk_size}
    start = check_resume(output, run, resume) if output is not None else Progress()
    engine = open_engine(scheduler, None)  # an unreachable scheduler fails here, before any file
    try:
        on_dask = isinstance(engine, DaskEngine)
        spec = ScoreSpec(target, neutralise, 1 if on_dask else workers)
        todo = plan[start.chunks:]
        n_todo = sum(c.size for c in todo)
        where = destination(output, start, announce)
        k = min(PROBE, len(inputs))
        one_core = ScoreSpec(target, neutralise)
        cores = None if on_dask else min(workers or os.cpu_count() or 1, os.cpu_count() or 1)
        expected = announce_run(announce if n_todo >= estimate_from or on_dask else None, engine,
                                lambda: probe_seconds(lambda c: score_task(one_core, list(inputs[:c.size])), k),
                                n_todo, "rows", len(todo), chunk_size, where, f"{k} rows here", cores)
        totals = _Totals(target, start.state)
        kept: list[dict[str, Any]] | None = [] if output is None and emit is None else None
        chunk_of = iter(todo)

        def consume(rows: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
            chunk = next(chunk_of)
            if named:
                rows = [{"input": r["input"], "name": name or "", **r}
                        for r, name in zip(rows, names[chunk.start:chunk.start + chunk.size])]
            totals.add(rows, chunk.start)
            if kept is not None:
                kept.extend(rows)
            return csv_text(rows, header=chunk.index == 0), totals.state

        sink = ChunkedOutput(output, run, start) if output is not None else None
        wall = run_chunks(engine, score_task, ((spec, list(inputs[c.start:c.start + c.size])) for c in todo),
                          consume, sizes=(c.size for c in todo), output=sink, emit=emit, total=len(inputs),
                          done=len(inputs) - n_todo, progress=progress, desc="score", unit="row")
        return {**totals.summary(),
                **run_fields(engine, len(plan), chunk_size, len(todo), n_todo, wall, expected, "rows", output),
                **({"rows": kept} if kept is not None else {})}
    finally:
        engine.close()


class _Totals:
    """What the summary says, folded in chunk by chunk (and saved with a partial output)."""

    def __init__(self, target: str, state: dict[str, Any]) -> None:
        self.higher = get_target(target).higher_is_better
        self.target = target
        self.state = {"n": 0, "valid": 0, "invalid": 0, "sum": 0.0, "best": None, "best_score": None,
                      "invalid_rows": [], **state}

    def add(self, rows: list[dict[str, Any]], first: int) -> None:
        s = self.state
        for i, r in enumerate(rows, start=first + 1):
            s["n"] += 1
            if not r["valid"]:
                s["invalid"] += 1
                if len(s["invalid_rows"]) < LISTED:
                    s["invalid_rows"].append({"row": i, "input": clip(r["input"]), "reason": r["reason"]})
                continue
            s["valid"] += 1
            s["sum"] += r["score"]
            best = s["best_score"]
            if best is None or (r["score"] > best if self.higher else r["score"] < best):
                s["best"], s["best_score"] = r["input"], r["score"]

    def summary(self) -> dict[str, Any]:
        s = self.state
        mean = s["sum"] / s["valid"] if s["valid"] else None
        return {"target": self.target, "n": s["n"], "valid": s["valid"], "invalid": s["invalid"],
                "mean_valid_score": None if mean is None or math.isnan(mean) else mean, "best": s["best"],
                "invalid_rows": s["invalid_rows"]}
