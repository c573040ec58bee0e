"""Semantic decoding (``smiles_kekule``): every complete decode is a valid molecule.

The bookkeeping rules one by one (valence per element and charge, ring bonds, length),
the vectorised constraints against the per-molecule reference, real ZINC molecules
never masked out, and random logits decoded to RDKit-valid molecules.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from molshape.scoring.chem import is_valid, kekule_smiles
from molshape.grammar.decoding import make_decoder, reference_decode
from molshape.grammar.cfg import load_grammar
from molshape.grammar.parser import get_parser, nltk_parse
from molshape.grammar.semantic_oracle import ReferenceSemantics
from molshape.grammar.semantic_rules import INF, Kind
from molshape.grammar.semantics import SmilesSemantics, semantics_for

ZINC = Path(__file__).resolve().parents[1] / "fixtures" / "zinc_2k.smi"


@pytest.fixture(scope="module")
def g():
    return load_grammar("smiles_kekule")


@pytest.fixture(scope="module")
def sem(g):
    return SmilesSemantics(g)


@pytest.fixture(scope="module")
def kekule_zinc() -> list[str]:
    lines = [line.split()[0] for line in ZINC.read_text().splitlines() if line.strip()]
    return [kekule_smiles(s) for s in lines]


def _rules(g, s: str, literal: bool = False) -> list[int]:
    """The derivation of ``s`` as RDKit writes it (canonical Kekulé), or as given (``literal``)."""
    return get_parser(g).parse(s if literal else kekule_smiles(s) or s)


def _state_before(g, sem, s: str, step: int, literal: bool = False):
    """Bookkeeping after the first ``step`` rules of the derivation of ``s`` (one row)."""
    st = sem.init(1)
    for r in _rules(g, s, literal)[:step]:
        sem.update(st, torch.tensor([r]))
    return st


def _allowed_names(g, sem, st, symbol: str, steps_left: int = 200) -> set[str]:
    allowed = sem.allowed(st, steps_left)[0]
    s = g.symbols.index(symbol)
    return {str(g.productions[r]).split("-> ", 1)[1] for r in range(g.n_productions)
            if g.masks[s, r] and bool(allowed[r])}


def _step_of(g, s: str, nth_symbol: str, occurrence: int, literal: bool = False) -> int:
    """Index of the ``occurrence``-th rule of ``s``'s derivation expanding ``nth_symbol``."""
    seen = -1
    for i, r in enumerate(_rules(g, s, literal)):
        if g.symbols[g.lhs[r]] == nth_symbol:
            seen += 1
            if seen == occurrence:
                return i
    raise AssertionError(f"{s}: no {nth_symbol} #{occurrence}")


# -- the grammar --------------------------------------------------------------------
def test_grammar_parses_kekule_zinc_exactly_as_nltk(g, kekule_zinc):
    parser = get_parser(g)
    lengths = [len(parser.parse(k)) for k in kekule_zinc]
    assert max(lengths) <= g.max_length
    for k in kekule_zinc[:40]:
        assert nltk_parse(g, parser.tokenize(k)) == parser.parse(k)
        assert parser.expand(parser.parse(k)) == k
    # right recursion makes derivations shorter than GVAE's 129 rules on average
    assert sum(lengths) / len(lengths) < 125


def test_kekule_form_has_no_aromatic_atoms_and_round_trips():
    k = kekule_smiles("c1ccccc1O")
    assert k is not None and not any(ch in k for ch in "cnos")
    assert is_valid(k)
    assert kekule_smiles("not a molecule") is None


# -- valence --------------------------------------------------------------------------
@pytest.mark.parametrize("smiles, atom_index, forbidden, allowed", [
    # O after a single bond has one bond left: it may continue, not with '=' and not branch twice
    ("CO", 1, {"bond chain", "'(' bond chain ')' tail"}, {"chain", ""}),
    # a carbon after '=' has two left: a double bond is still fine, a triple is not
    ("C=C", 1, set(), {"bond chain", "chain", "'(' chain ')' tail", ""}),
    # [O-] after a single bond is saturated: the chain must end here
    ("C[O-]", 1, {"chain", "bond chain", "'(' chain ')' tail", "'(' bond chain ')' tail"}, {""}),
    # F likewise
    ("CF", 1, {"chain", "bond chain", "'(' chain ')' tail"}, {""}),
    # [N+] carries 4: after one single bond it can still take a double bond
    ("C[N+](=O)[O-]", 1, set(), {"bond chain", "'(' bond chain ')' tail", "chain"}),
])
def test_tail_after_atom_respects_its_capacity(g, sem, smiles, atom_index, forbidden, allowed):
    st = _state_before(g, sem, smiles, _step_of(g, smiles, "tail", atom_index))
    names = _allowed_names(g, sem, st, "tail")
    assert not (names & forbidden), names
    assert allowed <= names, names


