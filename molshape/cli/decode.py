"""``molshape decode``: latents (prior, a component, ex-post GMM, a line, given inputs) -> strings."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

from molshape.core.atomic import PartialFile
from molshape.grammar.decoding import MODES
from molshape.cli.common import (EXIT_ROWS_FAILED, check_constraints, checkpoint_option, constraints_option,
                                      emit_summary, guard_output, inference_options, load_run_model, read_lines)

from molshape.cli.cluster import check_engine, chunk_size_option, dask_workers_option, engine_failures, \
    scheduler_option
from molshape.cli import streaming
from molshape.gvae import tally
from molshape.gvae.generation import canonical_key
from molshape.gvae.latent_sources import DRAWN, SOURCES, SourceChunk, SourceError


def read_inputs(path: Path, grammar: str) -> list[str]:
    """One input per line (empty lines included: they fail to parse and are reported; a header
    line such as ``smiles`` is skipped)."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.cli.parse import split_line

    return [split_line(line, grammar)[0] for line in read_lines(path, "--input")[0]]


class _Sink:
    """Where result lines go: a file streamed chunk by chunk (``<-o>.partial``, renamed when
    complete), stdout as they come, or kept for the ``--json`` document."""

    def __init__(self, output: Path | None, keep: bool) -> None:
        self.file = PartialFile(output) if output is not None else None
        self.kept: list[str] | None = [] if keep and output is None else None

    def write(self, lines: list[str]) -> None:
        if self.file is not None:
            self.file.write_chunk(lines)
        elif self.kept is not None:
            self.kept.extend(lines)
        else:
            click.echo("".join(line + "\n" for line in lines), nl=False)

    def close(self, ok: bool, interrupted: bool) -> None:
        if self.file is None:
            return
        if ok:
            self.file.commit()
        elif interrupted:  # a kill or Ctrl-C keeps the finished chunks
            click.echo(f"interrupted: the results so far are in {self.file.partial}", err=True)
        else:
            self.file.discard()


@click.command("decode", epilog="Output: one line per result, in order: the string, or '# <reason>' "
               "('# incomplete', '# invalid: <smiles> (RDKit: ...)', '# unparseable (line N): ...'), to -o or "
               "stdout. -o is written chunk by chunk to <-o>.partial and renamed when complete, so an existing "
               "file is replaced only by a complete one and a killed run keeps its finished chunks (--resume "
               "continues it). Drawn latents (prior, component, expost) come in chunks of --chunk-size: chunk 0 "
               "is drawn with --seed itself, chunk i with a seed derived from --seed and i, so the lines are the "
               "same in this process, with --workers N or on --scheduler, and a run of at most one chunk is "
               "what one generator seeded --seed gives. "
               "With --json, stdout holds one JSON document (with the results as \"results\" when there is "
               "no -o). Runs of 20,000 and more, and every Dask run, print their expected time on stderr first. "
               "Exit status: 0 ok, 3 some --input lines did not parse, 2 usage error (also: Dask missing, an "
               "unreachable scheduler, a --resume of another run), 1 error.")
@checkpoint_option
@click.option("--n", "n", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Latents to draw (prior, component, expost).")
@click.option("--source", type=click.Choice(SOURCES), default=None,
              help="Where latents come from [default: prior; input with --input; interpolate with --between].")
@click.option("--component", type=int, default=None, help="Mixture component K for --source component.")
@click.option("--between", "ends", nargs=2, type=str, default=None, metavar="A B",
              help="Interpolate between the latents of strings A and B.")
@click.option("--steps", default=10, show_default=True, type=click.IntRange(min=2, max=tally.CHUNK),
              help=f"Interpolation points (at most {tally.CHUNK:,}: they are decoded at once).")
@click.option("--input", "input_path", type=click.Path(path_type=Path), default=None,
              help="Reconstruct the strings of FILE (one a line; may be .gz).")
@click.option("--refine", default=0, show_default=True, type=click.IntRange(min=0), metavar="STEPS",
              help="--between / --input: refine the encoded latents for up to STEPS gradient steps until they decode "
                   "back to their strings (about 1-2 s a molecule on one core at 300; 0: the encoder's).")
@click.option("--mode", type=click.Choice(MODES), default=None,
              help="Rule choice [default: argmax; sample when --attempts > 1].")
@click.option("--attempts", default=1, show_default=True, type=click.IntRange(min=1),
              help="Sampled decodes per latent; the most frequent valid result is kept (GVAE).")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Training data file for --source expost (default: the standard data set).")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Sequences decoded per model call.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Results file (default: stdout); the command's settings go in the --json summary.")
