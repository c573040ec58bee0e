"""A screening run: its folder, the two stages, resume, top-k and the summary.

Folder layout (``out``)::

    screen.json              what decides the rows (model sha256, n, seed, chunk size, partitions, ...)
    chunks/c<i>.json         counts of each finished chunk (written after its shards)
    shards/p<P>/c<i>.parquet first stage: a chunk's rows that fall in hash partition P
    library/part-<P>.parquet the result: unique molecules passing the filters, in draw order
    top.csv                  the best ``top`` kept molecules by ``by``
    summary.json             counts, throughput, the engine, the best molecules

Stage one runs every chunk not yet finished; stage two deduplicates and filters each
partition (:mod:`molshape.screening.dedup`). Filters and top-k act in stage two only, so
``--resume`` with other filters re-filters without decoding again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from molshape.core.atomic import write_csv, write_json
from molshape.core.rundir import RunLock, RunLocked, leftovers
from molshape.core.runtime import json_safe
from molshape.scoring.targets import default_target, fits, get_target
from molshape.screening import chunks as chunking
from molshape.screening import filters
from molshape.screening.columns import SCORE_COLUMN, columns_of, targets_for
from molshape.screening.dedup import library_path, merge_partition, top_rows
from molshape.screening.engine import EXTRA, expected_line, open_engine
from molshape.screening.pipeline import (PROBE, SOURCES, ScreenSpec, chunk_rows, model_ref, probe_seconds, read_marker,
                                        remember, run_chunk)

MANIFEST = "screen.json"
#: what a run writes in its folder (``--force`` removes exactly these)
OUTPUTS = (MANIFEST, "chunks", "shards", "library", "top.csv", "summary.json")
#: the manifest format
FORMAT = 1


class ScreenError(ValueError):
    """A screen asked for with bad options or into a folder it must not touch: a usage error.

    Attributes:
        option: the option at fault (``--keep``, ``--out``, ...), or None.
    """

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


@dataclass
class ScreenResult:
    """What :func:`screen` returns: the summary and the run folder."""

    summary: dict[str, Any]
    out_dir: Path

    def library(self) -> pd.DataFrame:
        """Every kept molecule (all partitions, each in draw order); for runs that fit in memory."""
        import pyarrow.parquet as pq  # optional dependency: the screen extra

        parts = [pq.read_table(library_path(self.out_dir, p)).to_pandas() for p in range(self.summary["partitions"])]
        return pd.concat(parts, ignore_index=True)

    def top(self) -> pd.DataFrame:
        """The best kept molecules (``top.csv``)."""
        return pd.read_csv(self.out_dir / "top.csv")


def plan_targets(grammar: Any, targets: Sequence[str] | None, keep: Sequence[str], by: str | None,
                 ) -> tuple[tuple[str, ...], list[filters.Keep], str | None]:
    """Targets to compute (asked for, the default one, those the filters and ``by`` need),
    the parsed filters and the ranking target.

    Raises:
        ScreenError: a malformed filter, an unknown target or column, or one the model's strings lack.
    """
    try:
        parsed = [filters.parse_keep(k) for k in keep]
        asked = list(targets) if targets else [t for t in (default_target(grammar),) if t]
        if by is not None:
            asked.append(by)
        wanted = targets_for(asked, [k.column for k in parsed])
    except ValueError as e:
        raise ScreenError(str(e), "--keep" if isinstance(e, filters.FilterError) or "column" in str(e)
                          else "--target") from None
    for t in wanted:
        if not fits(t, grammar):
            raise ScreenError(f"target {t!r} does not score the strings of a {grammar.name!r} model", "--target")
    by = by or (wanted[0] if wanted else None)
    return wanted, parsed, by


def _manifest(spec: ScreenSpec, n: int, seed: int, chunk_size: int) -> dict[str, Any]:
    return {"format": FORMAT, "checkpoint_sha256": spec.model.sha256, "checkpoint": spec.model.path, "n": n,
            "seed": seed, "chunk_size": chunk_size, "partitions": spec.partitions, "targets": list(spec.targets),
            "source": spec.source, "component": spec.component, "mode": spec.mode, "attempts": spec.attempts,
            "constraints": spec.constraints, "batch_size": spec.batch_size}


def check_folder(out: Path, manifest: dict[str, Any], resume: bool, force: bool) -> bool:
    """Whether ``out`` holds this very run (to resume). Nothing is written.

    Raises:
        ScreenError: ``out`` is a file, holds other files, or holds a screen run that is not
            to be resumed (no ``resume``) or is another run (other settings).
    """
    if out.exists() and not out.is_dir():
        raise ScreenError(f"{out} is a file, not a folder", "--out")
    found = leftovers(out)
    if not found:
        return False
    if MANIFEST not in found:
        raise ScreenError(f"{out} holds other files ({', '.join(found[:3])}{', ...' if len(found) > 3 else ''}); "
                          "choose a new or empty folder", "--out")
    if force:
        return False
    if not resume:
        raise ScreenError(f"{out} holds a screen run; pass --resume to continue it or --force to start over", "--out")
    try:
        old = json.loads((out / MANIFEST).read_text())
    except ValueError:
        raise ScreenError(f"{out / MANIFEST} is not readable JSON; --force starts over", "--out") from None
    differ = [k for k in manifest if k != "checkpoint" and old.get(k) != manifest[k]]
    if differ:
        k = differ[0]
        raise ScreenError(f"{out} holds another screen run ({k} {old.get(k)!r} there, {manifest[k]!r} here); "
                          "choose another folder or --force to start over", "--out")
    return True


def screen(model: Any, out: str | Path, n: int, *, seed: int = 0, keep: Sequence[str] = (),
           targets: Sequence[str] | None = None, top: int = 1000, by: str | None = None,
           chunk_size: int = chunking.CHUNK_SIZE, partitions: int | None = None, source: str = "prior",
           component: int | None = None, mode: str = "argmax", attempts: int = 1, constraints: str = "auto",
           batch_size: int = 1000, scheduler: str | None = None, workers: int | None = None, threads: int = 1,
           resume: bool = False, force: bool = False, progress: bool = False,
           announce: Callable[[str], None] | None = None,
           task: Callable[[ScreenSpec, chunking.Chunk], dict[str, Any]] = run_chunk) -> ScreenResult:
    """Generate ``n`` molecules (or expressions), deduplicate, score, filter and rank them.

    Args:
        model: a loaded :class:`molshape.api.Model` (its ``net``, ``grammar`` and ``path`` are used).
        out: the run folder (see the module docstring); a folder holding this run resumes with ``resume``.
        keep: filters such as ``"qed>=0.6"`` (:mod:`molshape.screening.filters`).
        targets: targets to score (default: the model's default target); filters and ``by``
            add those they need.
        top / by: how many of the best kept molecules go to ``top.csv``, ranked by target ``by``.
        chunk_size / partitions: latents per task; hash partitions (default: one per million draws).
        scheduler / workers: a Dask scheduler address, or a local Dask cluster of ``workers``
            processes; neither: in this process. The rows do not depend on it.
        threads: torch threads per task (1 keeps in-process and cluster results identical).
        announce: called with one line (the expected time) before the work starts.
        task: the chunk task (:func:`~molshape.screening.pipeline.run_chunk`; a wrapper can inject faults).

    Raises:
        ScreenError: bad options or folder (nothing written). EngineError: Dask missing or the
            scheduler unreachable (nothing written).
    """
    if importlib.util.find_spec("pyarrow") is None:
        raise ScreenError(f"screen writes Parquet and needs pyarrow, which is not installed; {EXTRA}")
    if source not in SOURCES:
        raise ScreenError(f"unknown source {source!r} (one of {', '.join(SOURCES)})", "--source")
    if (source == "component") != (component is not None):
        raise ScreenError("--component K goes with --source component (and only with it)", "--component")
    k_max = model.net.objective.prior.n_components
    if component is not None and not 0 <= component < k_max:
        raise ScreenError(f"{component} is not in [0, {k_max}) (the prior has {k_max} components)", "--component")
    wanted, keeps, by = plan_targets(model.grammar, targets, keep, by)
    out = Path(out)
    plan = chunking.plan(n, chunk_size, seed)
    spec = ScreenSpec(str(out.resolve()), model_ref(model.path), wanted, partitions or chunking.default_partitions(n),
                      source, component, mode, attempts, constraints, batch_size, threads)
    manifest = _manifest(spec, n, seed, chunk_size)
    resuming = check_folder(out, manifest, resume, force)
    engine = open_engine(scheduler, workers)  # an unreachable scheduler fails here, before any file
    try:
        try:
            lock = RunLock(out).acquire()
        except RunLocked as e:
            raise ScreenError(str(e), "--out") from None
        try:
            if force:
                _remove_outputs(out)
            if not resuming:
                write_json(out / MANIFEST, manifest)
            remember(spec.model, (model.net, model.grammar))
            return _run(spec, plan, manifest, keeps, top, by, engine, progress, announce, task)
        finally:
            lock.release()
    finally:
        engine.close()


def _remove_outputs(out: Path) -> None:
    for name in OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _run(spec: ScreenSpec, plan: list[chunking.Chunk], manifest: dict[str, Any], keeps: list[filters.Keep],
         top: int, by: str | None, engine: Any, progress: bool,
         announce: Callable[[str], None] | None, task: Callable[..., dict[str, Any]]) -> ScreenResult:
    out = Path(spec.out_dir)
    todo = [c for c in plan if read_marker(out, c.index) is None]
    n_todo = sum(c.size for c in todo)
    expected = None
    if todo and announce is not None:
        expected = probe_seconds(lambda c: chunk_rows(spec, c)) * n_todo / engine.cores
        announce(expected_line(n_todo, "latents", len(todo), manifest["chunk_size"], engine, expected, str(out),
                               f"{PROBE} latents here"))
    start = time.perf_counter()
    task_seconds = 0.0
    bar = tqdm(total=manifest["n"], initial=manifest["n"] - n_todo, desc="screen", unit="mol",
               disable=not progress, smoothing=0.1)
    # task names unique to this run and folder: two runs on one cluster never share a result
    token = hashlib.blake2b(f"{out}:{sorted(manifest.items())}".encode(), digest_size=5).hexdigest()
    for counts in engine.map(task, ((spec, c) for c in todo),
                             (f"screen-{token}-chunk-{c.index}" for c in todo)):
        task_seconds += counts["seconds"]
        bar.update(counts["n"])
    bar.close()
    stage1 = time.perf_counter() - start

    t2 = time.perf_counter()
    higher = get_target(by).higher_is_better if by else True
    column = SCORE_COLUMN[by] if by else None
    merged = {"unique": 0, "kept": 0}
    best: list[dict[str, Any]] = []
    tasks = ((spec.out_dir, p, len(plan), spec.targets, keeps, top, column, higher) for p in range(spec.partitions))
    for part in tqdm(engine.map(merge_partition, tasks, (f"screen-{token}-dedup-{p}"
                                                         for p in range(spec.partitions))),
                     total=spec.partitions, desc="dedup", unit="part", disable=not progress):
        merged["unique"] += part["unique"]
        merged["kept"] += part["kept"]
        if column and part["top"]:
            best = top_rows(pd.DataFrame(best + part["top"]), column, top, higher).to_dict("records")
    stage2 = time.perf_counter() - t2

    fields = ["smiles", *columns_of(spec.targets), "chunk", "row"]
    write_csv(out / "top.csv", best, fields)
    summary = _summary(spec, plan, manifest, keeps, top, by, merged, best, engine, len(todo), n_todo,
                       stage1, stage2, task_seconds, expected)
    write_json(out / "summary.json", json_safe(summary), allow_nan=False)
    return ScreenResult(summary, out)


def _summary(spec: ScreenSpec, plan: list[chunking.Chunk], manifest: dict[str, Any], keeps: list[filters.Keep],
             top: int, by: str | None, merged: dict[str, int], best: list[dict[str, Any]], engine: Any, n_run: int,
             n_todo: int, stage1: float, stage2: float, task_seconds: float, expected: float | None) -> dict[str, Any]:
    totals = {"valid": 0, "incomplete": 0, "invalid": 0, "repeats": 0}
    for c in plan:  # one small file at a time: the driver's memory does not grow with n
        marker = read_marker(spec.out_dir, c.index) or {}
        for k in totals:
            totals[k] += int(marker.get(k, 0))
    column = SCORE_COLUMN[by] if by else None
    n = manifest["n"]
    return {
        "out": spec.out_dir, "checkpoint": spec.model.path, "source": spec.source, "component": spec.component,
        "n": n, "seed": manifest["seed"], "targets": list(spec.targets), "keep": [str(k) for k in keeps],
        **totals, "unique": merged["unique"], "kept": merged["kept"],
        "validity": round(totals["valid"] / n, 6), "uniqueness": round(merged["unique"] / max(totals["valid"], 1), 6),
        "top": top, "by": by, "best": [{"smiles": r["smiles"], column: r[column]} for r in best[:10]],
        "chunks": len(plan), "chunk_size": manifest["chunk_size"], "partitions": spec.partitions,
        "chunks_run": n_run, "chunks_skipped": len(plan) - n_run,
        "engine": engine.describe(), "cores": engine.cores,
        "expected_s": None if expected is None else round(expected, 1),
        "generate_s": round(stage1, 3), "dedup_s": round(stage2, 3),
        "molecules_per_s": round(n_todo / stage1, 2) if n_run and stage1 > 0 else None,
        "molecules_per_s_per_core": round(n_todo / stage1 / engine.cores, 2) if n_run and stage1 > 0 else None,
        # wall time the cores spent outside the chunk function (scheduling, transfer, model loads)
        "overhead_per_chunk_s": (round(max(0.0, stage1 * engine.cores - task_seconds) / n_run, 3)
                                 if n_run else None),
    }
