"""Where a screen's tasks run: in this process, or on a Dask distributed cluster.

Both engines run the same task functions and yield each task's result as it finishes; the
results (files on disk) do not depend on the engine. The Dask engine connects to a running
scheduler (``tcp://host:8786``) or starts a local cluster of ``workers`` single-threaded
processes; it keeps a bounded number of tasks in flight, so the scheduler's memory does not
grow with the run. A worker that dies mid-task has its task re-run elsewhere by Dask (up to
``distributed.scheduler.allowed-failures`` times).
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from molshape.core.runtime import human_duration


class EngineError(ValueError):
    """The engine asked for cannot be used (Dask missing, scheduler unreachable): a usage error.

    Attributes:
        option: the option at fault (``--scheduler`` / ``--workers``).
    """

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


#: the extra that brings Dask (and pyarrow)
EXTRA = "pip install 'molshape[dask]'"


class InProcess:
    """Runs tasks one after another in this process."""

    cores = 1
    dashboard: str | None = None

    def describe(self) -> str:
        return "in-process"

    def map(self, fn: Callable[..., Any], tasks: Iterable[tuple], names: Iterable[str] | None = None) -> Iterator[Any]:
        for args in tasks:
            yield fn(*args)

    def close(self) -> None:
        pass


class DaskEngine:
    """Runs tasks on a Dask distributed cluster (connect to ``scheduler``, an address or a scheduler
    file ``*.json``, or start ``workers`` local processes).

    Raises:
        EngineError: Dask is not installed, or the scheduler cannot be reached.
    """

    def __init__(self, scheduler: str | None = None, workers: int | None = None, connect_timeout: float = 10.0) -> None:
        option = "--scheduler" if scheduler else "--workers"
        if importlib.util.find_spec("distributed") is None:
            raise EngineError(f"{option} needs Dask distributed, which is not installed; {EXTRA}", option)
        from distributed import Client, LocalCluster  # optional dependency: the dask extra

        self.cluster = None
        self._where = scheduler
        try:
            if scheduler and scheduler.endswith(".json"):  # `dask scheduler --scheduler-file F` (SLURM recipes)
                if not Path(scheduler).is_file():
                    raise EngineError(f"no such scheduler file: {scheduler}", option)
                self.client = Client(scheduler_file=scheduler, timeout=connect_timeout)
            elif scheduler:
                self.client = Client(scheduler, timeout=connect_timeout)
            else:
                has_bokeh = importlib.util.find_spec("bokeh") is not None
                with warnings.catch_warnings():  # another cluster's dashboard port: Dask takes a free one
                    warnings.filterwarnings("ignore", message="Port .* is already in use")
                    self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                dashboard_address=":0" if has_bokeh else None,
                                                silence_logs=logging.ERROR)
                self.client = Client(self.cluster)
        except (OSError, TimeoutError) as e:
            if self.cluster is not None:
                self.cluster.close()
            raise EngineError(f"cannot reach the Dask scheduler at {scheduler} ({_first_line(e)})", option) from None
        self.cores = max(1, sum(self.client.nthreads().values()))
        self.dashboard = self.client.dashboard_link if (scheduler or self.cluster.dashboard_link) else None

    def describe(self) -> str:
        n = len(self.client.nthreads())
        where = f"Dask scheduler {self._where}" if self._where else "a local Dask cluster"
        return f"{where} ({n} worker(s), {self.cores} thread(s))"

    def map(self, fn: Callable[..., Any], tasks: Iterable[tuple], names: Iterable[str] | None = None) -> Iterator[Any]:
        """Submit ``fn(*args)`` per task, at most a few per core in flight; yield results as they finish."""
        from distributed import as_completed  # optional dependency: the dask extra

        window = max(16, 4 * self.cores)
        pending = iter(zip(tasks, names) if names is not None else ((t, None) for t in tasks))
        running = as_completed()

        def submit_next() -> bool:
            item = next(pending, None)
            if item is None:
                return False
            args, key = item
            running.add(self.client.submit(fn, *args, key=key, pure=False, retries=0))
            return True

        for _ in range(window):
            if not submit_next():
                break
        for future in running:
            result = future.result()  # a task's own error (or too many dead workers) stops the run
            future.release()
            submit_next()
            yield result

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def expected_line(n: int, unit: str, chunks: int, chunk_size: int, engine: InProcess | DaskEngine,
                  seconds: float, where: str, measured: str) -> str:
    """The line a run prints before its work: what runs where, its expected time, where results go.

    Args:
        n / unit: the items to run and what they are (``latents``, ``rows``).
        seconds: the expected wall time (already divided among the engine's cores).
        measured: what the time was measured on (``64 latents here``).
    """
    on = "in this process" if isinstance(engine, InProcess) else f"on {engine.describe()}"
    return (f"{n:,} {unit} in {chunks:,} chunk(s) of {chunk_size:,} {on}: expected time "
            f"{human_duration(seconds)} (measured on {measured}); results go to {where}"
            + (f"; dashboard {engine.dashboard}" if engine.dashboard else ""))


def ordered(engine: InProcess | DaskEngine, fn: Callable[..., Any], tasks: Iterable[tuple],
            names: Iterable[str] | None = None) -> Iterator[Any]:
    """``fn(*args)`` per task like ``engine.map``, but yielded in the order of ``tasks``.

    Results that finish early wait in memory for their turn: at most the tasks in flight
    (the engine's window), so memory does not grow with the run.
    """
    waiting: dict[int, Any] = {}
    turn = 0
    for position, result in engine.map(_numbered, ((fn, i, args) for i, args in enumerate(tasks)), names):
        waiting[position] = result
        while turn in waiting:
            yield waiting.pop(turn)
            turn += 1


def _numbered(fn: Callable[..., Any], position: int, args: tuple) -> tuple[int, Any]:
    return position, fn(*args)


def open_engine(scheduler: str | None = None, workers: int | None = None) -> InProcess | DaskEngine:
    """The in-process engine, or a Dask one when ``scheduler`` or ``workers`` is given."""
    if scheduler is None and workers is None:
        return InProcess()
    return DaskEngine(scheduler, workers)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