def test_bond_order_is_capped_by_both_atoms(g, sem):
    # "CC#N": the bond after the second C; a triple bond is allowed (4 - 1 = 3 left)
    s = "CC#N"
    st = _state_before(g, sem, s, _step_of(g, s, "bond", 0))
    assert _allowed_names(g, sem, st, "bond") == {"'='", "'#'"}
    # after "C=C", the second carbon has 2 left: '=' yes, '#' no
    s = "C=C=C"
    st = _state_before(g, sem, s, _step_of(g, s, "bond", 1))
    assert _allowed_names(g, sem, st, "bond") == {"'='"}


def test_atom_choice_respects_the_incoming_bond(g, sem):
    s = "C#N"  # the atom after '#': only atoms with capacity >= 3
    st = _state_before(g, sem, s, _step_of(g, s, "atom", 1))
    names = _allowed_names(g, sem, st, "atom")
    assert {"'C'", "'N'", "'[N+]'", "'[NH+]'", "'P'", "'S'"} <= names
    assert not names & {"'O'", "'F'", "'Cl'", "'[O-]'", "'[NH2+]'", "'[NH3+]'", "'[N-]'"}


# -- ring bonds ---------------------------------------------------------------------------
def test_ring_closes_two_or_more_bonds_away(g, sem):
    s = "C1CC1"  # the third atom closes ring 1: a ring of three atoms
    st = _state_before(g, sem, s, _step_of(g, s, "ring", 1))
    assert "'1'" in _allowed_names(g, sem, st, "ring")


def test_ring_digit_rules(g, sem):
    ref = ReferenceSemantics(g)
    rules = _rules(g, "C1CC1")
    digit = {str(g.productions[r]).split("'")[1]: r for r in range(g.n_productions) if sem._kind[r] == Kind.DIGIT}
    st = sem.init(1)
    # after "C1" and the second atom's element, in its rings phase: closing 1 is forbidden (neighbour)
    for r in rules[:9]:
        sem.update(st, torch.tensor([r]))
        ref.update(r)
    assert g.symbols[g.lhs[rules[9]]] == "rings"
    need = sem.needs(st)[0]
    assert int(need[digit["1"]]) >= INF  # duplicate bond
    assert int(need[digit["2"]]) < INF  # opening another ring is fine
    assert sem.needs(st)[0].tolist() == [min(x, INF) for x in ref.needs()]


def test_no_more_than_eight_rings_open_and_all_closed_at_the_end(g, sem):
    # eight ring bonds opened on a chain: a ninth cannot open
    s = "C1CC2CC3CC4CC5CC6CC7CC8CCC1CC2CC3CC4CC5CC6CC7CC8"
    k = kekule_smiles(s)
    assert k is not None
    rules = get_parser(g).parse(k)
    st = sem.init(1)
    opened = 0
    for i, r in enumerate(rules):
        if sem._kind[r] == Kind.DIGIT:
            if opened == 8:
                break
        sem.update(st, torch.tensor([r]))
        opened = int(st.ring_open.sum())
    assert int(st.ring_open.sum()) == 8
    need = sem.needs(st)[0]
    for r in range(g.n_productions):
        if sem._kind[r] == Kind.DIGIT and bool(st.ring_open[0, int(sem._arg[r])]) is False:
            assert int(need[r]) >= INF
    # ending the molecule with rings open is never allowed
    end = next(r for r in range(g.n_productions) if sem._kind[r] == Kind.END)
    assert int(need[end]) >= INF


