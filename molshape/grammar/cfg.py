"""Context-free grammars as tensors: the tables every other module reads.

A :class:`Grammar` is loaded from an nltk CFG file (``grammars/<name>.cfg``) and holds
everything the parser, the model and the masked decoder need, all derived from the
file: the ordered productions, the nonterminal symbols, the ``[symbols x productions]``
mask, each production's right-hand nonterminals, the padding production and the
productions that can never be chosen because they need a symbol with no production.

Example:
    >>> g = load_grammar("smiles")
    >>> g.n_productions, g.max_length
    (76, 277)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import nltk
import torch

from molshape.core.errors import MolshapeError

#: Maximum derivation length per grammar (GVAE): sequences are padded to this.
MAX_LENGTHS = {"smiles": 277, "smiles_kekule": 277, "expr": 15}
#: the grammars shipped with molshape (``grammars/<name>.cfg``)
GRAMMARS = tuple(MAX_LENGTHS)

#: The padding production's left-hand side; its right-hand ``None`` is not a symbol to expand.
PAD_SYMBOL = "Nothing"
_PAD_RHS = "None"


class GrammarError(MolshapeError):
    """A string is not in the grammar's language (or a grammar file is malformed).

    Attributes:
        input: the offending string.
        position: 0-based character offset where the problem was found (None if n/a).
        reason: a short human-readable reason.
    """

    def __init__(self, input: str, position: int | None, reason: str) -> None:
        self.input = input
        self.position = position
        self.reason = reason
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"{input!r}{where}: {reason}")

    def __reduce__(self):  # picklable across worker processes
        return (GrammarError, (self.input, self.position, self.reason))


def grammar_dir() -> Path:
    """Folder holding the grammar files, for an installed wheel and a source checkout."""
    packaged = resources.files("molshape") / "grammars"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "grammars"


def grammar_path(name: str) -> Path:
    """Path of a built-in grammar (``smiles`` or ``expr``) or of a user ``.cfg`` file."""
    p = Path(name)
    if p.suffix == ".cfg" and p.is_file():
        return p
    candidate = grammar_dir() / f"{name}.cfg"
    if not candidate.is_file():
        known = sorted(x.stem for x in grammar_dir().glob("*.cfg"))
        raise FileNotFoundError(f"unknown grammar {name!r}; built-in grammars: {known}")
    return candidate


@dataclass(frozen=True, eq=False)
class Grammar:
    """Tables derived from one CFG file. Build with :func:`load_grammar`.

    Attributes:
        name: grammar name (file stem).
        text: the file's text; ``hash`` is its sha256 and is stored in checkpoints.
        cfg: the nltk grammar (for reference parsing with ``nltk.ChartParser``).
        productions: the productions in file order; index = rule id.
        symbols: nonterminal names; those with productions first (in order of first
            appearance as a left side), then undefined ones (e.g. ``class``).
        lhs: ``n_productions`` symbol index of each production's left side.
        rhs_nonterminals: per production, the symbol indices of its right-hand
            nonterminals, left to right (empty for the padding production).
        rhs_tokens: per production, its right side as strings: terminals as they appear
            in text, nonterminals as ``None`` placeholders.
        masks: ``n_symbols x n_productions`` bool: production allowed for that symbol
            (never-choosable productions are False everywhere).
        start: index of the start symbol.
        pad: rule id of the padding production ``Nothing -> None``.
        pad_symbol: symbol index of ``Nothing`` (the mask row used once the stack is empty).
        unusable: rule ids that need a symbol with no production.
        terminals: all terminal strings, longest first (tokenisation order).
        max_length: derivation length sequences are padded to.
    """

    name: str
    text: str
    cfg: nltk.CFG = field(repr=False)
    productions: tuple
    symbols: tuple[str, ...]
    lhs: tuple[int, ...]
    rhs_nonterminals: tuple[tuple[int, ...], ...]
    rhs_tokens: tuple[tuple[str | None, ...], ...]
    masks: torch.Tensor = field(repr=False)
    start: int
    pad: int
    pad_symbol: int
    unusable: tuple[int, ...]
    terminals: tuple[str, ...]
    max_length: int

    @property
    def n_productions(self) -> int:
        return len(self.productions)

    @property
    def n_symbols(self) -> int:
        return len(self.symbols)

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def lhs_tensor(self) -> torch.Tensor:
        """``n_productions`` long tensor of left-hand symbol indices."""
        return torch.tensor(self.lhs, dtype=torch.long)

    def rule_masks(self, rules: torch.Tensor) -> torch.Tensor:
        """Mask of the productions allowed at each step of given derivations.

        Args:
            rules: ``... x T`` long tensor of rule ids.

        Returns:
            ``... x T x n_productions`` bool tensor: at each step, the productions whose
            left side equals the left side of the true rule (the GVAE conditional mask).
        """
        lhs = self.lhs_tensor().to(rules.device)[rules]  # (..., T)
        return self.masks.to(rules.device)[lhs]  # (..., T, R)

    def __str__(self) -> str:
        return f"Grammar({self.name}: {self.n_productions} productions, {self.n_symbols} symbols)"


def _from_text(name: str, text: str, max_length: int) -> Grammar:
    try:
        cfg = nltk.CFG.fromstring(text)
    except ValueError as e:
        raise GrammarError(name, None, f"malformed grammar file: {e}") from e
    productions = tuple(cfg.productions())
    defined: list[str] = []
    for p in productions:
        s = str(p.lhs())
        if s not in defined:
            defined.append(s)
    undefined: list[str] = []
    for p in productions:
        for x in p.rhs():
            if isinstance(x, nltk.Nonterminal) and str(x) != _PAD_RHS:
                s = str(x)
                if s not in defined and s not in undefined:
                    undefined.append(s)
    symbols = tuple(defined + undefined)
    index = {s: i for i, s in enumerate(symbols)}
    if PAD_SYMBOL not in index:
        raise GrammarError(name, None, f"grammar needs a padding production '{PAD_SYMBOL} -> {_PAD_RHS}'")

    lhs = tuple(index[str(p.lhs())] for p in productions)
    rhs_nt = tuple(
        tuple(index[str(x)] for x in p.rhs() if isinstance(x, nltk.Nonterminal) and str(x) != _PAD_RHS)
        for p in productions
    )
    rhs_tokens = tuple(
        tuple(None if isinstance(x, nltk.Nonterminal) else str(x) for x in p.rhs()
              if not (isinstance(x, nltk.Nonterminal) and str(x) == _PAD_RHS))
        for p in productions
    )
    pad = next(i for i, p in enumerate(productions) if str(p.lhs()) == PAD_SYMBOL)
    undefined_ids = {index[s] for s in undefined}
    unusable = tuple(i for i, r in enumerate(rhs_nt) if undefined_ids.intersection(r))

    masks = torch.zeros(len(symbols), len(productions), dtype=torch.bool)
    for i, s in enumerate(lhs):
        if i not in unusable:
            masks[s, i] = True
    terminals = sorted({t for toks in rhs_tokens for t in toks if t is not None}, key=lambda t: (-len(t), t))
    return Grammar(
        name=name,
        text=text,
        cfg=cfg,
        productions=productions,
        symbols=symbols,
        lhs=lhs,
        rhs_nonterminals=rhs_nt,
        rhs_tokens=rhs_tokens,
        masks=masks,
        start=index[str(cfg.start())],
        pad=pad,
        pad_symbol=index[PAD_SYMBOL],
        unusable=unusable,
        terminals=tuple(terminals),
        max_length=max_length,
    )


@lru_cache(maxsize=None)
def load_grammar(name: str = "smiles", max_length: int | None = None) -> Grammar:
    """Load a built-in grammar (``smiles``, ``expr``) or a ``.cfg`` file path.

    Args:
        name: grammar name or path to an nltk CFG file.
        max_length: padding length; defaults to the GVAE value for built-ins.
    """
    path = grammar_path(name)
    stem = path.stem
    length = max_length or MAX_LENGTHS.get(stem)
    if length is None:
        raise ValueError(f"grammar {name!r} has no default max_length; pass one")
    return _from_text(stem, path.read_text(), length)
