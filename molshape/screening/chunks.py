"""The chunk plan of a screening run: ``n`` draws cut into fixed chunks, each with its own seed.

A chunk's seed is a hash of the run seed and the chunk's index, so a chunk draws the same
latents and the same sampling noise whichever worker runs it, in whatever order, and a
re-run of a chunk (a killed worker, ``--resume``) writes exactly what the first run would.

Example:
    >>> [(c.index, c.size) for c in plan(12_000, 5_000, seed=0)]
    [(0, 5000), (1, 5000), (2, 2000)]
"""

from __future__ import annotations

import hashlib
import math
from typing import NamedTuple

#: latents per chunk by default: about two minutes of decoding and scoring on one core
CHUNK_SIZE = 5_000
#: unique rows a deduplication partition holds at most by default (its memory: ~200 MB)
ROWS_PER_PARTITION = 1_000_000
#: hash partitions at most by default
MAX_PARTITIONS = 256


class Chunk(NamedTuple):
    """One unit of work: draws ``start .. start + size`` of the run, seeded by ``seed``."""

    index: int
    start: int
    size: int
    seed: int


def chunk_seed(run_seed: int, index: int) -> int:
    """A 63-bit seed for chunk ``index`` of a run seeded ``run_seed`` (independent streams, no stride overlap)."""
    digest = hashlib.blake2b(f"molshape-screen:{run_seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def plan(n: int, chunk_size: int = CHUNK_SIZE, seed: int = 0, first_seed: int | None = None) -> list[Chunk]:
    """The chunks of a run of ``n`` draws (a few numbers per chunk, so fine for any ``n``).

    ``first_seed``: chunk 0's seed instead of ``chunk_seed(seed, 0)`` (``decode --n`` draws its
    first chunk with the run seed itself, as one generator seeded ``seed`` would).
    """
    if n < 1 or chunk_size < 1:
        raise ValueError(f"n and the chunk size must be >= 1, got n={n}, chunk size={chunk_size}")
    return [Chunk(i, start, min(chunk_size, n - start),
                  first_seed if i == 0 and first_seed is not None else chunk_seed(seed, i))
            for i, start in enumerate(range(0, n, chunk_size))]


def default_partitions(n: int) -> int:
    """Hash partitions for ``n`` draws: one per :data:`ROWS_PER_PARTITION`, at most :data:`MAX_PARTITIONS`."""
    return max(1, min(MAX_PARTITIONS, math.ceil(n / ROWS_PER_PARTITION)))


def partition_of(key: str, partitions: int) -> int:
    """The partition of a canonical string: a stable hash (not Python's salted ``hash``)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % partitions
