"""Reference statistics shipped with the package, so ``molshape evaluate`` runs offline.

``molshape/reference/`` holds, for the standard ZINC250k test split (GVAE's 5,000 held-out
molecules), what prior-sample metrics compare against, written by
``scripts/make_reference_stats.py``:

- ``zinc250k-test.smi.gz``: the 5,000 test SMILES (nearest-neighbour and MOSES metrics);
- ``zinc250k-reference.npz``: the mean and covariance of their ChemNet activations (FCD),
  their per-molecule properties (realism), MOSES fragment and scaffold counts, the real-data
  floors, and per shipped model the 32-bit hashes of its training molecules' canonical SMILES
  (novelty) and the first molecules of its own test split (reconstruction).

Everything is read lazily and cached; a source tree without the files gets ``None``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

if TYPE_CHECKING:  # annotations only: this module stays free of torch
    from molshape.data.trained import TrainedOn

STATS_FILE = "zinc250k-reference.npz"
TEST_FILE = "zinc250k-test.smi.gz"


def reference_dir() -> Path:
    return Path(str(resources.files("molshape") / "reference"))


def hash32(form: str) -> int:
    """32-bit hash of a canonical string (blake2b), the unit of the shipped novelty sets."""
    return int.from_bytes(hashlib.blake2b(form.encode(), digest_size=4).digest(), "little")


def sorted_hashes(forms: Iterable[str]) -> np.ndarray:
    """Sorted distinct :func:`hash32` of ``forms`` (uint32)."""
    return np.unique(np.fromiter((hash32(f) for f in forms), dtype=np.uint32))


class HashedSet:
    """Membership in a set of strings known only by their sorted 32-bit hashes.

    A string outside the set is reported inside it with probability ``len / 2**32``
    (1.4e-5 for 60,000 training molecules): novelty is then under-counted by that much.
    """

    def __init__(self, hashes: np.ndarray) -> None:
        self.hashes = np.asarray(hashes, dtype=np.uint32)

    def __len__(self) -> int:
        return len(self.hashes)

    def __contains__(self, form: object) -> bool:
        if not isinstance(form, str):
            return False
        h = hash32(form)
        i = int(np.searchsorted(self.hashes, h))
        return i < len(self.hashes) and int(self.hashes[i]) == h


def split_fingerprint(checkpoint: TrainedOn) -> str:
    """Identity of a checkpoint's data and split: its data sha256 and split indices."""
    h = hashlib.sha256(str(checkpoint.data.get("sha256")).encode())
    for name in ("train", "valid", "test"):
        part = checkpoint.split.get(name)
        if part is not None:
            h.update(name.encode() + np.asarray(part, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


@dataclass
class ShippedReference:
    """The shipped statistics of the standard ZINC250k test split (see the module docstring)."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def data_sha256(self) -> str:
        return self.meta["data_sha256"]

    @property
    def n_test(self) -> int:
        return int(self.meta["n_test"])

    def fcd_stats(self) -> dict[str, np.ndarray]:
        """``{"mu": [512], "sigma": [512 x 512]}`` (float64) of the test split's ChemNet activations."""
        mu = self.arrays["fcd_mu"].astype(np.float64)
        d = len(mu)
        sigma = np.zeros((d, d))
        sigma[np.triu_indices(d)] = self.arrays["fcd_sigma_triu"]
        sigma = sigma + np.triu(sigma, 1).T
        return {"mu": mu, "sigma": sigma}

    def test_properties(self) -> np.ndarray:
        """``N x 7`` properties of the test molecules (:func:`molshape.scoring.chem_stats.molecule_stats`)."""
        return self.arrays["test_properties"].astype(np.float64)

    def test_smiles(self) -> list[str]:
        with gzip.open(reference_dir() / TEST_FILE, "rt") as f:
            return [line.strip() for line in f if line.strip()]

    def counts(self, kind: str) -> dict[str, int]:
        """MOSES ``fragments`` (BRICS) or ``scaffolds`` (Bemis-Murcko) counts of the test split."""
        return self.meta[kind]

    def fcd_floor(self, n: int) -> tuple[float, int]:
        """FCD of real training molecules at the measured size nearest ``n``: ``(fcd, size)``."""
        sizes = sorted(int(k) for k in self.meta["fcd_floor"])
        size = min(sizes, key=lambda s: abs(np.log(s / max(n, 1))))
        return float(self.meta["fcd_floor"][str(size)]), size

    def novelty_set(self, checkpoint: TrainedOn) -> HashedSet | None:
        """The training molecules of a shipped model, or None for another checkpoint."""
        key = f"novelty_{split_fingerprint(checkpoint)}"
        return HashedSet(np.cumsum(self.arrays[key], dtype=np.uint32)) if key in self.arrays else None

    def test_slice(self, checkpoint: TrainedOn) -> list[str] | None:
        """The first molecules of a shipped model's own test split, or None for another checkpoint."""
        key = f"test_slice_{split_fingerprint(checkpoint)}"
        return [str(s) for s in self.arrays[key]] if key in self.arrays else None


@lru_cache(maxsize=1)
def shipped_reference() -> ShippedReference | None:
    """The shipped reference statistics, or None when this install has none."""
    path = reference_dir() / STATS_FILE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    return ShippedReference(meta, arrays)
