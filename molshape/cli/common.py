"""Options and output conventions shared by every subcommand.

Conventions (see docs/failure-behaviour.md): with ``--json`` a command prints exactly one
JSON document on stdout; every file is written atomically (:mod:`molshape.core.atomic`); an
output equal to an input is refused; inputs are UTF-8 text.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import click

from molshape.core.runtime import json_safe
from molshape.grammar.cfg import GRAMMARS
from molshape.grammar.decoding import CONSTRAINTS

#: exit status: some input rows failed (parse, score, decode --input)
EXIT_ROWS_FAILED = 3


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
    """The given checkpoint, or the shipped default for ``grammar``; a usage error if neither."""
    if checkpoint is not None and not checkpoint.exists() and checkpoint.suffix == "" and len(checkpoint.parts) == 1:
        # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
        from molshape.pretrained import available, checkpoint_path

        if str(checkpoint) in available():  # a shipped model by name
            return checkpoint_path(str(checkpoint))
    if checkpoint is not None:
        if checkpoint.is_dir():
            raise click.BadParameter(f"{checkpoint} is a directory; give a checkpoint file such as "
                                     f"{checkpoint / 'best.pt'}", param_hint="--checkpoint")
        if not checkpoint.is_file():
            raise click.BadParameter(f"no such file: {checkpoint}", param_hint="--checkpoint")
        return checkpoint
    try:
        # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
        from molshape.pretrained import default_checkpoint

        return default_checkpoint(grammar)
    except (ImportError, FileNotFoundError, ValueError) as e:
        raise click.UsageError(f"--checkpoint is required: {e}") from e


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

    return write_text(out_dir / name, json.dumps({"argv": sys.argv, **params}, indent=2, default=_jsonable))


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
    if not p.is_file():
        raise click.BadParameter(f"no such file: {p}", param_hint=param_hint)
    return p


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
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise click.ClickException(f"{name}: not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}, "
                                   f"byte offset {e.start}); convert it to UTF-8") from None


def zlib_error() -> type[Exception]:
    import zlib

    return zlib.error


def guard_output(output: Path | None, inputs: list[Path | str | None], option: str = "-o") -> None:
    """Before any work: refuse an output that is one of the inputs (exit 2), and fail early
    (exit 1, naming the file) when it cannot be written."""
    if output is None:
        return
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.core.atomic import check_writable

    if output.is_dir():
        raise click.BadParameter(f"{output} is a directory; name a file", param_hint=option)
    for inp in inputs:
        if inp is None or str(inp) == "-":
            continue
        if _same_file(output, Path(inp)):
            raise click.BadParameter(f"{output} is also an input; write the output to another file",
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
