"""Options and output conventions shared by every subcommand.

Conventions (see docs/failure-behaviour.md): with ``--json`` a command prints exactly one
JSON document on stdout; every file is written atomically (:mod:`molshape.core.atomic`); an
output equal to an input is refused; inputs are UTF-8 text.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable

import click

from molshape.core.runtime import clip, json_safe  # noqa: F401 (clip: the commands' summaries)
from molshape.grammar.cfg import GRAMMARS
from molshape.grammar.decoding import CONSTRAINTS

#: exit status: some input rows failed (parse, score, decode --input)
EXIT_ROWS_FAILED = 3


class FiniteFloat(click.FloatRange):
    """A float option that refuses NaN and infinity (exit 2), within optional bounds.

    ``click.FloatRange`` lets ``nan`` through every bound (each comparison with NaN is
    false) and ``inf`` through any lower bound; every float option of every command uses
    this type instead.
    """

    name = "float"

    def convert(self, value, param, ctx):  # noqa: ANN001 - click's signature
        number = click.FLOAT.convert(value, param, ctx)  # "'abc' is not a valid float."
        low = self.min is None or number > self.min or (number == self.min and not self.min_open)
        high = self.max is None or number < self.max or (number == self.max and not self.max_open)
        if not (math.isfinite(number) and low and high):
            self.fail(f"must be a finite number{self._bounds()}, got {value}", param, ctx)
        return number

    def _bounds(self) -> str:
        parts = [f"{op} {bound:g}" for bound, op in ((self.min, ">" if self.min_open else ">="),
                                                     (self.max, "<" if self.max_open else "<=")) if bound is not None]
        return (" " + " and ".join(parts)) if parts else ""


def cap_workers(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """Click callback for ``--workers``: at least 1; more than the machine's cores only slows every
    process down, so such a value is lowered to the core count, saying so on stderr."""
    if value is None:
        return None
    if value < 1:
        raise click.BadParameter(f"must be at least 1, got {value}")
    cores = os.cpu_count() or 1
    if value > cores:
        click.echo(f"--workers {value} is more than the {cores} cores here; using {cores}", err=True)
        return cores
    return value


def _check_device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Refuse an unknown or absent device at once (exit 2), before any work."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.core.runtime import resolve_device

    try:
        resolve_device(value)
    except ValueError as e:
        raise click.BadParameter(str(e).removeprefix("--device "), param_hint="--device") from None
    return value


device_option = click.option(
    "--device", default="auto", show_default=True, callback=_check_device,
    help="auto (CUDA when present, else CPU), cpu, cuda, cuda:1, ...")
json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print exactly one JSON document on stdout (and nothing else there).")
seed_option = click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")


def checkpoint_option(f):
    """``--checkpoint`` plus ``--grammar``, which picks a shipped model when none is given."""
    f = click.option("--grammar", type=click.Choice(GRAMMARS), default="smiles_kekule", show_default=True,
                     help="Grammar of the shipped model used when --checkpoint is not given: smiles_kekule "
                          "(Kekulé SMILES with semantic decoding: zinc-kekule-gmm-cpu), smiles (GVAE's SMILES "
                          "grammar: zinc-gmm-cpu) or expr; with --checkpoint, the checkpoint's grammar must be "
                          "this one when given.")(f)
    return click.option("--checkpoint", "checkpoint", type=click.Path(path_type=Path), default=None,
                        help="Trained model (best.pt / last.pt) or the name of a shipped model "
                             "(zinc-kekule-gmm-cpu, zinc-gmm-cpu, expr-gmm-cpu). Default: the shipped model "
                             "for --grammar.")(f)


def check_constraints(grammar, constraints: str) -> None:
    """Refuse ``--constraints semantic`` for a model whose grammar has none (exit 2)."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.grammar.semantics import semantics_for

    if constraints == "semantic" and semantics_for(grammar) is None:
        raise click.BadParameter(f"the model's grammar {grammar.name!r} has no semantic constraints; use "
                                 "--constraints grammar or a Kekulé-SMILES model (zinc-kekule-gmm-cpu)",
                                 param_hint="--constraints")


