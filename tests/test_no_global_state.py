"""Library calls leave the caller's global state alone: no matplotlib backend switch, no
pyplot, and the python, numpy and torch random streams as they were."""

from __future__ import annotations

import ast
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

PACKAGE = Path(__file__).resolve().parents[1] / "molshape"
#: subpackages this check does not cover
EXCLUDED: tuple[str, ...] = ()


def _modules() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.relative_to(PACKAGE).parts[0] not in EXCLUDED]


def _global_matplotlib(path: Path) -> list[str]:
    """``matplotlib.use(...)`` calls and pyplot imports in one module, as ``line: what``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "use" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "matplotlib":
            found.append(f"{node.lineno}: matplotlib.use")
        elif isinstance(node, ast.Import) and any(a.name == "matplotlib.pyplot" for a in node.names):
            found.append(f"{node.lineno}: import matplotlib.pyplot")
        elif isinstance(node, ast.ImportFrom) and (node.module == "matplotlib.pyplot" or (
                node.module == "matplotlib" and any(a.name == "pyplot" for a in node.names))):
            found.append(f"{node.lineno}: from matplotlib import pyplot")
    return found


def test_no_module_switches_the_backend_or_imports_pyplot() -> None:
    assert len(_modules()) > 50
    bad = {str(p.relative_to(PACKAGE)): f for p in _modules() if (f := _global_matplotlib(p))}
    assert not bad


def test_the_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    module = tmp_path / "plots.py"
    module.write_text("import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
                      "from matplotlib import pyplot\nfrom matplotlib.figure import Figure\n")
    assert sorted(_global_matplotlib(module)) == ["2: matplotlib.use", "3: import matplotlib.pyplot",
                                          "4: from matplotlib import pyplot"]


def test_plotting_keeps_the_backend_and_never_loads_pyplot(tmp_path: Path) -> None:
    """In a fresh interpreter (pytest's may hold pyplot already): a training-curves plot."""
    code = f"""
import sys, matplotlib
before = matplotlib.rcParams._get("backend")
from molshape.training.fit import plot_curves
plot_curves([{{"epoch": 1, "train_loss": 2.0, "valid_loss": 3.0}}, {{"epoch": 2, "train_loss": 1.0,
             "valid_loss": 2.5}}], __import__("pathlib").Path({str(tmp_path / "curves.png")!r}))
assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
assert matplotlib.rcParams._get("backend") == before, "the backend changed"
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "curves.png").stat().st_size > 1000


def _states() -> tuple:
    return random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state().clone()


def _same(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and torch.equal(a[2], b[2])


@pytest.fixture(scope="module")
def tiny_expr_model(expr_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint, data file) of a one-epoch expression model, trained while checking that
    training gives the caller's random streams back."""
    from conftest import read_lines

    from molshape.data.datasets import load_dataset
    from molshape.gvae.model import PRESETS
    from molshape.gvae.training import train_grammar
    from molshape.training.fit import TrainConfig

    out = tmp_path_factory.mktemp("tiny_expr")
    data_file = out / "data.txt"
    data_file.write_text("\n".join(read_lines(expr_path, 1300)) + "\n")
    data = load_dataset("expr", data_file, limit=200, progress=False, workers=1)
    cfg = PRESETS["expr"]["cpu"].replace(dec_hidden=24, dec_layers=1, enc_dense=24)
    torch.manual_seed(123)
    before = _states()
    train_grammar(cfg, TrainConfig(epochs=1, batch_size=100, device="cpu", progress=False, limit=200), data, out)
    assert _same(before, _states()), "train_grammar changed the caller's random streams"
    return out / "best.pt", data_file


def test_training_and_evaluate_leave_the_random_streams_alone(tiny_expr_model) -> None:
    import molshape

    ckpt, data = tiny_expr_model
    model = molshape.load(ckpt)
    torch.manual_seed(7)
    random.seed(7)
    before = _states()
    first = model.evaluate(n=40, limit=10, data=data, seed=3, latent=False)
    assert _same(before, _states()), "evaluate changed the caller's random streams"
    torch.manual_seed(99)  # the caller's streams elsewhere: the same seed gives the same numbers
    assert model.evaluate(n=40, limit=10, data=data, seed=3, latent=False)["samples"] == first["samples"]
