"""Where the latents of a decode run come from, decoded chunk by chunk.

Five sources (:data:`SOURCES`): ``prior`` (the model's prior), ``component`` (one mixture
component), ``expost`` (the checkpoint's ex-post GMM) draw ``n`` latents, streamed
:data:`~molshape.gvae.tally.CHUNK` at a time; ``interpolate`` (a line between two encoded
strings) and ``input`` (given strings, reconstructed) decode in one go, unparseable inputs
reported in their place.

Example:
    >>> for chunk in decode_source(model, grammar, ckpt, path, "prior", n=100, generator=g):  # doctest: +SKIP
    ...     print("\\n".join(chunk.lines))       # the string, or '# <reason>'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from molshape.core.errors import MolshapeError
from molshape.data.trained import TrainedOn
from molshape.grammar.cfg import Grammar
from molshape.gvae import generation as gen
from molshape.gvae.latent_refinement import RefineOptions, refine_latents
from molshape.gvae.tally import chunk_sizes
from molshape.latent.expost import ExPostGMM

SOURCES = ("prior", "component", "expost", "interpolate", "input")
#: sources that draw ``n`` latents (streamed in chunks); the others decode given strings
DRAWN = ("prior", "component", "expost")


class SourceError(MolshapeError):
    """A latent source lacks what it needs or was given a bad value.

    Attributes:
        option: the option at fault as the ``decode`` command names it (``--component``),
            or None when one is missing (a usage error).
    """

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


class SourceChunk(NamedTuple):
    """One chunk of results, in order.

    Attributes:
        lines: per result, the string or ``# <reason>`` (:func:`result_lines`).
        reasons: per result, None when valid, else why not (``unparseable (line N): ...`` for inputs).
        decoded: the decoded latents of the chunk (unparseable inputs have none).
    """

    lines: list[str]
    reasons: list[str | None]
    decoded: gen.Decoded


def result_lines(strings: Iterable[str | None], reasons: Iterable[str | None]) -> list[str]:
    """One output line per result: the string, or ``# <reason>`` where it failed."""
    return [s if why is None else f"# {why}" for s, why in zip(strings, reasons)]


def drawer(source: str, model: nn.Module, grammar: Grammar, checkpoint: TrainedOn, checkpoint_path: str | Path,
           component: int | None = None, data: str | Path | None = None,
           generator: torch.Generator | None = None, progress: bool = False) -> Callable[[int], Tensor]:
    """``m -> z [m x d]`` on CPU for the sources that draw latents (``prior``, ``component``, ``expost``).

    Raises:
        SourceError: no or a bad ``component``; the ex-post GMM cannot be fitted (other data).
    """
    if source == "prior":
        return lambda m: gen.prior_latents(model, m, generator)
    if source == "component":
        if component is None:
            raise SourceError("--source component needs --component K")
        k = model.objective.prior.n_components
        if not 0 <= component < k:
            raise SourceError(f"{component} is not in [0, {k}) (the prior has {k} components)", "--component")
        return lambda m: gen.component_latents(model, component, m, generator)
    gmm = fit_expost(model, grammar, checkpoint, checkpoint_path, data, progress)
    return lambda m: gmm.sample(m, generator)


def fit_expost(model: nn.Module, grammar: Grammar, checkpoint: TrainedOn, checkpoint_path: str | Path,
               data: str | Path | None = None, progress: bool = False) -> ExPostGMM:
    """The checkpoint's ex-post GMM (fitted once, cached; see :func:`~molshape.gvae.generation.expost_gmm`).

    Raises:
        SourceError: it cannot be fitted (the data found is not the checkpoint's).
    """
    try:
        return gen.expost_gmm(model, grammar, checkpoint, checkpoint_path, data=data, progress=progress)
    except ValueError as e:
        raise SourceError(f"--source expost: {e}") from e


