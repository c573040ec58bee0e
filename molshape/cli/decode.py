"""``molshape decode``: latents (prior, a component, ex-post GMM, a line, given inputs) -> strings."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import torch

from molshape.core.atomic import PartialFile
from molshape.grammar.decoding import MODES
from molshape.cli.common import (EXIT_ROWS_FAILED, check_constraints, checkpoint_option, constraints_option,
                                      emit_summary, guard_output, inference_options, load_run_model, read_text,
                                      write_run_config)

from molshape.cli import streaming
from molshape.cli.streaming import Tally, announce, chunk_sizes, timed
from molshape.core.runtime import PROBE_SEED_OFFSET

SOURCES = ("prior", "component", "expost", "interpolate", "input")
#: sources that draw --n latents (streamed in chunks); the others decode given strings
DRAWN = ("prior", "component", "expost")


def read_inputs(path: Path, grammar: str) -> list[str]:
    """One input per line (empty lines included: they fail to parse and are reported)."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.cli.parse import split_line

    return [split_line(line, grammar)[0] for line in read_text(path, "--input").splitlines()]


def _latents(source: str, model, grammar, ends: tuple[str, str] | None, steps: int,
             inputs: list[str] | None) -> tuple[Any, list[str | None] | None]:
    """``(z [m x d], per-output input failure or None)`` for ``interpolate`` and ``input``."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.gvae import generation as gen

    if source == "interpolate":
        if ends is None:
            raise click.UsageError("--source interpolate needs --between A B")
        try:
            return gen.interpolate_latents(model, grammar, ends[0], ends[1], steps), None
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--between / --steps") from e
    assert inputs is not None
    parsed = gen.parse_inputs(grammar, inputs)
    failures: list[str | None] = [None] * len(inputs)
    for i, s, reason in parsed.failed:
        failures[i] = f"unparseable (line {i + 1}): {s!r}: {reason}"
    if not parsed.index:
        return None, failures
    return gen.encode_rules(model, parsed.rules, progress=True), failures


def _sampler(source: str, model, grammar, ckpt: dict, checkpoint: Path, component: int | None, data: Path | None,
             generator) -> Callable[[int], Any]:
    """``m -> m x d`` latents for the sources that draw ``--n`` latents (prior, component, expost)."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.gvae import generation as gen

    if source == "prior":
        return lambda m: gen.prior_latents(model, m, generator)
    if source == "component":
        if component is None:
            raise click.UsageError("--source component needs --component K")
        k = model.objective.prior.n_components
        if not 0 <= component < k:
            raise click.BadParameter(f"{component} is not in [0, {k}) (the prior has {k} components)",
                                     param_hint="--component")
        return lambda m: gen.component_latents(model, component, m, generator)
    try:
        gmm = gen.expost_gmm(model, grammar, ckpt, checkpoint, data=data, progress=True)
    except ValueError as e:
        raise click.UsageError(f"--source expost: {e}") from e
    return lambda m: gmm.sample(m, generator)