# -- length -----------------------------------------------------------------------------------
def test_short_budgets_always_complete(g):
    dec = make_decoder(g, "semantic", max_length=24)
    logits = torch.randn(300, 24, g.n_productions, generator=torch.Generator().manual_seed(3)) * 3
    out = dec.decode_logits(logits, mode="sample", generator=torch.Generator().manual_seed(4))
    assert bool(out.complete.all())
    parser = get_parser(g)
    strings = [parser.expand(r[: int(n)].tolist()) for r, n in zip(out.rules, out.lengths)]
    assert all(is_valid(s) for s in strings)


# -- vectorised = reference; data never masked; random logits valid -----------------------
def test_vectorised_constraints_match_the_reference(g, sem):
    B = 24
    gen = torch.Generator().manual_seed(11)
    out = make_decoder(g, "semantic", guide=False).decode_logits(
        torch.randn(B, g.max_length, g.n_productions, generator=gen) * 2, mode="sample", generator=gen)
    st = sem.init(B)
    refs = [ReferenceSemantics(g) for _ in range(B)]
    for t in range(g.max_length):
        if bool((out.rules[:, t] == g.pad).all()):
            break
        need = sem.needs(st)
        for b in range(B):
            rule = int(out.rules[b, t])
            if rule == g.pad:
                continue
            sym = g.lhs[rule]
            cands = [r for r in range(g.n_productions) if g.masks[sym, r]]
            ref_need = refs[b].needs()
            assert [min(int(need[b, r]), INF) for r in cands] == [ref_need[r] for r in cands], (t, b)
            refs[b].update(rule)
        sem.update(st, out.rules[:, t])


def test_real_molecules_are_never_masked_out(g, sem, kekule_zinc):
    parser = get_parser(g)
    rules = torch.full((len(kekule_zinc), g.max_length), g.pad, dtype=torch.long)
    for i, k in enumerate(kekule_zinc):
        seq = parser.parse(k)
        rules[i, : len(seq)] = torch.tensor(seq)
    from molshape.data.teacher_masks import first_violations, teacher_mask_bits

    bad = first_violations(rules, teacher_mask_bits(g, rules, chunk=1000, workers=1))
    # the completion bound is conservative only for rings over 8 atoms; none in this slice
    assert bad == []


def test_random_logits_decode_to_valid_molecules(g):
    """The property: any logits, decoded under semantic constraints, give molecules."""
    from molshape.scoring.chem_stats import failure_category

    dec = make_decoder(g, "semantic")
    parser = get_parser(g)
    gen = torch.Generator().manual_seed(0)
    reasons = []
    n = 0
    for scale in (0.0, 1.0, 4.0, 4.0):
        out = dec.decode_logits(torch.randn(500, g.max_length, g.n_productions, generator=gen) * scale,
                                mode="sample", generator=gen)
        for r, m, ok in zip(out.rules, out.lengths, out.complete):
            s = parser.expand(r[: int(m)].tolist()) if bool(ok) else None
            n += 1
            category = failure_category(s)
            if category != "valid":
                reasons.append((s, category))
    assert n == 2000
    assert len(reasons) <= 20, reasons[:10]  # >= 99 % valid; every failure is listed above
    assert reasons == []  # in fact none fail


def test_reference_decode_with_semantics_matches_vectorised(g):
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(12, g.max_length, g.n_productions, generator=gen)
    fast = make_decoder(g, "semantic", guide=False).decode_logits(logits)
    slow = reference_decode(g, logits, semantics=True)
    assert torch.equal(fast.rules, slow.rules) and torch.equal(fast.complete, slow.complete)


def test_semantics_only_for_grammars_that_have_them():
    assert semantics_for(load_grammar("smiles")) is None
    with pytest.raises(ValueError, match="no semantic constraints"):
        make_decoder(load_grammar("smiles"), "semantic")
    assert make_decoder(load_grammar("smiles"), "auto").semantics is None


def _avoided(g, sem, smiles: str, symbol: str, occurrence: int, literal: bool = False) -> set[str]:
    st = _state_before(g, sem, smiles, _step_of(g, smiles, symbol, occurrence, literal), literal)
    avoid = sem.guidance(st)[0]
    sym = g.symbols.index(symbol)
    return {str(g.productions[r]).split("-> ", 1)[1] for r in range(g.n_productions)
            if g.masks[sym, r] and bool(avoid[r])}