def constraints_option(f):
    """``--constraints``: how decoded derivations are restricted (see molshape.grammar.decoding.make_decoder)."""
    return click.option(
        "--constraints", type=click.Choice(CONSTRAINTS), default="auto", show_default=True,
        help="semantic: valence, ring-bond and length bookkeeping, so every complete decode is a valid "
             "molecule (Kekulé-SMILES models); grammar: GVAE's grammar masks only; auto: semantic wherever "
             "the model's grammar supports it.")(f)


threads_option = click.option("--threads", type=click.IntRange(min=1), default=None,
                              help="CPU threads for torch (1 is best on a busy machine).")


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def resolve_checkpoint(checkpoint: Path | None, grammar: str) -> Path:
    """The checkpoint ``--checkpoint`` names (a file, a shipped model or an alias, resolved by
    :func:`molshape.api.resolve_model`), or the shipped default for ``grammar``.

    Raises:
        click.BadParameter: no such checkpoint (exit 2). click.UsageError: no shipped default.
    """
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.api import resolve_model
    from molshape.pretrained import default_checkpoint

    if checkpoint is None:
        try:
            return default_checkpoint(grammar)
        except (FileNotFoundError, ValueError) as e:
            raise click.UsageError(f"--checkpoint is required: {e}") from e
    try:
        return resolve_model(checkpoint)
    except FileNotFoundError as e:
        raise click.BadParameter(str(e), param_hint="--checkpoint") from None


def emit_summary(summary: dict[str, Any], as_json: bool, human: Callable[[dict[str, Any]], str] | None = None) -> None:
    """Print ``summary`` as one JSON object on stdout (``--json``) or as readable lines on stderr."""
    if as_json:
        click.echo(json.dumps(json_safe(summary), indent=2, default=_jsonable, allow_nan=False))
    else:
        text = human(summary) if human else "\n".join(f"{k}: {v}" for k, v in summary.items())
        click.echo(text, err=True)