@click.option("--neutralise", is_flag=True,
              help="Neutralise charged molecules where a neutral form exists (RDKit's uncharger: [NH+] -> N, "
                   "[O-] -> O). The shipped models write ZINC's protonation states otherwise.")
@chunk_size_option(5000, "Latents per chunk (task) of --n draws; the lines depend on it, not on the engine.")
@scheduler_option
@dask_workers_option
@click.option("--resume", is_flag=True, help="Continue the killed run of the same settings in <-o>.partial "
              "(finished chunks are kept).")
@constraints_option
@inference_options
@click.pass_context
def command(ctx: click.Context, checkpoint: Path | None, grammar: str, n: int, source: str | None,
            component: int | None, ends: tuple[str, str] | None, steps: int, input_path: Path | None, refine: int,
            mode: str | None, attempts: int, data: Path | None, batch_size: int, output: Path | None,
            neutralise: bool, chunk_size: int, scheduler: str | None, workers: int | None, resume: bool,
            constraints: str, seed: int, device: str, threads: int | None, as_json: bool) -> None:
    """Sample latents and decode them to SMILES or expressions with the masked grammar decoder.

    Molecules come back as canonical SMILES without stereochemistry (the Kekulé grammar has none)."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.api import Model
    from molshape.core.runtime import seed_everything

    source = source or ("input" if input_path else "interpolate" if ends else "prior")
    if (source == "input") != (input_path is not None):
        raise click.UsageError("--input FILE goes with --source input (and only with it)")
    mode = mode or ("sample" if attempts > 1 else "argmax")
    if attempts > 1 and mode != "sample":
        raise click.BadParameter("--attempts > 1 needs --mode sample", param_hint="--mode")
    if as_json and output is None and source in DRAWN and n > tally.CHUNK:
        raise click.UsageError("--json without -o holds every result in memory; pass -o FILE for --n above "
                               f"{tally.CHUNK:,}")
    if refine and source in DRAWN:
        raise click.UsageError(f"--refine goes with encoded latents (--between or --input), not with --source {source}")
    if source not in DRAWN:
        for flag, given in (("--workers", workers), ("--scheduler", scheduler), ("--resume", resume)):
            if given:
                raise click.UsageError(f"{flag} goes with latents drawn with --n (--source prior, component or "
                                       f"expost), not with --source {source}")
    if resume and output is None:
        raise click.UsageError("--resume continues the <-o>.partial of a killed run; pass -o FILE")
    check_engine(scheduler, workers)
    _say_ignored(ctx, source)
    guard_output(output, [input_path, data, checkpoint], side=(".partial", ".partial.json"))
    checkpoint, dev, model, g, ckpt = load_run_model(checkpoint, grammar, device, threads)
    check_constraints(g, constraints)
    generator = seed_everything(seed)
    m = Model(model, g, ckpt, checkpoint)
    config = {"argv": sys.argv, "checkpoint": str(checkpoint), "source": source, "n": n, "component": component,
              "between": ends, "steps": steps, "input": str(input_path) if input_path else None, "mode": mode,
              "attempts": attempts, "constraints": constraints, "neutralise": neutralise, "seed": seed,
              "refine": refine}
    if source in DRAWN:
        summary = _drawn(m, n, output, as_json, seed=seed, source=source, component=component, data=data, mode=mode,
                         attempts=attempts, constraints=constraints, batch_size=batch_size, neutralise=neutralise,
                         chunk_size=chunk_size, scheduler=scheduler, workers=workers, threads=threads, resume=resume)
        config.update(chunk_size=chunk_size, scheduler=scheduler, workers=workers)
        summary = {"checkpoint": str(checkpoint), "grammar": g.name, "source": source, "mode": mode,
                   "attempts": attempts, "constraints": constraints, **summary, "unparseable": 0,
                   "s_per_1000": round(1000 * summary["wall_s"] / max(summary["n"], 1), 3), "device": str(dev),
                   "config": config}
        emit_summary(summary, as_json, _human)
        return
    inputs = read_inputs(input_path, g.name) if input_path else None
    start = time.perf_counter()
    results = tally.Tally(canonical_key(g))
    sink = _Sink(output, keep=as_json)
    counts = _stream(m.decode_source(source, n, component=component, between=ends, steps=steps, inputs=inputs,
                                     data=data, mode=mode, attempts=attempts, batch_size=batch_size,
                                     constraints=constraints, generator=generator, neutralise=neutralise,
                                     progress=True, refine=refine), sink, results)
    wall = time.perf_counter() - start
    n_out = results.n + counts["unparseable"]
    summary = {
        "checkpoint": str(checkpoint), "grammar": g.name, "source": source, "mode": mode, "attempts": attempts,
        "constraints": constraints, "n": n_out, "valid": results.n_valid, "unique": results.metrics()["n_unique"],
        **counts, "wall_s": round(wall, 3), "s_per_1000": round(1000 * wall / max(n_out, 1), 3),
        "device": str(dev), "output": str(output) if output else None, "config": config,
    }
    if sink.kept is not None:
        summary["results"] = sink.kept
    emit_summary(summary, as_json, _human)
    if counts["unparseable"]:
        sys.exit(EXIT_ROWS_FAILED)


def _drawn(m: Any, n: int, output: Path | None, as_json: bool, **options: Any) -> dict[str, Any]:
    """Latents drawn with --n, in chunks on the engine asked for (see :mod:`molshape.screening.decode_stream`)."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.screening.decode_stream import decode

    def say(line: str) -> None:
        if "expected time" in line:
            chunk = min(n, options["chunk_size"])
            mb = streaming.memory_mb(m.net, m.grammar, chunk, options["attempts"], options["batch_size"], n)
            line += f"; memory about {mb:,.0f} MB here"
        click.echo(line, err=True)

    emit = None if output is not None or as_json else (lambda text: click.echo(text, nl=False))
    try:
        with engine_failures(f"{output}.partial" if output is not None else None):
            return decode(m, n, output, progress=True, announce=say, estimate_from=streaming.ESTIMATE_FROM,
                          emit=emit, **options)
    except SourceError as e:
        raise (click.BadParameter(str(e), param_hint=e.option) if e.option else click.UsageError(str(e))) from e
    except KeyboardInterrupt:
        if output is not None:
            click.echo(f"interrupted: the finished chunks are in {output}.partial; the same command with --resume "
                       "continues the run", err=True)
        raise