def test_guidance_closes_rings_at_eight_atoms_at_most(g, sem):
    # the 8th atom of an open ring is its last chance: ending its ring bonds is avoided ...
    # (``rings`` is expanded twice on the first atom, which writes a ring bond)
    assert "tail" in _avoided(g, sem, "C1CCCCCCC1", "rings", 8)
    # ... while one atom earlier it is not
    assert "tail" not in _avoided(g, sem, "C1CCCCCC1", "rings", 7)
    # a closure making a ring of 10 atoms is avoided, one making 8 is not
    assert "'1'" in _avoided(g, sem, "C1CCCCCCCC1", "ring", 1)
    assert "'1'" not in _avoided(g, sem, "C1CCCCCCC1", "ring", 1)


def test_guidance_avoids_an_eighth_ch2_in_a_row(g, sem):
    # at the 9th carbon of a chain, a single bond on would make atoms 2..9 eight CH2 in a row
    assert "chain" in _avoided(g, sem, "CCCCCCCCCC", "tail", 8)
    assert "chain" not in _avoided(g, sem, "CCCCCCCCCC", "tail", 7)
    # a branch point breaks the run
    assert "chain" not in _avoided(g, sem, "CCCCC(C)CCCCC", "tail", 9)


def test_guidance_agrees_with_real_molecules(g, sem, kekule_zinc):
    """Real derivations rarely go against the guidance, nearly always where two rings close on
    one atom and the longer is written first (the guidance writes the shorter first: the
    same molecule)."""
    parser = get_parser(g)
    n = 600
    rules = torch.full((n, g.max_length), g.pad, dtype=torch.long)
    for i, k in enumerate(kekule_zinc[:n]):
        seq = parser.parse(k)
        rules[i, : len(seq)] = torch.tensor(seq)
    st = sem.init(n)
    first = torch.full((n,), -1)
    for t in range(g.max_length):
        live = rules[:, t] != g.pad
        if not bool(live.any()):
            break
        ok = sem.allowed(st, g.max_length - t - 1, guide=True).gather(1, rules[:, t:t + 1]).squeeze(1)
        first[live & ~ok & (first < 0)] = t
        sem.update(st, rules[:, t])
    kinds = sem._kind
    disagree = (first >= 0).nonzero().flatten().tolist()
    two_closures = [i for i in disagree if [int(kinds[rules[i, int(first[i]) + j]]) for j in range(3)]
                    == [Kind.DIGIT, Kind.MORE_RINGS, Kind.DIGIT]]
    assert len(disagree) < n * 0.05
    assert len(disagree) - len(two_closures) <= n // 200, [kekule_zinc[i] for i in disagree if i not in two_closures]


def test_guided_decoding_stays_valid(g):
    parser = get_parser(g)
    logits = torch.randn(300, g.max_length, g.n_productions, generator=torch.Generator().manual_seed(8)) * 2
    out = make_decoder(g, "semantic", guide=True).decode_logits(logits, mode="sample",
                                                                generator=torch.Generator().manual_seed(9))
    assert bool(out.complete.all())
    assert all(is_valid(parser.expand(r[: int(n)].tolist())) for r, n in zip(out.rules, out.lengths))


def test_guidance_leaves_a_stranded_ring_to_the_length_bound(g, sem):
    # atom 10 is 10 bonds from the ring's opener: no closure can make a ring of <= 8 any more, so
    # ending the ring bonds is not avoided (before, one stranded ring steered every later step)
    assert "tail" not in _avoided(g, sem, "C1CCCCCCCCCC1", "rings", 11, literal=True)
    assert "tail" in _avoided(g, sem, "C1CCCCCCC1", "rings", 8, literal=True)  # still the last chance here


def test_guidance_avoids_opening_a_ring_with_the_last_bond(g, sem):
    # N=: one bond left, which a ring bond would take, leaving the chain no way on
    assert "'1'" in _avoided(g, sem, "CC(C=N1)CCC1", "ring", 0, literal=True)
    assert "'1'" not in _avoided(g, sem, "CC(CN1)CCC1", "ring", 0, literal=True)


