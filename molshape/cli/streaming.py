"""Big ``--n`` in ``decode`` and ``evaluate``: decode in chunks, count as you go, say the cost first.

Latents are drawn and decoded :data:`CHUNK` at a time, so memory does not grow with ``--n``
except for 9 bytes per valid result (a 64-bit hash of its canonical form and a novelty flag,
to count unique and novel results exactly up to hash collisions, about 1 in 10^9 at 10^5
results). Runs with ``--n`` up to :data:`CHUNK` draw every latent at once, exactly as before.
"""

from __future__ import annotations

import hashlib
import time
from array import array
from collections.abc import Callable, Iterable
from typing import Any

import click
import numpy as np

#: latents drawn and decoded per chunk
CHUNK = 50_000
#: runs at least this big get a cost estimate on stderr before they start
ESTIMATE_FROM = 20_000
#: latents decoded (with their own generator) to measure the speed for the estimate
PROBE = 64


def chunk_sizes(n: int, chunk: int | None = None) -> list[int]:
    """Sizes of the chunks ``n`` draws are split into (default :data:`CHUNK`)."""
    chunk = chunk or CHUNK
    return [min(chunk, n - i) for i in range(0, n, chunk)]


class Tally:
    """Counts of decoded results, fed chunk by chunk: valid, incomplete, unique and novel."""

    def __init__(self, key: Callable[[str], str], reference: set[str] | None = None) -> None:
        self.key = key
        self.reference = reference
        self.n = 0
        self.n_incomplete = 0
        self._hashes = array("Q")
        self._novel = array("b")

    def add(self, strings: Iterable[str | None], reasons: Iterable[str | None]) -> None:
        """Count one chunk (``strings``: None for failures; ``reasons``: None when valid)."""
        for s, why in zip(strings, reasons):
            self.n += 1
            self.n_incomplete += why == "incomplete"
            if s is None:
                continue
            form = self.key(s)
            self._hashes.append(int.from_bytes(hashlib.blake2b(form.encode(), digest_size=8).digest(), "little"))
            self._novel.append(self.reference is not None and form not in self.reference)

    @property
    def n_valid(self) -> int:
        return len(self._hashes)

    def metrics(self) -> dict[str, Any]:
        """The fields of :func:`molshape.gvae.metrics.sample_metrics` (novelty with a reference)."""
        hashes = np.frombuffer(self._hashes, dtype=np.uint64) if self.n_valid else np.zeros(0, np.uint64)
        unique, first = np.unique(hashes, return_index=True)
        n_unique = len(unique)
        out: dict[str, Any] = {
            "n_samples": self.n, "n_valid": self.n_valid, "n_unique": n_unique,
            "validity": self.n_valid / self.n if self.n else float("nan"),
            "uniqueness": n_unique / self.n_valid if self.n_valid else float("nan"),
        }
        if self.reference is not None:
            novel = np.frombuffer(self._novel, dtype=np.int8)[first] if n_unique else np.zeros(0, np.int8)
            out["n_novel"] = int(novel.sum())
            out["novelty"] = out["n_novel"] / n_unique if n_unique else float("nan")
        return out


def announce(model: Any, grammar: Any, n: int, attempts: int, batch_size: int, mode: str,
             where: str, probe: Callable[[int], float] | None = None) -> dict[str, float] | None:
    """For a run of ``n`` decodes (``>= ESTIMATE_FROM``): print its expected time and memory on stderr.

    Args:
        probe: ``m -> seconds`` to decode ``m`` latents; measures the speed on this machine.
        where: where the results go (said in the message).

    Returns:
        the estimate (``seconds``, ``memory_mb``), or None for small runs.
    """
    if n < ESTIMATE_FROM:
        return None
    per = probe(PROBE) / PROBE if probe is not None else float("nan")
    seconds = per * n * attempts
    memory_mb = _memory_mb(model, grammar, min(n, CHUNK), attempts, batch_size, n)
    took = _duration(seconds) if seconds == seconds else "unknown"
    click.echo(f"{n:,} latents ({mode}, {attempts} attempt(s) each) in chunks of {min(n, CHUNK):,}: "
               f"expected time {took} (measured on {PROBE} latents), memory about {memory_mb:,.0f} MB; "
               f"results go to {where} chunk by chunk", err=True)
    return {"seconds": seconds, "memory_mb": memory_mb}


def _memory_mb(model: Any, grammar: Any, chunk: int, attempts: int, batch_size: int, n: int) -> float:
    """Rough peak working set: latents and strings of one chunk, one decode batch, the hashes."""
    d = int(getattr(model.config, "latent_dim", 64))
    latents = chunk * attempts * d * 4
    strings = chunk * attempts * (grammar.max_length + 120)  # raw + judged strings of a chunk
    batch = batch_size * grammar.max_length * (grammar.n_productions * 4 + 16)
    hashes = n * 9
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return (latents + strings + batch + hashes + params) / 2**20


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def timed(fn: Callable[[], Any]) -> float:
    """Seconds ``fn()`` takes."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
