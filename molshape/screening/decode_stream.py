"""``decode --n``: latents drawn and decoded in chunks on any engine, written in draw order.

The ``n`` draws are cut into chunks of ``chunk_size`` (:func:`~molshape.screening.chunks.plan`).
Chunk 0 draws its latents and sampling noise from a generator seeded with the run seed
itself, chunk ``i >= 1`` from one seeded :func:`~molshape.screening.chunks.chunk_seed`
``(seed, i)``. So:

- the lines do not depend on the engine (this process, ``workers`` local Dask processes or a
  ``scheduler``), on the number of workers or on the order chunks finish in;
- a run of at most one chunk gives the lines of one generator seeded ``seed``
  (``Model.sample(n, seed=seed)`` in argmax mode);
- the lines depend on ``chunk_size``: keep it to reproduce a run.

Workers load the model once (:func:`~molshape.screening.pipeline.worker_model`); each chunk's
lines travel back to this process, which writes them in order, so the workers need no shared
file system (only the model: shipped ones are found by name).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from molshape.gvae import generation as gen
from molshape.gvae.latent_sources import DRAWN, SourceError, drawer, fit_expost, result_lines
from molshape.gvae.tally import Tally
from molshape.latent.expost import ExPostGMM
from molshape.screening import chunks as chunking
from molshape.screening.engine import DaskEngine, open_engine
from molshape.screening.partial import ChunkedOutput, Progress, check_resume, partial_path
from molshape.screening.pipeline import PROBE, ModelRef, decode_chunk, model_ref, probe_seconds, remember
from molshape.screening.stream import announce_run, destination, run_chunks, run_fields

#: what decides a run's lines, recorded with its partial output (``resume`` checks it)
FORMAT = 1


@dataclass(frozen=True)
class DecodeSpec:
    """What decides a chunk's lines; picklable, sent with each task (see :func:`decode_chunk`)."""

    model: ModelRef
    source: str = "prior"
    component: int | None = None
    expost: ExPostGMM | None = None
    mode: str = "argmax"
    attempts: int = 1
    constraints: str = "auto"
    batch_size: int = 1000
    neutralise: bool = False
    threads: int | None = None


def neutralised(decoded: gen.Decoded) -> gen.Decoded:
    """``decoded`` with each molecule's charges neutralised (RDKit's uncharger; see
    :func:`molshape.scoring.chem.neutralise`); ``reasons`` and ``raw`` kept."""
    from molshape.scoring.chem import neutralise  # RDKit is heavy: loaded only when molecules are involved

    return gen.Decoded([None if s is None else neutralise(s) or s for s in decoded], decoded.reasons, decoded.raw)


def decode_task(spec: DecodeSpec, chunk: chunking.Chunk) -> tuple[list[str], list[str | None]]:
    """One chunk: per draw, its output line (the string or ``# <reason>``) and its reason (None when valid)."""
    decoded = decode_chunk(spec, chunk)
    if spec.neutralise:
        decoded = neutralised(decoded)
    return result_lines(decoded, decoded.reasons), list(decoded.reasons)


