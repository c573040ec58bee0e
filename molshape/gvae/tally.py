"""Big runs of decodes: draw them in chunks and count the results as they come.

Latents are drawn and decoded :data:`CHUNK` at a time, so memory does not grow with the
number of decodes except for 9 bytes per valid result (a 64-bit hash of its canonical form
and a novelty flag, to count unique and novel results exactly up to hash collisions, about
1 in 10^9 at 10^5 results). Runs of up to :data:`CHUNK` draw every latent at once.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Callable, Container, Iterable
from typing import Any

import numpy as np

#: latents drawn and decoded per chunk
CHUNK = 50_000


def chunk_sizes(n: int, chunk: int | None = None) -> list[int]:
    """Sizes of the chunks ``n`` draws are split into (default :data:`CHUNK`)."""
    chunk = chunk or CHUNK
    return [min(chunk, n - i) for i in range(0, n, chunk)]


class Tally:
    """Counts of decoded results, fed chunk by chunk: valid, incomplete, unique and novel."""

    def __init__(self, key: Callable[[str], str], reference: Container[str] | None = None) -> None:
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
