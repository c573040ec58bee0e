"""Shared fixtures: paths to the real data sets (read in place) and small slices of them."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
import torch

# One torch thread: on small tensors, two threads on a shared 2-core machine are many
# times slower (oversubscription), and results do not depend on the thread count.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
# ../shared/data beside the checkout (developers, CI); MOLSHAPE_DATA_DIR overrides.
SHARED_DATA = Path(os.environ.get("MOLSHAPE_DATA_DIR", ROOT.parent / "shared" / "data"))


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"data file {path} not present (set MOLSHAPE_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _require(SHARED_DATA)


@pytest.fixture(scope="session")
def zinc_path() -> Path:
    return _require(SHARED_DATA / "zinc250k.smi.gz")


@pytest.fixture(scope="session")
def expr_path() -> Path:
    return _require(SHARED_DATA / "equation2_15_dataset.txt.gz")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return _require(SHARED_DATA / "mnist")


def read_lines(path: Path, n: int, start: int = 0) -> list[str]:
    """First ``n`` non-empty lines (after ``start``) of a gzip text file, stripped."""
    out: list[str] = []
    with gzip.open(path, "rt") as f:
        for i, line in enumerate(f):
            if i < start:
                continue
            line = line.strip()
            if line:
                out.append(line)
            if len(out) >= n:
                break
    return out


@pytest.fixture(scope="session")
def zinc_sample(zinc_path: Path) -> list[str]:
    """2,000 ZINC250k SMILES, read in place."""
    return read_lines(zinc_path, 2000)


@pytest.fixture(scope="session")
def expr_sample(expr_path: Path) -> list[str]:
    """1,000 GVAE expressions (tokens space-separated in the file; joined here)."""
    return [s.replace(" ", "") for s in read_lines(expr_path, 1000)]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets a private cache folder, never the user's."""
    monkeypatch.setenv("MOLSHAPE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
