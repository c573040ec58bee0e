"""``molshape decode``: latents (prior, a component, ex-post GMM, a line, given inputs) -> strings."""

from __future__ import annotations

import gzip
import time
from pathlib import Path
from typing import Any

import click

from molshape.commands.common import checkpoint_option, emit_summary, inference_options, load_run_model, write_run_config

SOURCES = ("prior", "component", "expost", "interpolate", "input")


def read_inputs(path: Path, grammar: str) -> list[str]:
    """One input per line (empty lines included: they fail to parse and are reported)."""
    from molshape.commands.parse import split_line

    if not path.is_file():
        raise click.BadParameter(f"no such file: {path}", param_hint="--input")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return [split_line(line, grammar)[0] for line in f]


def _latents(source: str, model, grammar, ckpt: dict, checkpoint: Path, n: int, component: int | None,
             ends: tuple[str, str] | None, steps: int, inputs: list[str] | None, data: Path | None,
             generator) -> tuple[Any, list[str | None] | None]:
    """``(z [m x d], per-output input failure or None)`` for the chosen source."""
    from molshape import generation as gen

    if source == "prior":
        return gen.prior_latents(model, n, generator), None
    if source == "component":
        if component is None:
            raise click.UsageError("--source component needs --component K")
        k = model.objective.prior.n_components
        if not 0 <= component < k:
            raise click.BadParameter(f"{component} is not in [0, {k}) (the prior has {k} components)",
                                     param_hint="--component")
        return gen.component_latents(model, component, n, generator), None
    if source == "expost":
        try:
            gmm = gen.expost_gmm(model, grammar, ckpt, checkpoint, data=data, progress=True)
        except ValueError as e:
            raise click.UsageError(f"--source expost: {e}") from e
        return gmm.sample(n, generator), None
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


@click.command("decode", epilog="Output: one line per result, in order: the string, or '# <reason>' "
               "('# incomplete', '# invalid: <smiles> (RDKit: ...)', '# unparseable (line N): ...'). "
               "With --json and no -o, the JSON summary follows the results on stdout.")
@checkpoint_option
@click.option("--n", "n", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Latents to draw (prior, component, expost).")
@click.option("--source", type=click.Choice(SOURCES), default=None,
              help="Where latents come from [default: prior; input with --input; interpolate with --between].")
@click.option("--component", type=int, default=None, help="Mixture component K for --source component.")
@click.option("--between", "ends", nargs=2, type=str, default=None, metavar="A B",
              help="Interpolate between the latents of strings A and B.")
@click.option("--steps", default=10, show_default=True, type=click.IntRange(min=2), help="Interpolation points.")
@click.option("--input", "input_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Reconstruct the strings of FILE (one a line; may be .gz).")
@click.option("--mode", type=click.Choice(["argmax", "sample"]), default=None,
              help="Rule choice [default: argmax; sample when --attempts > 1].")
@click.option("--attempts", default=1, show_default=True, type=click.IntRange(min=1),
              help="Sampled decodes per latent; the most frequent valid result is kept (GVAE).")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Training data file for --source expost (default: the standard data set).")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Sequences decoded per model call.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Results file (default: stdout). Its config is written beside it.")
@inference_options
def command(checkpoint: Path | None, grammar: str, n: int, source: str | None, component: int | None,
            ends: tuple[str, str] | None, steps: int, input_path: Path | None, mode: str | None, attempts: int,
            data: Path | None, batch_size: int, output: Path | None, seed: int, device: str, threads: int | None,
            as_json: bool) -> None:
    """Sample latents and decode them to SMILES or expressions with the masked grammar decoder."""
    from molshape import generation as gen
    from molshape.runtime import seed_everything

    source = source or ("input" if input_path else "interpolate" if ends else "prior")
    if (source == "input") != (input_path is not None):
        raise click.UsageError("--input FILE goes with --source input (and only with it)")
    mode = mode or ("sample" if attempts > 1 else "argmax")
    if attempts > 1 and mode != "sample":
        raise click.BadParameter("--attempts > 1 needs --mode sample", param_hint="--mode")
    checkpoint, dev, model, g, ckpt = load_run_model(checkpoint, grammar, device, threads)
    generator = seed_everything(seed)
    inputs = read_inputs(input_path, g.name) if input_path else None

    start = time.perf_counter()
    z, failures = _latents(source, model, g, ckpt, checkpoint, n, component, ends, steps, inputs, data, generator)
    decoded = (gen.decode_latents(model, g, z, mode, attempts, generator, batch_size, progress=True)
               if z is not None else gen.Decoded([], [], []))
    wall = time.perf_counter() - start

    lines, reasons = _merge(decoded, failures)
    text = "\n".join(lines) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        write_run_config(output.parent, {"checkpoint": checkpoint, "source": source, "n": n, "component": component,
                                         "between": ends, "steps": steps, "input": input_path, "mode": mode,
                                         "attempts": attempts, "seed": seed, "device": str(dev)},
                         name=f"{output.name}.config.json")
    key = gen.canonical_key(g)
    valid = [s for s in decoded if s is not None]
    summary = {
        "checkpoint": str(checkpoint), "grammar": g.name, "source": source, "mode": mode, "attempts": attempts,
        "n": len(lines), "valid": len(valid), "unique": len({key(s) for s in valid}),
        "incomplete": sum(r == "incomplete" for r in reasons),
        "invalid": sum(r is not None and r != "incomplete" and not r.startswith("unparseable") for r in reasons),
        "unparseable": sum(r is not None and r.startswith("unparseable") for r in reasons),
        "wall_s": round(wall, 3), "s_per_1000": round(1000 * wall / max(len(lines), 1), 3),
        "device": str(dev), "output": str(output) if output else None,
    }
    emit_summary(summary, as_json, _human)


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
