"""How a grammar's strings relate to the strings users read and write.

Most grammars read their strings as they are. ``smiles_kekule`` reads canonical Kekulé
SMILES without stereochemistry (:func:`molshape.scoring.chem.kekule_smiles`): data and user
inputs are converted on the way in, and decoded molecules are given back as canonical
(aromatic) SMILES on the way out, so users never see the internal form.
"""

from __future__ import annotations

from typing import Sequence

from molshape.grammar.cfg import Grammar

#: Grammars whose strings are Kekulé SMILES.
KEKULE_GRAMMARS = frozenset({"smiles_kekule"})
#: Grammars whose strings are molecules (SMILES in any form).
MOLECULE_GRAMMARS = frozenset({"smiles"}) | KEKULE_GRAMMARS


def is_molecular(grammar: Grammar) -> bool:
    """True when the grammar's strings are SMILES."""
    return grammar.name in MOLECULE_GRAMMARS


def is_kekule(grammar: Grammar) -> bool:
    """True when the grammar reads Kekulé SMILES (inputs are converted first)."""
    return grammar.name in KEKULE_GRAMMARS


def to_grammar_strings(grammar: Grammar, strings: Sequence[str], workers: int | None = None,
                       progress: bool = False) -> list[str | None]:
    """Inputs in the grammar's own form (None where a molecule cannot be converted)."""
    if not is_kekule(grammar):
        return list(strings)
    from molshape.scoring.chem import kekule_many  # RDKit: only for molecule grammars

    return kekule_many(strings, workers=workers, progress=progress)


def to_user_string(grammar: Grammar, s: str | None) -> str | None:
    """A decoded string as users expect it: canonical aromatic SMILES for Kekulé grammars."""
    if s is None or not is_kekule(grammar):
        return s
    from molshape.scoring.chem import canonicalise  # RDKit is heavy: loaded only when molecules are involved

    return canonicalise(s)