def _chunks(source: str, model, grammar, ckpt: dict, checkpoint: Path, n: int, component: int | None,
            ends: tuple[str, str] | None, steps: int, inputs: list[str] | None, data: Path | None,
            mode: str, attempts: int, batch_size: int, generator,
            constraints: str = "auto") -> Iterator[tuple[list[str], list[str | None], Any]]:
    """``(output lines, reasons, Decoded)`` chunk by chunk, in order (see :mod:`molshape.cli.streaming`)."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.gvae import generation as gen

    def decode(z):
        return gen.decode_latents(model, grammar, z, mode, attempts, generator, batch_size, progress=True,
                                  constraints=constraints)

    if source in DRAWN:
        draw = _sampler(source, model, grammar, ckpt, checkpoint, component, data, generator)
        for m in chunk_sizes(n):
            decoded = decode(draw(m))
            yield (*_merge(decoded, None), decoded)
        return
    z, failures = _latents(source, model, grammar, ends, steps, inputs)
    decoded = decode(z) if z is not None else gen.Decoded([], [], [])
    yield (*_merge(decoded, failures), decoded)


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
               "file is replaced only by a complete one and a killed run keeps its finished chunks. "
               "With --json, stdout holds one JSON document (with the results as \"results\" when there is "
               "no -o). Runs of 20,000 and more print their expected time and memory on stderr first. "
               "Exit status: 0 ok, 3 some --input lines did not parse, 2 usage error, 1 error.")
@checkpoint_option
@click.option("--n", "n", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Latents to draw (prior, component, expost).")
@click.option("--source", type=click.Choice(SOURCES), default=None,
              help="Where latents come from [default: prior; input with --input; interpolate with --between].")
@click.option("--component", type=int, default=None, help="Mixture component K for --source component.")
@click.option("--between", "ends", nargs=2, type=str, default=None, metavar="A B",
              help="Interpolate between the latents of strings A and B.")
@click.option("--steps", default=10, show_default=True, type=click.IntRange(min=2), help="Interpolation points.")
@click.option("--input", "input_path", type=click.Path(path_type=Path), default=None,
              help="Reconstruct the strings of FILE (one a line; may be .gz).")
@click.option("--mode", type=click.Choice(MODES), default=None,
              help="Rule choice [default: argmax; sample when --attempts > 1].")
@click.option("--attempts", default=1, show_default=True, type=click.IntRange(min=1),
              help="Sampled decodes per latent; the most frequent valid result is kept (GVAE).")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Training data file for --source expost (default: the standard data set).")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Sequences decoded per model call.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Results file (default: stdout). Its config is written beside it.")
# Over 60 lines: option validation for five latent sources; the work is in
# molshape.gvae.generation.
@constraints_option
@inference_options
def command(checkpoint: Path | None, grammar: str, n: int, source: str | None, component: int | None,
            ends: tuple[str, str] | None, steps: int, input_path: Path | None, mode: str | None, attempts: int,
            data: Path | None, batch_size: int, output: Path | None, constraints: str, seed: int, device: str,
            threads: int | None, as_json: bool) -> None:
    """Sample latents and decode them to SMILES or expressions with the masked grammar decoder."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.gvae import generation as gen
    from molshape.core.runtime import seed_everything

    source = source or ("input" if input_path else "interpolate" if ends else "prior")
    if (source == "input") != (input_path is not None):
        raise click.UsageError("--input FILE goes with --source input (and only with it)")
    mode = mode or ("sample" if attempts > 1 else "argmax")
    if attempts > 1 and mode != "sample":
        raise click.BadParameter("--attempts > 1 needs --mode sample", param_hint="--mode")
    if as_json and output is None and source in DRAWN and n > streaming.CHUNK:
        raise click.UsageError("--json without -o holds every result in memory; pass -o FILE for --n above "
                               f"{streaming.CHUNK:,}")
    guard_output(output, [input_path, data, checkpoint])
    checkpoint, dev, model, g, ckpt = load_run_model(checkpoint, grammar, device, threads)
    check_constraints(g, constraints)
    generator = seed_everything(seed)
    inputs = read_inputs(input_path, g.name) if input_path else None
    if source in DRAWN:
        announce(model, g, n, attempts, batch_size, mode, str(output) + ".partial" if output else "stdout",
                 probe=lambda m: timed(lambda: gen.decode_latents(
                     model, g, gen.prior_latents(model, m, torch.Generator().manual_seed(seed + PROBE_SEED_OFFSET)), mode, attempts,
                     torch.Generator().manual_seed(seed + PROBE_SEED_OFFSET), batch_size, constraints=constraints)))

    start = time.perf_counter()
    tally = Tally(gen.canonical_key(g))
    counts = {"incomplete": 0, "invalid": 0, "unparseable": 0}
    sink = _Sink(output, keep=as_json)
    ok = interrupted = False
    try:
        for lines, reasons, decoded in _chunks(source, model, g, ckpt, checkpoint, n, component, ends, steps, inputs,
                                               data, mode, attempts, batch_size, generator, constraints):
            sink.write(lines)
            tally.add(decoded, decoded.reasons)
            for why in reasons:
                if why is not None:
                    counts[_kind(why)] += 1
        ok = True
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        sink.close(ok, interrupted)
    wall = time.perf_counter() - start
    if output is not None:
        write_run_config(output.parent, {"checkpoint": checkpoint, "source": source, "n": n, "component": component,
                                         "between": ends, "steps": steps, "input": input_path, "mode": mode,
                                         "attempts": attempts, "constraints": constraints, "seed": seed,
                                         "device": str(dev)},
                         name=f"{output.name}.config.json")
    n_out = tally.n + counts["unparseable"]
    summary = {
        "checkpoint": str(checkpoint), "grammar": g.name, "source": source, "mode": mode, "attempts": attempts,
        "constraints": constraints, "n": n_out, "valid": tally.n_valid, "unique": tally.metrics()["n_unique"], **counts,
        "wall_s": round(wall, 3), "s_per_1000": round(1000 * wall / max(n_out, 1), 3),
        "device": str(dev), "output": str(output) if output else None,
    }
    if sink.kept is not None:
        summary["results"] = sink.kept
    emit_summary(summary, as_json, _human)
    if counts["unparseable"]:
        sys.exit(EXIT_ROWS_FAILED)


def _kind(reason: str) -> str:
    if reason == "incomplete":
        return "incomplete"
    return "unparseable" if reason.startswith("unparseable") else "invalid"


def _merge(decoded, failures: list[str | None] | None) -> tuple[list[str], list[str | None]]:
    """Output lines and reasons in input order: decoded results fill the parsed slots."""
    results = iter(zip(decoded, decoded.reasons))
    lines, reasons = [], []
    for fail in failures if failures is not None else [None] * len(decoded):
        s, why = (None, fail) if fail is not None else next(results)
        lines.append(s if why is None else f"# {why}")
        reasons.append(why)
    return lines, reasons


def _human(s: dict[str, Any]) -> str:
    return (f"decoded {s['n']} ({s['source']}, {s['mode']}, attempts {s['attempts']}): {s['valid']} valid, "
            f"{s['unique']} unique, {s['incomplete']} incomplete, {s['invalid']} invalid, "
            f"{s['unparseable']} unparseable in {s['wall_s']:.1f} s ({s['s_per_1000']:.2f} s per 1,000)")
