"""The folder of a BO run: one writer at a time, resumed only by the same run, its settings
recorded in ``config.json``.

:func:`run_folder` locks the folder (:class:`~molshape.core.rundir.RunLock`), refuses one
that holds other files or a run with other settings, and records the settings: a fresh
run before it starts, a resumed one only once it finished (a refused or failed resume
leaves the folder's record as it was). :func:`fresh_folder` does the same for a search,
which does not resume: it refuses any non-empty folder. ``molshape optimize`` and
:func:`molshape.optimize` both go through them.

Example:
    >>> with run_folder(out, {"target": "logp", "optimize": cfg.to_dict()}) as resuming:  # doctest: +SKIP
    ...     summary = run_bo(problem, cfg, out)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from molshape.core.atomic import write_json
from molshape.core.errors import MolshapeError, OutputRefused
from molshape.core.rundir import RunLock, leftovers

CONFIG_NAME = "config.json"
#: protocol settings a resumed run may change (seeds and iterations may grow)
RESUME_FREE = ("seeds", "seed", "iterations")
#: config entries that say how a run was started, not what it computes
HOW_IT_RAN = ("argv", "command", "api", "device", "workers", "smoke")


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a run config that must match to resume, as plain JSON values."""
    plain = json.loads(json.dumps(config, default=str))
    for key in HOW_IT_RAN:
        plain.pop(key, None)
    plain["optimize"] = {k: v for k, v in plain.get("optimize", {}).items() if k not in RESUME_FREE}
    # runs written before the realism gate scored every decode: what --allow-unrealistic does now
    plain.setdefault("realism_gate", False)
    for key in ("checkpoint", "data"):  # the same file, however it was spelled
        if plain.get(key):
            plain[key] = os.path.realpath(plain[key])
    return plain


def check_resume(out: Path, config: dict[str, Any]) -> bool:
    """Whether ``out`` holds a run to resume (``False``: empty or missing).

    Raises:
        OutputRefused: ``out`` holds other files, or a run with other settings (named).
        MolshapeError: its ``config.json`` is not readable JSON.
    """
    out = Path(out)
    if not leftovers(out):
        return False
    previous_path = out / CONFIG_NAME
    if not previous_path.is_file():
        raise OutputRefused(f"{out} holds files but no optimize run (no {CONFIG_NAME}); choose another --out")
    try:
        previous = json.loads(previous_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise MolshapeError(f"{previous_path}: not a readable run config ({e})") from None
    old, new = comparable(previous), comparable(config)
    differ = [k for k in sorted(set(old) | set(new)) if k != "optimize" and old.get(k) != new.get(k)]
    differ += [f"optimize.{k}" for k in sorted(set(old["optimize"]) | set(new["optimize"]))
               if old["optimize"].get(k) != new["optimize"].get(k)]
    if differ:
        raise OutputRefused(f"{out} holds a run with other settings ({', '.join(differ[:6])}); pass the same "
                            "options to resume it, or choose another --out")
    return True


def write_config(out: Path, config: dict[str, Any]) -> Path:
    """Record ``config`` as ``out/config.json`` (atomically; paths as strings)."""
    return write_json(Path(out) / CONFIG_NAME, config, default=str)


@contextmanager
def run_folder(out: str | Path, config: dict[str, Any]) -> Iterator[bool]:
    """Hold ``out`` for one run of ``config``; yields whether the run resumes one found there.

    Raises:
        RunLocked: another process is writing to ``out``.
        OutputRefused: see :func:`check_resume`.
    """
    out = Path(out)
    with RunLock(out):
        resuming = check_resume(out, config)
        if not resuming:  # a fresh run records its config first; a resumed one only once it succeeded
            write_config(out, config)
        yield resuming
        if resuming:
            write_config(out, config)


@contextmanager
def fresh_folder(out: str | Path, config: dict[str, Any]) -> Iterator[None]:
    """Hold an empty (or new) ``out`` for one run of ``config``, recorded first as ``config.json``.

    Raises:
        RunLocked: another process is writing to ``out``.
        OutputRefused: ``out`` is not empty.
    """
    out = Path(out)
    with RunLock(out):
        if leftovers(out):
            raise OutputRefused(f"{out} is not empty; a constrained search writes a fresh folder: choose another --out")
        write_config(out, config)
        yield
