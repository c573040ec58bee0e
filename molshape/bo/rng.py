"""Random draws of library code that leave the caller's global generators as they were.

BoTorch draws from torch's global generator in places that take no generator (the
restart choice of ``optimize_acqf``, the default seed of a quasi-MC sampler, the
retries of ``fit_gpytorch_mll``). :func:`isolated_rng` runs such code on a forked copy of
the global state, seeded from an explicit seed, and restores the caller's state after:
the results depend on the seed alone, and a caller's ``torch.rand`` sequence is untouched.

Example:
    >>> import torch
    >>> with isolated_rng(7):
    ...     a = torch.rand(2)
    >>> with isolated_rng(7):
    ...     b = torch.rand(2)
    >>> bool((a == b).all())
    True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Run the block with torch's global generators (CPU, and CUDA when in use) seeded
    from ``seed``; restore their previous states on exit, however the block ends."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)
        if devices:  # CUDA not yet started is not seeded: a lazy seed would land after the fork
            torch.cuda.manual_seed_all(seed)
        yield
