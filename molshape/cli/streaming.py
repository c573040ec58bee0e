"""Big ``--n`` in ``decode`` and ``evaluate``: say the cost first.

The library decodes such runs in chunks and counts as it goes (:mod:`molshape.gvae.tally`);
this module prints, on stderr, the expected time and memory of a run before it starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click

from molshape.core.runtime import human_duration
from molshape.gvae import tally

#: runs at least this big get a cost estimate on stderr before they start
ESTIMATE_FROM = 20_000
#: latents decoded (with their own generator) to measure the speed for the estimate
PROBE = 64


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
    mb = memory_mb(model, grammar, min(n, tally.CHUNK), attempts, batch_size, n)
    took = human_duration(seconds) if seconds == seconds else "unknown"
    click.echo(f"{n:,} latents ({mode}, {attempts} attempt(s) each) in chunks of {min(n, tally.CHUNK):,}: "
               f"expected time {took} (measured on {PROBE} latents), memory about {mb:,.0f} MB; "
               f"results go to {where} chunk by chunk", err=True)
    return {"seconds": seconds, "memory_mb": mb}


#: measured on the shared 2-core CPU: seconds per valid molecule of ChemNet (FCD), of the
#: realism properties and MOSES metrics, and the fixed cost of loading the references
FCD_S, METRICS_S, FIXED_S = 0.004, 0.012, 6.0


def plan(n: int, n_held: int, shipped: bool, with_fcd: bool, mode: str, molecules: bool = True,
         probe: Callable[[int], float] | None = None) -> float:
    """Say on stderr what ``evaluate`` will do and about how long it takes; returns the seconds.

    The decode speed is measured on a few latents (``probe``); the molecule metrics are
    estimated from their measured cost per molecule on a 2-core CPU.
    """
    m = min(16, max(n, 2))
    per = probe(m) / m if probe is not None else 0.1
    seconds = per * (n + n_held) + (((FCD_S if with_fcd else 0) + METRICS_S) * n + FIXED_S if molecules else 0)
    held = (f"{n_held:,} molecules of the shipped test slice (the data set was not found)" if shipped
            else f"{n_held:,} held-out molecules")
    extra = (f"{', FCD' if with_fcd else ''}, MOSES metrics and realism against the standard test split"
             if molecules else "")
    click.echo(f"evaluate: reconstruct {held}; decode {n:,} prior samples ({mode}); validity, uniqueness, "
               f"novelty{extra}; "
               f"expected about {human_duration(seconds)} (--n and --limit scale it)", err=True)
    return seconds


def memory_mb(model: Any, grammar: Any, chunk: int, attempts: int, batch_size: int, n: int) -> float:
    """Rough peak working set: latents and strings of one chunk, one decode batch, the hashes."""
    d = int(getattr(model.config, "latent_dim", 64))
    latents = chunk * attempts * d * 4
    strings = chunk * attempts * (grammar.max_length + 120)  # raw + judged strings of a chunk
    batch = batch_size * grammar.max_length * (grammar.n_productions * 4 + 16)
    hashes = n * 9
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return (latents + strings + batch + hashes + params) / 2**20


def timed(fn: Callable[[], Any]) -> float:
    """Seconds ``fn()`` takes."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
