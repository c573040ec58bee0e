"""Training under semantic constraints: the teacher masks a batch carries are the masks the
semantic decoder applies along the same derivation, and training under them learns."""

from __future__ import annotations

import multiprocessing
import signal
from pathlib import Path

import pytest
import torch

from molshape.core.runtime import init_pool_worker
from molshape.data.datasets import prepare_dataset
from molshape.data.teacher_masks import TeacherMasks, pack_masks, teacher_mask_bits, unpack_masks
from molshape.grammar.cfg import load_grammar
from molshape.grammar.decoding import make_decoder
from molshape.gvae.model import PRESETS, build_model

ZINC = Path(__file__).resolve().parents[1] / "fixtures" / "zinc_2k.smi"


@pytest.fixture(scope="module")
def kekule():
    """120 ZINC molecules of the committed slice, parsed with the Kekulé grammar."""
    lines = [line.split()[0] for line in ZINC.read_text().splitlines() if line.strip()][:120]
    grammar = load_grammar("smiles_kekule")
    data = prepare_dataset(grammar, lines, test_size=0.1, cache=False, workers=1, progress=False)
    return grammar, data


def test_pack_and_unpack_are_inverse() -> None:
    gen = torch.Generator().manual_seed(0)
    for n_rules in (1, 40, 64):
        masks = torch.rand(3, 7, n_rules, generator=gen) < 0.5
        assert torch.equal(unpack_masks(pack_masks(masks), n_rules), masks)
    with pytest.raises(ValueError, match="65 rules"):
        pack_masks(torch.ones(2, 65, dtype=torch.bool))


def test_teacher_masks_are_the_decoders_masks_on_real_molecules(kekule) -> None:
    """Decode each molecule's own derivation (one-hot logits) with the semantic decoder and
    record the rules it allows at every step: the stored masks hold exactly those."""
    grammar, data = kekule
    rules, lengths = data.rules[:60], data.lengths[:60]
    store = TeacherMasks.build(grammar, data.rules, torch.arange(60))
    bits = store[torch.arange(60)]
    dec = make_decoder(grammar, "semantic", guide=False)
    seen: list[torch.Tensor] = []
    allowed = dec._allowed

    def recording(sem, t):
        out = allowed(sem, t)
        seen.append(out.clone())
        return out

    dec._allowed = recording
    logits = torch.nn.functional.one_hot(rules, grammar.n_productions).float() * 10
    out = dec.decode_logits(logits)
    assert torch.equal(out.rules, rules) and bool(out.complete.all())  # the true rules are always allowed
    decoder_masks = torch.stack(seen, dim=1)  # [B, steps, R]
    stored = unpack_masks(bits[:, : decoder_masks.shape[1]], grammar.n_productions)
    live = torch.arange(decoder_masks.shape[1]) < lengths.unsqueeze(1)
    assert torch.equal(stored[live], decoder_masks[live])
    assert bool((~stored[live]).any())  # the constraints do forbid rules on these molecules
    # each row's masks do not depend on the rows computed with it
    assert torch.equal(teacher_mask_bits(grammar, rules[7:9]), bits[7:9])
    with pytest.raises(KeyError, match="not computed"):
        store[torch.tensor([100])]


def test_training_under_carried_masks_runs_and_lowers_the_loss(kekule) -> None:
    grammar, data = kekule
    cfg = PRESETS["smiles_kekule"]["cpu"].replace(dec_hidden=32, dec_layers=1, enc_dense=32, enc_hidden=32,
                                                 latent_dim=8, rule_dropout=0.0)
    cfg = cfg.replace(objective=cfg.objective.fitted_to_batch(40))
    torch.manual_seed(0)
    model = build_model(cfg, grammar)
    rows = torch.arange(40)
    rules, lengths = data.rules[rows], data.lengths[rows]
    masks = TeacherMasks.build(grammar, data.rules, rows)[rows]
    # the carried masks give the loss that the model's own (slow) mask computation gives
    model.eval()
    with torch.no_grad():
        carried, computed = model(rules, lengths, masks), model(rules, lengths)
    assert torch.equal(carried["loss"], computed["loss"])
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        out = model(rules, lengths, masks)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["rec"]))
    assert losses[-1] < 0.9 * losses[0]  # 145 -> 117 nats per molecule here



def _signal_handlers(_: int) -> tuple[str, str]:
    return tuple(h.name if isinstance(h, signal.Handlers) else h.__name__
                 for h in (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)))


def test_forked_workers_do_not_keep_the_clis_signal_handlers() -> None:
    # with the CLI's SIGTERM handler (raise KeyboardInterrupt), every worker of a pool that was
    # shut down printed a traceback into the logs; Ctrl-C is the parent's to handle
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        with multiprocessing.get_context("fork").Pool(2, initializer=init_pool_worker) as pool:
            handlers = set(pool.map(_signal_handlers, range(4)))
        with multiprocessing.get_context("fork").Pool(1) as pool:
            inherited = pool.map(_signal_handlers, range(1))[0]
    finally:
        signal.signal(signal.SIGTERM, before)
    assert handlers == {("SIG_DFL", "SIG_IGN")}
    assert inherited[0] == "interrupt"  # what a worker holds without the initializer
