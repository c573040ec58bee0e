"""Device choice, seeding and cache folders: the few facts every command shares."""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; else ``cpu``, ``cuda[:N]`` or ``mps``.

    Raises:
        ValueError: one sentence naming the option, for a name torch does not know or a
            device this machine lacks.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):  # torch's message lists every backend it was built with
        raise ValueError(f"--device {device}: not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {device}: molshape runs on cpu, cuda or mps")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine; use --device cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: MPS is not available on this machine; use --device cpu or auto")
    return dev


def cpu_bf16_supported() -> bool:
    """Whether this CPU does bfloat16 arithmetic natively (AVX512-BF16 or AMX).

    Without it, bf16 autocast falls back to scalar matrix products: on an AVX2-only CPU the
    Kekulé preset trained 16 times slower than in float32 (5.6 against 93 molecules/s).
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return False


def init_pool_worker(threads: int = 1) -> None:
    """Initializer of a forked pool worker: ``threads`` torch threads and default signals.

    A forked OpenMP pool is unusable, so each worker gets its own small one. A worker inherits
    the parent's signal handlers: the CLI's SIGTERM handler would make every worker print a
    KeyboardInterrupt traceback when its pool shuts down, and Ctrl-C is the parent's to handle.
    """
    torch.set_num_threads(threads)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a CPU generator seeded the same way.

    For entry points (the CLI); library code uses :func:`seeded_globally` or a generator.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def seeded_globally(seed: int) -> Iterator[torch.Generator]:
    """Seed python, numpy and torch for the block, and give the caller's generator states back after it.

    For work that draws from the global generators and takes no generator (torch's weight
    initialisation, dropout): it runs as under :func:`seed_everything`, and the caller's
    random streams are as they were. Yields a CPU generator seeded with ``seed``.
    """
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield seed_everything(seed)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def cache_dir() -> Path:
    """Where large prepared data (parsed ZINC, downloads, encoded latents) lives.

    ``MOLSHAPE_CACHE_DIR`` overrides the per-user cache folder; never inside the repository.
    A folder that cannot be written is replaced by ``<tmp>/molshape-cache-<uid>``, with a warning.
    """
    env = os.environ.get("MOLSHAPE_CACHE_DIR")
    if env:
        path = Path(env).expanduser()
    else:
        from platformdirs import user_cache_dir

        path = Path(user_cache_dir("molshape"))
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(13, "not writable")
    except OSError as e:
        return _fallback_cache(path, e)
    return path


def _fallback_cache(path: Path, e: OSError) -> Path:
    """A per-user temp folder when the cache folder cannot be written (said once per process)."""
    import logging
    import tempfile

    fallback = Path(tempfile.gettempdir()) / f"molshape-cache-{os.getuid()}"
    fallback.mkdir(mode=0o700, parents=True, exist_ok=True)
    if fallback not in _WARNED:
        _WARNED.add(fallback)
        logging.getLogger(__name__).warning("cache folder %s cannot be written (%s); caching in %s instead (set "
                                            "MOLSHAPE_CACHE_DIR to choose)", path, e.strerror or e, fallback)
    return fallback


_WARNED: set[Path] = set()


def json_safe(x: Any) -> Any:
    """``x`` with non-finite floats replaced by ``None`` (NaN is not JSON)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def clip(s: str, n: int = 200) -> str:
    """A long input shortened for a summary (the output files keep it whole)."""
    return s if len(s) <= n else f"{s[:n]}... ({len(s):,} characters)"


def human_duration(seconds: float) -> str:
    """``42 s``, ``17 min`` or ``3.2 h``: an expected run time as a person reads it."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# -- seed mixing: how one --seed becomes the seeds of a run's random streams ----------------
#: batch order of epoch ``e`` of a training run: ``seed * EPOCH_STRIDE + e`` (a prime stride)
EPOCH_STRIDE = 1_000_003
#: iteration ``it`` of BO seed ``s``: ``s * BO_STRIDE + it``
BO_STRIDE = 100_003
#: epoch ``e`` of an image classifier: ``seed * CLASSIFIER_STRIDE + e``
CLASSIFIER_STRIDE = 1000
#: the fixed validation batches of grammar training (the same buckets every epoch)
VALID_BATCH_SEED = 12345
#: ``seed + PROBE_SEED_OFFSET``: latents that time decoding for a big run's cost estimate
PROBE_SEED_OFFSET = 1
#: ``seed + EXPOST_SEED_OFFSET``: the image evaluation's ex-post GMM samples
EXPOST_SEED_OFFSET = 2