#: options that only some sources read: option name -> (parameter, the sources that use it)
_SOURCE_OPTIONS = {"--n": ("n", DRAWN), "--component": ("component", ("component",)),
                   "--steps": ("steps", ("interpolate",)), "--data": ("data", ("expost",))}


def _say_ignored(ctx: click.Context, source: str) -> None:
    """One note on stderr for each option given that ``source`` does not read."""
    for flag, (param, users) in _SOURCE_OPTIONS.items():
        given = ctx.get_parameter_source(param) not in (None, click.core.ParameterSource.DEFAULT)
        if given and source not in users:
            what = {"input": "one result per input line", "interpolate": "--steps results"}.get(source, "")
            click.echo(f"note: {flag} is ignored with --source {source}" + (f" ({what})" if what and flag == "--n"
                                                                              else ""), err=True)


def _stream(chunks: Iterable[SourceChunk], sink: _Sink, results: tally.Tally) -> dict[str, int]:
    """Write the results chunk by chunk and count them: failures by kind, the rest in ``results``.

    A source that lacks what it needs is a usage error (exit 2), naming the option at fault.
    """
    counts = {"incomplete": 0, "invalid": 0, "unparseable": 0}
    ok = interrupted = False
    try:
        for lines, reasons, decoded in chunks:
            sink.write(lines)
            results.add(decoded, decoded.reasons)
            for why in reasons:
                if why is not None:
                    counts[_kind(why)] += 1
        ok = True
    except SourceError as e:
        raise (click.BadParameter(str(e), param_hint=e.option) if e.option else click.UsageError(str(e))) from e
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        sink.close(ok, interrupted)
    return counts


def _kind(reason: str) -> str:
    if reason == "incomplete":
        return "incomplete"
    return "unparseable" if reason.startswith("unparseable") else "invalid"


def _human(s: dict[str, Any]) -> str:
    return (f"decoded {s['n']} ({s['source']}, {s['mode']}, attempts {s['attempts']}): {s['valid']} valid, "
            f"{s['unique']} unique, {s['incomplete']} incomplete, {s['invalid']} invalid, "
            f"{s['unparseable']} unparseable in {s['wall_s']:.1f} s ({s['s_per_1000']:.2f} s per 1,000)")
