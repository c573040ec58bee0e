"""Shared fixtures: the committed small data sets (tests/fixtures), and the full ones when present
(../shared/data or MOLSHAPE_DATA_DIR; tests that need them are marked ``full_data``)."""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

# One torch thread: on small tensors, two threads on a shared 2-core machine are many
# times slower (oversubscription), and results do not depend on the thread count.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
# ../shared/data beside the checkout (developers, CI); MOLSHAPE_DATA_DIR overrides.
SHARED_DATA = Path(os.environ.get("MOLSHAPE_DATA_DIR", ROOT.parent / "shared" / "data"))


#: small committed slices of the same data, so unit and CLI tests run on a fresh clone
SMALL_DATA = ROOT / "tests" / "fixtures"
ZINC_SMALL = SMALL_DATA / "zinc_2k.smi"            # the first 2,000 lines of zinc250k.smi
EXPR_SMALL = SMALL_DATA / "expr_3k.txt.gz"         # the first 3,000 lines of equation2_15_dataset.txt.gz
MNIST_SMALL = SMALL_DATA / "mnist"                 # the first 500 MNIST test images and labels (idx, gzip)


#: every test run gets its own cache and runs folders, set before any fixture (session-scoped
#: ones included) can reach the user's cache or ./runs
_SANDBOX: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _SANDBOX
    _SANDBOX = Path(tempfile.mkdtemp(prefix="molshape-tests-"))
    os.environ["MOLSHAPE_CACHE_DIR"] = str(_SANDBOX / "cache")
    os.environ["MOLSHAPE_RUNS_DIR"] = str(_SANDBOX / "runs")
    try:  # property tests keep no example database in the working folder
        from hypothesis import settings

        settings.register_profile("molshape", database=None)
        settings.load_profile("molshape")
    except ImportError:
        pass


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SANDBOX is not None:
        shutil.rmtree(_SANDBOX, ignore_errors=True)


def has_full_data() -> bool:
    return SHARED_DATA.is_dir()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``full_data`` need the full data sets; without them they skip, saying so."""
    if has_full_data():
        return
    skip = pytest.mark.skip(reason=f"full_data: {SHARED_DATA} not present (set MOLSHAPE_DATA_DIR)")
    for item in items:
        if "full_data" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Say how many tests ran and how many full-data tests were skipped (``make test``)."""
    stats = terminalreporter.stats
    ran = sum(len(stats.get(k, [])) for k in ("passed", "failed", "error", "xfailed", "xpassed"))
    full = sum("full_data" in str(getattr(r, "longrepr", "")) for r in stats.get("skipped", []))
    where = "present" if has_full_data() else f"absent ({SHARED_DATA})"
    terminalreporter.write_line(f"molshape: {ran} tests ran; {full} full_data tests skipped; full data sets {where}")


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"full_data: data file {path} not present (set MOLSHAPE_DATA_DIR)")
    return path


def _full_or_small(full: Path, small: Path) -> Path:
    return full if full.exists() else small


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _require(SHARED_DATA)


@pytest.fixture(scope="session")
def zinc_path() -> Path:
    """ZINC250k, or its first 2,000 lines when the full set is absent."""
    return _full_or_small(SHARED_DATA / "zinc250k.smi.gz", ZINC_SMALL)


@pytest.fixture(scope="session")
def expr_path() -> Path:
    """The GVAE expression file, or its first 3,000 lines when the full set is absent."""
    return _full_or_small(SHARED_DATA / "equation2_15_dataset.txt.gz", EXPR_SMALL)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The MNIST test files, or their first 500 images when the full set is absent."""
    return _full_or_small(SHARED_DATA / "mnist", MNIST_SMALL)


def read_lines(path: Path, n: int, start: int = 0) -> list[str]:
    """First ``n`` non-empty lines (after ``start``) of a text file (gzip or plain), stripped."""
    out: list[str] = []
    with (gzip.open(path, "rt") if path.suffix == ".gz" else open(path)) as f:
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
def zinc_sample() -> list[str]:
    """The first 2,000 ZINC250k SMILES (committed: tests/fixtures/zinc_2k.smi)."""
    return read_lines(ZINC_SMALL, 2000)


@pytest.fixture(scope="session")
def expr_sample() -> list[str]:
    """The first 1,000 GVAE expressions (tokens space-separated in the file; joined here)."""
    return [s.replace(" ", "") for s in read_lines(EXPR_SMALL, 1000)]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets a private cache and runs folder, never the user's."""
    monkeypatch.setenv("MOLSHAPE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("MOLSHAPE_RUNS_DIR", str(tmp_path_factory.getbasetemp() / "runs"))