def test_guidance_avoids_a_third_atom_with_two_ring_bonds(g, sem):
    two = "C12CCC2CC1C34CCC4CC3"  # two atoms carry two ring bonds each (ZINC never has three)
    assert "ring rings" in _avoided(g, sem, two + "C56CCC6CC5", "rings", 21, literal=True)
    assert "ring rings" not in _avoided(g, sem, "C12CCC2CC1C56CCC6CC5", "rings", 11, literal=True)


def test_guidance_wants_a_new_atom_that_can_carry_a_needed_chain_on(g, sem):
    # ring 1 can only close through this chain (no branch waits), so a new atom must keep a bond
    # to carry it on: F would end the chain and strand the ring
    avoided = _avoided(g, sem, "C1CCCCC(C)C1", "atom", 5, literal=True)
    assert "'F'" in avoided and "'C'" not in avoided
    assert "'F'" not in _avoided(g, sem, "CCCCCC(C)C", "atom", 5, literal=True)


def test_guidance_asks_for_no_ring_bond_when_every_one_is_to_be_avoided(g, sem):
    # the first atom has opened two rings (a third is avoided: ZINC never has one) and cannot
    # close its own, so a digit could only be one to avoid: the guided decoder moves on instead
    s = "C12CCCC1CC2"
    st = _state_before(g, sem, s, _step_of(g, s, "rings", 2, literal=True), literal=True)
    more = next(r for r in range(g.n_productions) if str(g.productions[r]) == "rings -> ring rings")
    assert bool(sem.allowed(st, 200, guide=False)[0, more])
    assert not bool(sem.allowed(st, 200, guide=True)[0, more])


def test_guidance_keeps_triple_bonds_out_of_rings(g, sem):
    # closing ring 1 across C#C would put the triple bond in the ring; across C=C it would not
    assert "'1'" in _avoided(g, sem, "C1CC#CCC1", "ring", 1, literal=True)
    assert "'1'" not in _avoided(g, sem, "C1CC=CCC1", "ring", 1, literal=True)
    # a triple bond on the chain while ring 1 waits for its closure is avoided; a nitrile in a
    # branch is not (the ring closes on the atoms after the branch)
    assert "'#'" in _avoided(g, sem, "C1CC#CCC1", "bond", 0, literal=True)
    assert "'#'" not in _avoided(g, sem, "C1CC(C#N)CC1", "bond", 0, literal=True)


def test_guidance_keeps_a_ring_that_needs_the_current_atom(g, sem):
    # rings 1 and 2 are open and no atom below a branch can close them: closing ring 1 with the
    # O's last bond would strand ring 2, so it is avoided; an N has a bond to spare, so not there
    assert "'1'" in _avoided(g, sem, "C1CCC2CO1", "ring", 2, literal=True)
    assert "'1'" not in _avoided(g, sem, "C1CCC2CN1", "ring", 2, literal=True)


def test_guidance_keeps_a_bond_for_each_ring_a_new_atom_must_serve(g, sem):
    # the 10th atom is ring 1's last chance (8 atoms from its opener) and ring 2, opened at the
    # end of a branch, can only close through this chain: the atom must close one ring and carry
    # the chain on, so an O (one bond after the incoming one) would strand ring 2; an N would not
    avoided = _avoided(g, sem, "C1CCCCCC(CC2)N1CC2", "atom", 9, literal=True)
    assert "'O'" in avoided and "'N'" not in avoided
    assert "'O'" not in _avoided(g, sem, "C1CCCCCC(CC)N1", "atom", 9, literal=True)  # no ring 2


def test_guidance_avoids_a_closure_that_leaves_too_few_bonds(g, sem):
    # N has two bonds left, and ring 1 is at its last chance there while ring 2 relies on the
    # chain going on: closing ring 3 first would leave one bond for two needs; closing ring 1
    # first leaves ring 3 and ring 2 to the chain. A C has a bond more, and may close ring 3.
    avoided = _avoided(g, sem, "C1CCCCCC(C3CC2)N31CC2", "ring", 3, literal=True)
    assert "'3'" in avoided and "'1'" not in avoided
    assert "'3'" not in _avoided(g, sem, "C1CCCCCC(C3CC2)C31CC2", "ring", 3, literal=True)