def decode(model: Any, n: int, output: str | Path | None = None, *, seed: int = 0, source: str = "prior",
           component: int | None = None, data: str | Path | None = None, mode: str = "argmax", attempts: int = 1,
           constraints: str = "auto", batch_size: int = 1000, neutralise: bool = False,
           chunk_size: int = chunking.CHUNK_SIZE, scheduler: str | None = None, workers: int | None = None,
           threads: int | None = None, resume: bool = False, progress: bool = False,
           announce: Callable[[str], None] | None = None, estimate_from: int = 0,
           emit: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Draw ``n`` latents of ``source`` (``prior``, ``component``, ``expost``), decode them in chunks
    and write one line per draw, in draw order (see the module docstring for the seeds).

    Args:
        model: a loaded :class:`molshape.api.Model` (``net``, ``grammar``, ``checkpoint``, ``path``).
        output: the file (streamed through ``<output>.partial``; ``resume`` continues a killed
            run's). Without it, each chunk's text goes to ``emit``, or the lines are returned
            in the summary as ``results``.
        scheduler / workers: a Dask scheduler, or a local Dask cluster of ``workers``
            processes; neither: this process. The lines do not depend on it.
        threads: torch threads per Dask task (default 1); in this process, None keeps torch's setting.
        announce: called with a line before the work starts: the expected time (runs of
            ``estimate_from`` latents and more, and every run on Dask), notes.

    Returns:
        the summary: ``n, valid, unique, incomplete, invalid``, the engine and chunk counts, times.

    Raises:
        SourceError: a source without what it needs. ResumeError: ``output``'s partial file
            holds another run. EngineError: Dask missing or the scheduler unreachable. Nothing
            is written before these.
    """
    if source not in DRAWN:
        raise SourceError(f"chunked decoding draws latents: --source must be one of {', '.join(DRAWN)}, got {source!r}",
                          "--source")
    net, grammar = model.net, model.grammar
    if source == "expost":
        gmm = fit_expost(net, grammar, model.checkpoint, model.path, data, progress)
    else:
        drawer(source, net, grammar, model.checkpoint, model.path, component)  # checks --component
        gmm = None
    spec = DecodeSpec(model_ref(model.path), source, component, gmm, mode, attempts, constraints, batch_size,
                      neutralise, threads)
    plan = chunking.plan(n, chunk_size, seed, first_seed=seed)
    run = {"format": FORMAT, "command": "decode", "checkpoint_sha256": spec.model.sha256, "n": n, "seed": seed,
           "chunk_size": chunk_size, "source": source, "component": component,
           "data": None if data is None else str(Path(data).resolve()), "mode": mode, "attempts": attempts,
           "constraints": constraints, "batch_size": batch_size, "neutralise": neutralise}
    start = check_resume(output, run, resume) if output is not None else Progress()
    engine = open_engine(scheduler, workers)  # an unreachable scheduler fails here, before any file
    try:
        remember(spec.model, (net, grammar))  # the in-process engine uses this very model (and device)
        task_spec = replace(spec, threads=threads or 1) if isinstance(engine, DaskEngine) else spec
        todo = plan[start.chunks:]
        n_todo = sum(c.size for c in todo)
        where = destination(output, start, announce)
        big = n_todo >= estimate_from or isinstance(engine, DaskEngine)
        expected = announce_run(announce if big else None, engine,
                                lambda: probe_seconds(lambda c: decode_task(spec, c), min(PROBE, n)),
                                n_todo, "latents", len(todo), chunk_size, where, f"{min(PROBE, n)} latents here")
        tally = Tally(gen.canonical_key(grammar))
        counts = {"incomplete": 0, "invalid": 0}
        kept: list[str] | None = [] if output is None and emit is None else None

        def consume(result: tuple[list[str], list[str | None]]) -> tuple[str, dict[str, Any]]:
            lines, reasons = result
            _count(tally, counts, lines, reasons)
            if kept is not None:
                kept.extend(lines)
            return "".join(line + "\n" for line in lines), {}

        if start.chunks:
            _recount(partial_path(output), start.size, tally, counts)
        sink = ChunkedOutput(output, run, start) if output is not None else None
        wall = run_chunks(engine, decode_task, [(task_spec, c) for c in todo], consume,
                          sizes=(c.size for c in todo), output=sink, emit=emit, total=n, done=n - n_todo,
                          progress=progress, desc="decode", unit="mol")
        return {"n": tally.n, "valid": tally.n_valid, "unique": tally.metrics()["n_unique"], **counts, "seed": seed,
                **run_fields(engine, len(plan), chunk_size, len(todo), n_todo, wall, expected, "molecules", output),
                **({"results": kept} if kept is not None else {})}
    finally:
        engine.close()


def _count(tally: Tally, counts: dict[str, int], lines: list[str], reasons: list[str | None]) -> None:
    tally.add([line if why is None else None for line, why in zip(lines, reasons)], reasons)
    for why in reasons:
        if why is not None:
            counts["incomplete" if why == "incomplete" else "invalid"] += 1


def _recount(partial: Path, size: int, tally: Tally, counts: dict[str, int], block: int = 50_000) -> None:
    """Count the lines a resumed run already wrote (the first ``size`` bytes of ``partial``), a block at a time."""
    read = 0
    with open(partial, "rb") as f:
        while read < size:
            lines = []
            for raw in f:
                read += len(raw)
                lines.append(raw.decode("utf-8").rstrip("\n"))
                if read >= size or len(lines) == block:
                    break
            if not lines:
                break
            _count(tally, counts, lines, [line[2:] if line.startswith("# ") else None for line in lines])
