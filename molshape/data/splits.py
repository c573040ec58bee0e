"""Train / valid / test splits of records: deterministic under a seed, defined on record
positions (so a ``--limit`` run uses the same split definition and parses only what it needs)."""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
VALID_FRACTION = 0.1


def split_records(n: int, test_size: int | float, valid_fraction: float, seed: int) -> dict[str, torch.Tensor]:
    """Partition record indices ``0..n-1`` into sorted ``train`` / ``valid`` / ``test``.

    Args:
        n: number of records.
        test_size: records held out for test; a float below 1 is a fraction of ``n``.
        valid_fraction: fraction of the non-test records used for validation.
        seed: the permutation's seed (numpy PCG64).
    """
    n_test = round(test_size * n) if isinstance(test_size, float) and test_size < 1 else int(test_size)
    n_valid = round(valid_fraction * (n - n_test))
    if n_test < 0 or n_valid < 0 or n_test + n_valid >= n:
        raise ValueError(f"test_size={test_size}, valid_fraction={valid_fraction} leave no training "
                         f"records out of {n:,}")
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    parts = (perm[:n_test], perm[n_test:n_test + n_valid], perm[n_test + n_valid:])
    return {name: p.sort().values for name, p in zip(("test", "valid", "train"), parts)}


def limit_split(split: dict[str, torch.Tensor], limit: int) -> dict[str, torch.Tensor]:
    """First ``limit`` training records; valid and test cut to ``ceil(limit / 9)`` (10 % of train+valid)."""
    cap = max(1, math.ceil(limit / 9))
    return {"train": split["train"][:limit], "valid": split["valid"][:cap], "test": split["test"][:cap]}


def split_capped(n: int, params: dict, cap_test: bool) -> dict[str, torch.Tensor]:
    """:func:`split_records` with ``params``; with ``cap_test``, a file no larger than its test size holds out 10 %."""
    if cap_test and isinstance(params["test_size"], int) and params["test_size"] >= n:
        # a small local file with a standard loader: hold out 10 % instead of e.g. 5,000
        log.warning("only %s records: holding out %s for test instead of %s", f"{n:,}", f"{n // 10:,}",
                    f"{params['test_size']:,}")
        params = params | {"test_size": n // 10}
    return split_records(n, **params)