def write_run_config(out_dir: Path, params: dict[str, Any], name: str = "config.json") -> Path:
    """Record the command's resolved parameters next to its outputs (atomically)."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.core.atomic import write_text

    ctx = click.get_current_context(silent=True)
    command = {"command": ctx.command.name} if ctx is not None and "command" not in params else {}
    return write_text(out_dir / name, json.dumps({"argv": sys.argv, **command, **params}, indent=2,
                                                 default=_jsonable))


def _jsonable(x: Any) -> Any:
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "item"):
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def resolve_preset(preset: str, device: str) -> str:
    """``auto`` -> ``paper`` on CUDA, ``cpu`` otherwise: one code path, sized for the device."""
    if preset != "auto":
        return preset
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.core.runtime import resolve_device

    try:
        return "paper" if resolve_device(device).type == "cuda" else "cpu"
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--device") from e


def inference_options(f):
    """``--seed --device --threads --json``: the options every command that runs a trained model takes."""
    for option in (json_option, threads_option, device_option, seed_option):
        f = option(f)
    return f


# -- inputs and outputs -------------------------------------------------------------------
def _input_path(path: str | os.PathLike, param_hint: str) -> Path | None:
    """``None`` for stdin (``-``); else the path, after refusing a missing file or a folder (exit 2)."""
    if str(path) == "-":
        return None
    p = Path(path)
    if p.is_dir():
        raise click.BadParameter(f"{p} is a directory, not a file", param_hint=param_hint)
    if not p.exists():
        raise click.BadParameter(f"no such file: {p}", param_hint=param_hint)
    return p  # a regular file, or a FIFO / process substitution (read once, like stdin)


def read_text(path: str | os.PathLike, param_hint: str) -> str:
    """The whole of an input (``-`` = stdin, ``.gz`` = gzip) as strict UTF-8 text.

    Raises:
        click.BadParameter: no such file, or a folder (exit 2).
        click.ClickException: not UTF-8 or a broken gzip file, naming the file, line and byte.
    """
    p = _input_path(path, param_hint)
    name = "standard input" if p is None else str(p)
    try:
        if p is None:
            data = sys.stdin.buffer.read()
        elif p.suffix == ".gz":
            with gzip.open(p, "rb") as f:
                data = f.read()
        else:
            data = p.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib_error()) as e:
        raise click.ClickException(f"{name}: not a readable gzip file ({e})") from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark is not part of line 1
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise click.ClickException(f"{name}: not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}, "
                                   f"byte offset {e.start}); convert it to UTF-8") from None


def read_lines(path: str | os.PathLike, param_hint: str) -> tuple[list[str], int]:
    """The lines of an input (see :func:`read_text`) and the file line number of the first.

    A header line (``smiles``, ``expression`` or ``string`` alone, any case) is skipped
    (the first line returned is then line 2), as the data loader skips it: every command
    reads the same file the same way.
    """
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.data.records import HEADERS

    lines = read_text(path, param_hint).splitlines()
    if lines and lines[0].strip().lower() in HEADERS:
        return lines[1:], 2
    return lines, 1


def zlib_error() -> type[Exception]:
    import zlib

    return zlib.error


def guard_output(output: Path | None, inputs: list[Path | str | None], option: str = "-o",
                 side: tuple[str, ...] = ()) -> None:
    """Before any work: refuse (exit 2) an output that is one of the inputs or not a regular
    file (a device, FIFO, socket or folder), and fail early (exit 1, naming the file) when it
    cannot be written.

    The files written beside it (``<output><suffix>`` for each of ``side``, e.g. ``.partial``
    for streamed outputs) obey the same rules. Settings are not written beside an output; they
    go in the command's ``--json`` summary.
    """
    if output is None:
        return
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.core.atomic import check_regular, check_writable
    from molshape.core.errors import OutputRefused

    if output.is_dir():
        raise click.BadParameter(f"{output} is a directory; name a file", param_hint=option)
    paths = [output, *(output.with_name(output.name + suffix) for suffix in side)]
    for path in paths:
        try:
            check_regular(path)
        except OutputRefused as e:
            raise click.BadParameter(str(e), param_hint=option) from None
        for inp in inputs:
            if inp is not None and str(inp) != "-" and _same_file(path, Path(inp)):
                what = "" if path == output else f" (written beside {output})"
                raise click.BadParameter(f"{path}{what} is also an input; write the output to another file",
                                         param_hint=option)
    check_writable(output)


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)  # also catches hard and symbolic links
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_out_dir(out_dir: Path) -> None:
    """Fail early when an output folder cannot be written (a file there, read-only, /proc)."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.core.atomic import check_writable

    if out_dir.exists() and not out_dir.is_dir():
        raise click.BadParameter(f"{out_dir} is a file, not a folder", param_hint="--out")
    check_writable(out_dir / ".write-test")


# -- models --------------------------------------------------------------------------------
def load_run_model(checkpoint: Path | None, grammar: str, device: str, threads: int | None):
    """Set threads, resolve the checkpoint (shipped default) and device, and load the model.

    The checkpoint is checked (a molshape model checkpoint, known format, its grammar file
    unchanged) before it is used; ``--grammar`` given with ``--checkpoint`` must match it.

    Returns:
        ``(checkpoint path, device, model, grammar, checkpoint dict)``.
    """
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.api import GrammarMismatch, open_model
    from molshape.core.runtime import resolve_device

    set_threads(threads)
    path = resolve_checkpoint(checkpoint, grammar)
    try:
        dev = resolve_device(device)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--device") from e
    try:
        model, g, ckpt = open_model(path, dev, grammar if checkpoint is not None and _given("grammar") else None)
    except GrammarMismatch as e:
        raise click.BadParameter(f"{e}; drop --grammar or pass a matching checkpoint", param_hint="--grammar") from None
    return path, dev, model, g, ckpt


def _given(name: str) -> bool:
    """Whether option ``name`` was typed on the command line (not a default)."""
    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
