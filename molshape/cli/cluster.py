"""What the chunked commands (``screen``, ``decode --n``, ``score --input``) share: the Dask
options, quiet Dask logs, and one sentence (with the README's exit code) for each engine failure."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterator

import click

scheduler_option = click.option(
    "--scheduler", default=None, metavar="ADDRESS",
    help="Dask scheduler to run on: tcp://host:8786, or the file of `dask scheduler --scheduler-file F.json`; "
         "needs molshape[dask].")


def dask_workers_option(f):
    """``--workers N``: a local Dask cluster (``screen``, ``decode``)."""
    return click.option("--workers", type=click.IntRange(min=1), default=None,
                        help="Start a local Dask cluster of N single-threaded worker processes; needs "
                             "molshape[dask].")(f)


def chunk_size_option(default: int, what: str):
    """``--chunk-size`` with its default and what a chunk holds."""
    return click.option("--chunk-size", default=default, show_default=True, type=click.IntRange(min=1), help=what)


def check_engine(scheduler: str | None, workers: int | None) -> None:
    """Refuse ``--scheduler`` with ``--workers`` (exit 2) and keep Dask's per-worker INFO lines for -vv."""
    if scheduler and workers:
        raise click.UsageError("--scheduler and --workers exclude each other (--workers starts a local cluster)")
    quiet = logging.getLogger().level > logging.DEBUG
    if (scheduler or workers) and quiet and importlib.util.find_spec("distributed") is not None:
        import distributed  # noqa: F401 (importing it sets its loggers' levels: quieten them after that)

        logging.getLogger("distributed").setLevel(logging.WARNING)


@contextlib.contextmanager
def engine_failures(kept: str | None) -> Iterator[None]:
    """Around a chunked run: a usage error of the library (an ``option`` attribute: Dask missing,
    an unreachable scheduler, a partial output of another run, ...) exits 2 naming the option;
    Dask workers dying too often exits 1 saying that ``kept`` holds the finished chunks (if any)."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.screening.engine import EngineError
    from molshape.screening.partial import ResumeError
    from molshape.screening.run import ScreenError

    try:
        yield
    except (EngineError, ResumeError, ScreenError) as e:
        option = getattr(e, "option", None)
        raise (click.BadParameter(str(e), param_hint=option) if option else click.UsageError(str(e))) from None
    except Exception as e:
        if type(e).__name__ != "KilledWorker":  # Dask's: a task killed every worker that ran it
            raise
        then = (f"the finished chunks are kept in {kept}: fix the cause and run again with --resume" if kept
                else "fix the cause and run again")
        raise click.ClickException(f"Dask workers died running a chunk too often ({' '.join(str(e).split())}); "
                                   + then) from None
