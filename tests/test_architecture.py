"""The rules of docs/ARCHITECTURE.md, checked on the source with ``ast`` (nothing is imported).

- no import cycles between molshape modules (imports inside functions included);
- ``latent/`` and ``training/`` import no grammar, chemistry or image code, not even
  through other modules;
- only ``scoring/`` imports RDKit, only ``grammar/`` imports nltk;
- nothing in the library imports ``cli/``;
- a molshape import inside a function carries a comment (on its line or the line above)
  saying why it is not at the top.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "molshape"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@cache
def imports(name: str) -> tuple[tuple[str, int, bool], ...]:
    """``(imported module, line, inside a function)`` for every import in module ``name``."""
    path = modules()[name]
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                for a in child.names:  # `from molshape.gvae import generation` names a module
                    sub = f"{child.module}.{a.name}"
                    found.append((sub if sub in modules() else child.module, child.lineno, in_function))
            visit(child, inner)

    visit(tree, False)
    return tuple(found)


def internal(name: str) -> set[str]:
    """The molshape modules ``name`` imports (the package ``__init__`` files are docstrings only)."""
    return {m for m, _, _ in imports(name) if m in modules() and m != "molshape"}


def reachable(name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        for m in internal(todo.pop()) - seen:
            seen.add(m)
            todo.append(m)
    return seen


def in_package(name: str, *packages: str) -> bool:
    return any(name == f"molshape.{p}" or name.startswith(f"molshape.{p}.") for p in packages)


def test_the_package_is_found():
    assert {"molshape.grammar.cfg", "molshape.training.fit", "molshape.cli"} <= set(modules())


def test_no_import_cycles():
    cycles = sorted(name for name in modules() if name in reachable(name))
    assert not cycles, f"modules on an import cycle: {cycles}"


@pytest.mark.parametrize("layer", ["latent", "training"])
def test_latent_and_training_know_no_domain(layer):
    bad = {name: sorted(m for m in reachable(name) if in_package(m, "grammar", "scoring", "images", "gvae", "bo", "cli"))
           for name in modules() if in_package(name, layer)}
    third = {name: sorted({m for dep in reachable(name) | {name} for m, _, _ in imports(dep)
                           if m.split(".")[0] in ("rdkit", "nltk")})
             for name in modules() if in_package(name, layer)}
    assert not {k: v for k, v in bad.items() if v}, "latent/ and training/ must not reach domain code"
    assert not {k: v for k, v in third.items() if v}, "latent/ and training/ must not reach RDKit or nltk"


@pytest.mark.parametrize("library, owner", [("rdkit", "scoring"), ("nltk", "grammar")])
def test_only_one_package_imports(library, owner):
    users = sorted(name for name in modules()
                   if any(m.split(".")[0] == library for m, _, _ in imports(name)) and not in_package(name, owner))
    assert not users, f"only {owner}/ may import {library}: {users}"


def test_the_library_does_not_import_the_cli():
    users = sorted(name for name in modules() if not in_package(name, "cli") and name != "molshape.__main__"
                   and any(in_package(m, "cli") for m in internal(name)))
    assert not users, f"library modules importing molshape.cli: {users}"


def _says_why(lines: list[str], i: int) -> bool:
    """A comment on line ``i`` (0-based), or on the line above the run of imports line ``i`` is in."""
    if "#" in lines[i]:
        return True
    while i > 0:
        prev = lines[i - 1].strip()
        if prev.startswith("#"):
            return True
        if prev.endswith(")") and not prev.startswith(("from ", "import ")):  # end of a parenthesised import?
            j = i - 1
            while j > 0 and "(" not in lines[j]:
                j -= 1
            prev, i = lines[j].strip(), j + 1
        if not prev.startswith(("from ", "import ")):
            return False
        i -= 1
    return False


def test_imports_inside_functions_say_why():
    silent = []
    for name, path in modules().items():
        lines = path.read_text().split("\n")
        for m, line, in_function in imports(name):
            if not in_function or m.split(".")[0] != "molshape":
                continue
            if not _says_why(lines, line - 1):
                silent.append(f"{path.relative_to(PACKAGE.parent)}:{line}")
    assert not silent, f"molshape imports inside functions without a comment saying why: {silent}"
