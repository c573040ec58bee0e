"""The rule tables of the Kekulé SMILES constraints: what each production of
``grammars/smiles_kekule.cfg`` does to the bookkeeping, atom capacities, and the limits
that decoding keeps to (see :mod:`molshape.grammar.semantics`)."""

from __future__ import annotations

from enum import IntEnum

from molshape.grammar.cfg import Grammar

#: Bonding capacity of each atom token (sum of bond orders to heavy atoms). Organic-subset
#: atoms take their largest usual valence (RDKit fills the rest with hydrogens); bracket
#: atoms carry their hydrogens and charge, so what is left is fixed.
CAPACITY = {
    "C": 4, "N": 3, "O": 2, "S": 6, "P": 5, "F": 1, "Cl": 1, "Br": 1, "I": 1, "B": 3,
    "[NH+]": 3, "[O-]": 1, "[NH2+]": 2, "[N+]": 4, "[NH3+]": 1, "[N-]": 2, "[S-]": 1,
    "[OH+]": 2, "[NH-]": 1, "[PH]": 4, "[PH2]": 3,
}
BOND_ORDER = {"=": 2, "#": 3}
#: A closure may make a ring of at most this many atoms (ZINC250k: 0.03 % have more).
MAX_RING = 8
MIN_RING = 3
#: Decoding avoids structures beyond what 10,000 ZINC250k molecules (Kekulé form) have:
#: branches nested deeper than 5, more than 6 rings open at once, 3 rings opened on one atom.
GUIDE_MAX_DEPTH = 5
GUIDE_MAX_OPEN = 6
GUIDE_MAX_PER_ATOM = 2
#: ... and more than this many atoms carrying two ring bonds (ZINC250k, Kekulé form: 0 of
#: 10,000 molecules have 3; degenerate decodes chain them into cages: C12C34C15C23...).
GUIDE_MAX_MULTI = 2
#: Steps to spare when an open ring that only an atom waiting below a branch can close calls the
#: decoder back there (decoding without the spare left 2.3 % of prior samples with a ring of
#: more than 8 atoms, with it 1.2 %; 4,000 samples of the shipped model).
GUIDE_HOME_SPARE = 20
#: Decoding avoids this many CH2 in a row (ZINC250k: 0.005 % of molecules have such a chain).
LONG_CHAIN = 8
#: Branches nested deeper than this are not allowed (ZINC250k nests at most 4 deep).
MAX_BRANCH_DEPTH = 12
INF = 10_000
#: Symbol names the constraints rely on.
SYMBOLS = ("smiles", "chain", "atom", "rings", "ring", "tail", "bond")


class Kind:
    """What a production does to the bookkeeping (one integer code per rule)."""

    OTHER, START, NEW_ATOM, ATOM, MORE_RINGS, RINGS_DONE, DIGIT = 0, 1, 2, 3, 4, 5, 6
    BRANCH, BRANCH_BOND, BOND_CHAIN, CHAIN, END, BOND = 7, 8, 9, 10, 11, 12


class Column(IntEnum):
    """The fixed columns of the per-kind tables that ``needs`` and ``guidance`` build, in order.

    Rules whose kind offers no choice share :attr:`FREE`. After these come the variable
    columns: one per atom capacity, one per ring slot, one per bond order (see
    :func:`rule_columns`), so a table of ``len(Column) + ...`` columns is spread to the rules
    with one ``index_select``.
    """

    FREE = 0
    END = 1
    CHAIN = 2
    BOND_CHAIN = 3
    BRANCH = 4
    BRANCH_BOND = 5
    MORE_RINGS = 6
    RINGS_DONE = 7


#: The column of each kind that has one of the fixed columns.
KIND_COLUMN = {Kind.START: Column.FREE, Kind.NEW_ATOM: Column.FREE, Kind.OTHER: Column.FREE,
               Kind.END: Column.END, Kind.CHAIN: Column.CHAIN, Kind.BOND_CHAIN: Column.BOND_CHAIN,
               Kind.BRANCH: Column.BRANCH, Kind.BRANCH_BOND: Column.BRANCH_BOND,
               Kind.MORE_RINGS: Column.MORE_RINGS, Kind.RINGS_DONE: Column.RINGS_DONE}


def rule_columns(kinds: list[int], args: list[int], caps: list[int], n_rings: int, orders: list[int]) -> list[int]:
    """Per rule, its column in the per-kind tables: a :class:`Column`, or after them the
    column of its atom capacity (``caps``), ring slot or bond order (``orders``)."""
    cols = []
    for kind, arg in zip(kinds, args):
        if kind == Kind.ATOM:
            cols.append(len(Column) + caps.index(arg))
        elif kind == Kind.DIGIT:
            cols.append(len(Column) + len(caps) + arg)
        elif kind == Kind.BOND:
            cols.append(len(Column) + len(caps) + n_rings + orders.index(arg))
        else:
            cols.append(int(KIND_COLUMN[kind]))
    return cols


def classify(grammar: Grammar) -> tuple[list[int], list[int]]:
    """Per rule: its :class:`Kind` and an argument (capacity, ring slot or bond order)."""
    kinds, args = [], []
    sym = grammar.symbols
    for r, toks in enumerate(grammar.rhs_tokens):
        lhs = sym[grammar.lhs[r]]
        terms = [t for t in toks if t is not None]
        nts = [sym[s] for s in grammar.rhs_nonterminals[r]]
        kind, arg = Kind.OTHER, 0
        if lhs == "smiles":
            kind = Kind.START
        elif lhs == "chain":
            kind = Kind.NEW_ATOM
        elif lhs == "atom":
            if terms[0] not in CAPACITY:
                raise ValueError(f"semantic constraints: no capacity known for atom {terms[0]!r}")
            kind, arg = Kind.ATOM, CAPACITY[terms[0]]
        elif lhs == "rings":
            kind = Kind.MORE_RINGS if nts and nts[0] == "ring" else Kind.RINGS_DONE
        elif lhs == "ring":
            kind, arg = Kind.DIGIT, int(terms[0]) - 1
        elif lhs == "tail":
            if not toks:
                kind = Kind.END
            elif terms and terms[0] == "(":
                kind = Kind.BRANCH_BOND if nts[0] == "bond" else Kind.BRANCH
            else:
                kind = Kind.BOND_CHAIN if nts[0] == "bond" else Kind.CHAIN
        elif lhs == "bond":
            kind, arg = Kind.BOND, BOND_ORDER[terms[0]]
        kinds.append(kind)
        args.append(arg)
    return kinds, args


def supports(grammar: Grammar) -> bool:
    """True when ``grammar`` has the structure these constraints are written for."""
    return all(s in grammar.symbols for s in SYMBOLS) and "ring" in grammar.symbols
