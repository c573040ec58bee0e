"""Grammar tables: productions in file order, masks, symbols, padding, unusable rules."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from molshape.grammar.cfg import GrammarError, grammar_path, load_grammar

ROOT = Path(__file__).resolve().parents[2]


def _file_rules(name: str) -> list[tuple[str, list[str | None], list[str]]]:
    """(lhs, rhs terminals with None for nonterminals, rhs nonterminal names) per file line."""
    out = []
    for line in (ROOT / "grammars" / f"{name}.cfg").read_text().splitlines():
        if not line.strip():
            continue
        lhs, rhs = (x.strip() for x in line.split("->"))
        items = rhs.split()
        tokens = [x[1:-1] if x.startswith("'") else None for x in items if x != "None"]
        nts = [x for x in items if not x.startswith("'") and x != "None"]
        out.append((lhs, tokens, nts))
    return out


@pytest.mark.parametrize("name, n", [("smiles", 76), ("expr", 12)])
def test_productions_follow_file_order(name: str, n: int) -> None:
    g = load_grammar(name)
    rules = _file_rules(name)
    assert g.n_productions == len(rules) == n
    for r, (lhs, tokens, nts) in enumerate(rules):
        assert g.symbols[g.lhs[r]] == lhs
        assert list(g.rhs_tokens[r]) == tokens
        assert [g.symbols[s] for s in g.rhs_nonterminals[r]] == nts


def test_smiles_tables() -> None:
    g = load_grammar("smiles")
    assert g.max_length == 277
    assert g.symbols[g.start] == "smiles"
    assert g.pad == 75 and g.symbols[g.pad_symbol] == "Nothing" and g.lhs[g.pad] == g.pad_symbol
    assert g.rhs_nonterminals[g.pad] == () and g.rhs_tokens[g.pad] == ()
    # BACH -> charge class, BACH -> class: 'class' has no production
    assert g.unusable == (29, 31)
    assert "class" in g.symbols and g.symbols.index("class") >= g.symbols.index("Nothing")
    bracket = 18
    assert str(g.productions[bracket]) == "bracket_atom -> '[' BAI ']'"
    assert g.rhs_tokens[bracket] == ("[", None, "]")
    assert g.rhs_nonterminals[bracket] == (g.symbols.index("BAI"),)
    assert g.terminals[:3] == ("@@", "Br", "Cl")
    assert all(len(t) == 1 for t in g.terminals[3:])


def test_expr_tables() -> None:
    g = load_grammar("expr")
    assert g.max_length == 15 and g.symbols[g.start] == "S" and g.unusable == ()
    assert g.terminals[:2] == ("exp(", "sin(")
    assert set(g.terminals) == {"+", "*", "/", "(", ")", "sin(", "exp(", "x", "1", "2", "3"}


@pytest.mark.parametrize("name", ["smiles", "expr"])
def test_masks(name: str) -> None:
    g = load_grammar(name)
    assert g.masks.shape == (g.n_symbols, g.n_productions) and g.masks.dtype == torch.bool
    expected = torch.zeros_like(g.masks)
    for r, s in enumerate(g.lhs):
        expected[s, r] = r not in g.unusable
    assert torch.equal(g.masks, expected)
    # undefined symbols (no productions) have empty rows; the pad row allows only the pad rule
    assert g.masks[g.pad_symbol].nonzero().flatten().tolist() == [g.pad]
    rules = torch.tensor([[0, g.pad], [g.pad, g.pad]])
    m = g.rule_masks(rules)
    assert m.shape == (2, 2, g.n_productions)
    assert torch.equal(m[0, 0], g.masks[g.lhs[0]]) and torch.equal(m[1, 1], g.masks[g.pad_symbol])


def test_load_grammar_cached_and_errors(tmp_path: Path) -> None:
    assert load_grammar("smiles") is load_grammar("smiles")
    with pytest.raises(FileNotFoundError, match="smiles"):
        load_grammar("nope")
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text("E -> E '+' 'x'\nE -> 'x'\n")
    with pytest.raises(GrammarError, match="padding production"):
        load_grammar(str(cfg), max_length=5)
    cfg.write_text("E -> E '+' 'x'\nE -> 'x'\nNothing -> None\n")
    with pytest.raises(ValueError, match="max_length"):
        load_grammar(str(cfg))
    g = load_grammar(str(cfg), max_length=5)
    assert g.name == "tiny" and g.n_productions == 3 and g.pad == 2


@pytest.mark.slow
def test_grammar_files_ship_in_the_wheel(tmp_path: Path) -> None:
    """Build a wheel, install it into a fresh venv, and read the grammar from site-packages."""
    pytest.importorskip("hatchling", reason="hatchling is needed to build the wheel offline")
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
                    str(ROOT)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("molshape-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
                   check=True, capture_output=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    subprocess.run([*pip, "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    # torch, nltk ... come from this venv, after the wheel's own site-packages
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = ("import molshape, molshape.grammar.cfg as g; gr = g.load_grammar('smiles'); "
             "print(molshape.__file__); print(g.grammar_path('smiles')); print(gr.n_productions)")
    out = subprocess.run([str(python), "-c", probe], check=True, capture_output=True, text=True,
                         cwd=tmp_path).stdout.split()
    assert out[0].startswith(str(site))
    assert Path(out[1]) == site / "molshape" / "grammars" / "smiles.cfg"
    assert out[2] == "76"
    assert Path(out[1]).read_text() == grammar_path("smiles").read_text()