def given_latents(source: str, model: nn.Module, grammar: Grammar, ends: tuple[str, str] | None = None,
                  steps: int = 10, inputs: list[str] | None = None, progress: bool = False,
                  refine: int = 0) -> tuple[Tensor | None, list[str | None] | None]:
    """``(z [m x d] or None when no input parses, per-result input failure or None)`` for
    ``interpolate`` (between ``ends``) and ``input`` (``inputs``); ``refine > 0`` refines the
    encoder's latents of the ends or inputs (:mod:`molshape.gvae.latent_refinement`).

    Raises:
        SourceError: no ``ends``, or they do not parse / ``steps < 2``.
    """
    if source == "interpolate":
        if ends is None:
            raise SourceError("--source interpolate needs --between A B")
        try:
            if not refine:
                return gen.interpolate_latents(model, grammar, ends[0], ends[1], steps), None
            za, zb = _refined(model, grammar, gen.parse_strings(grammar, list(ends)), refine, progress)
            return gen.latent_line(za, zb, steps), None
        except ValueError as e:
            raise SourceError(str(e), "--between / --steps") from e
    if inputs is None:
        raise SourceError("--source input needs inputs")
    parsed = gen.parse_inputs(grammar, inputs)
    gen.warn_dropped(parsed, grammar)
    failures: list[str | None] = [None] * len(inputs)
    for i, s, reason in parsed.failed:
        failures[i] = f"unparseable (line {i + 1}): {s!r}: {reason}"
    if not parsed.index:
        return None, failures
    if refine:
        return _refined(model, grammar, parsed.rules, refine, progress), failures
    return gen.encode_rules(model, parsed.rules, progress=progress), failures


def _refined(model: nn.Module, grammar: Grammar, rules: Tensor, steps: int, progress: bool) -> Tensor:
    return refine_latents(model, grammar, rules, RefineOptions(steps=steps), progress=progress).z


def decode_drawn(model: nn.Module, grammar: Grammar, draw: Callable[[int], Tensor], n: int, mode: str = "argmax",
                 attempts: int = 1, generator: torch.Generator | None = None, batch_size: int = 1000,
                 progress: bool = False, constraints: str = "auto") -> Iterator[gen.Decoded]:
    """Draw ``n`` latents with ``draw`` and decode them, one :class:`~molshape.gvae.generation.Decoded`
    per chunk (see :func:`~molshape.gvae.generation.decode_latents` for the decode options)."""
    for m in chunk_sizes(n):
        yield gen.decode_latents(model, grammar, draw(m), mode, attempts, generator, batch_size, progress=progress,
                                 constraints=constraints)


def decode_source(model: nn.Module, grammar: Grammar, checkpoint: TrainedOn, checkpoint_path: str | Path,
                  source: str = "prior", n: int = 1000, *, component: int | None = None,
                  ends: tuple[str, str] | None = None, steps: int = 10, inputs: list[str] | None = None,
                  data: str | Path | None = None, mode: str = "argmax", attempts: int = 1, batch_size: int = 1000,
                  generator: torch.Generator | None = None, constraints: str = "auto",
                  progress: bool = False, refine: int = 0) -> Iterator[SourceChunk]:
    """Latents of ``source`` decoded to strings, chunk by chunk, in order.

    Lazy: nothing is drawn, fitted or encoded before the first chunk is asked for. One
    ``generator`` seeds both the draws and the sampling noise. ``refine`` (``interpolate`` and
    ``input``): refinement steps at most of the encoded latents (0: the encoder's).

    Raises:
        SourceError: the source lacks what it needs (see :func:`drawer`, :func:`given_latents`).
    """
    if source not in SOURCES:
        raise SourceError(f"unknown latent source {source!r} (one of {', '.join(SOURCES)})")
    if source in DRAWN:
        draw = drawer(source, model, grammar, checkpoint, checkpoint_path, component, data, generator, progress)
        for decoded in decode_drawn(model, grammar, draw, n, mode, attempts, generator, batch_size, progress,
                                    constraints):
            yield SourceChunk(*_merge(decoded, None), decoded)
        return
    z, failures = given_latents(source, model, grammar, ends, steps, inputs, progress, refine)
    decoded = (gen.decode_latents(model, grammar, z, mode, attempts, generator, batch_size, progress=progress,
                                  constraints=constraints) if z is not None else gen.Decoded([], [], []))
    yield SourceChunk(*_merge(decoded, failures), decoded)


def _merge(decoded: gen.Decoded, failures: list[str | None] | None) -> tuple[list[str], list[str | None]]:
    """Output lines and reasons in input order: decoded results fill the parsed slots."""
    results = iter(zip(decoded, decoded.reasons))
    strings, reasons = [], []
    for fail in failures if failures is not None else [None] * len(decoded):
        s, why = (None, fail) if fail is not None else next(results)
        strings.append(s)
        reasons.append(why)
    return result_lines(strings, reasons), reasons
