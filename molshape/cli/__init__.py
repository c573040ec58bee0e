"""The ``molshape`` command line: a thin click group that loads each subcommand lazily.

Each subcommand lives in ``molshape/cli/<name>.py`` as a click command named
``command``: it parses and validates, writes its config next to its outputs, and calls
one library function. Lazy loading keeps ``molshape --help`` fast (no torch/RDKit import).

Error boundary (:meth:`LazyGroup.invoke`): an ``OSError``, ``UnicodeDecodeError``,
``ValueError`` or checkpoint error escaping a command is printed as one line naming the
file and the reason, with exit status 1 (an output refused by the output rules,
:class:`~molshape.core.errors.OutputRefused`: exit status 2, a usage error);
``molshape --debug ...`` shows the traceback.
"""

from __future__ import annotations

import errno
import gzip
import importlib
import logging
import signal
import threading
import warnings
import zlib

import click

from molshape.core.errors import OutputRefused  # a tiny module: no cost to start-up

#: subcommand -> (module, one-line help shown by ``molshape --help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "parse": ("molshape.cli.parse", "Parse strings into grammar production sequences (JSON Lines)."),
    "data": ("molshape.cli.data", "Download, locate and describe data sets."),
    "train": ("molshape.cli.train", "Train a grammar autoencoder (gmm, vae, rae, ae)."),
    "decode": ("molshape.cli.decode", "Sample latents and decode them to molecules or expressions."),
    "encode": ("molshape.cli.encode", "Encode molecules or expressions of a file to latents (.npy, .csv, .parquet)."),
    "evaluate": ("molshape.cli.evaluate", "Reconstruction and generation metrics of a checkpoint."),
    "score": ("molshape.cli.score", "Score molecules (penalized logP, QED) or expressions."),
    "optimize": ("molshape.cli.optimize", "Bayesian optimisation in the latent space."),
    "screen": ("molshape.cli.screen", "Generate, deduplicate, score and filter a library (in-process or Dask)."),
    "images": ("molshape.cli.images", "Image benchmarks (MNIST, Fashion-MNIST, SVHN, CelebA)."),
}


class UsageFailure(click.ClickException):
    """One ``Error:`` line with exit status 2 (a usage error), without click's usage banner."""

    exit_code = 2


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when invoked, behind one error boundary."""

    def main(self, *args, **kwargs):  # noqa: ANN002, ANN003 - click's signature
        _terminate_cleanly()  # first of all: a SIGTERM during the slow imports unwinds too
        return super().main(*args, **kwargs)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(COMMANDS[name][0])
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        """Run the subcommand; an expected failure becomes one sentence and exit 1 (see :func:`failure`)."""
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as e:
            if ctx.params.get("debug"):
                raise
            message = failure(e)
            if message is None:  # a bug, not a user's mistake: keep the traceback
                raise
            raise (UsageFailure if isinstance(e, OutputRefused) else click.ClickException)(message) from None


def failure(e: BaseException) -> str | None:
    """One line naming the file and the reason for an expected failure; ``None`` for a bug.

    Expected: files that cannot be read or written (``OSError``), text that is not UTF-8,
    checkpoints that are not molshape checkpoints, and bad values (``ValueError``).
    """
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.core.checkpoint import CheckpointError

    if isinstance(e, CheckpointError):
        text = str(e)
    elif isinstance(e, (EOFError, zlib.error, gzip.BadGzipFile)):  # a truncated or corrupt .gz
        text = f"a compressed input is truncated or corrupt ({e or type(e).__name__}); check the .gz file"
    elif isinstance(e, UnicodeDecodeError):
        text = f"input is not UTF-8 text ({e.reason} at byte offset {e.start}); convert it to UTF-8"
    elif isinstance(e, OSError):
        text = _os_error(e)
    elif isinstance(e, (ValueError, RecursionError, MemoryError)):
        text = str(e) or type(e).__name__
    else:
        return None
    return " ".join(text.split())  # one line, whatever the message held


def _os_error(e: OSError) -> str:
    reason = e.strerror or str(e) or type(e).__name__
    if e.errno == errno.ENOSPC:
        reason += "; nothing was replaced (free some space and run again)"
    elif e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        reason += "; write somewhere else (e.g. -o / --out in a folder you own)"
    if e.filename is not None:
        target = f"{e.filename} -> {e.filename2}" if e.filename2 is not None else f"{e.filename}"
        return f"{target}: {reason}"
    return reason


def _terminate_cleanly() -> None:
    """Make SIGTERM (``kill``, a job scheduler's stop) unwind like Ctrl-C, so temp files are
    removed and streamed outputs keep their finished chunks, instead of dying on the spot."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """molshape's own warnings as one ``Warning:`` line on stderr (without the source line)."""
    if category.__module__.startswith("molshape"):
        click.echo(f"Warning: {message}", err=True)
    else:
        _default_show(message, category, filename, lineno, file, line)


_default_show = warnings.showwarning


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Exit status: 0 ok, 1 error (one line on stderr), 2 usage error, 3 some input rows failed.")
@click.version_option(package_name="molshape")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error instead of one line.")
def main(verbose: int, debug: bool) -> None:
    """molshape: grammar autoencoders with Gaussian-mixture-shaped latent spaces."""
    warnings.showwarning = _show_warning
    level = logging.WARNING - 10 * min(verbose + 1, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


if __name__ == "__main__":
    main()
