"""Benchmark masked grammar decoding.

1. The masking and stack work alone: fixed random logits ``[B x 277 x 76]`` (SMILES
   grammar) decoded by the vectorised :class:`molshape.decoding.StackDecoder` and by the
   per-molecule Python-list reference (:func:`molshape.decoding.reference_decode`), same
   run, results asserted identical.
2. End to end: prior latents -> model -> masked decoding -> SMILES -> RDKit validity, with a
   given checkpoint or a freshly initialised ``cpu``-preset model (said so in the output).

Headline (last line): the speed-up of 1.

Usage:
    python scripts/bench_decode.py [--batch 1000] [--checkpoint best.pt] [--device auto] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch

from molshape.decoding import StackDecoder, reference_decode
from molshape.grammar import load_grammar


def timed(fn, repeats: int = 1):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return out, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--checkpoint", default=None, help="trained model for the end-to-end figure")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from molshape.runtime import resolve_device

    device = resolve_device(args.device)
    g = load_grammar("smiles")
    B, T, R = args.batch, g.max_length, g.n_productions
    logits = torch.randn(B, T, R, generator=torch.Generator().manual_seed(0))
    print(f"device {device}, torch threads {torch.get_num_threads()}, logits {B} x {T} x {R}")

    dec = StackDecoder(g)
    on_dev = logits.to(device)
    dec.decode_logits(on_dev[:8])  # warm-up (tables on the device, kernels)
    fast, t_fast = timed(lambda: dec.decode_logits(on_dev), args.repeats)
    slow, t_slow = timed(lambda: reference_decode(g, logits), 1)
    assert torch.equal(fast.rules.cpu(), slow.rules) and torch.equal(fast.complete.cpu(), slow.complete)
    print(f"stack decoding, vectorised   : {B / t_fast:10.0f} seq/s ({t_fast * 1e3:.1f} ms per {B})")
    print(f"stack decoding, python lists : {B / t_slow:10.0f} seq/s ({t_slow * 1e3:.1f} ms per {B})")
    print(f"identical results: yes ({int(fast.complete.sum())} of {B} complete on random logits)")

    from molshape.generation import decode_latents, prior_latents
    from molshape.model import PRESETS, build_model, load_model

    if args.checkpoint:
        model, g2, _ = load_model(args.checkpoint, device)
        what = f"checkpoint {args.checkpoint}"
    else:
        torch.manual_seed(0)
        model, g2 = build_model(PRESETS["smiles"]["cpu"], g).to(device).eval(), g
        what = "a freshly initialised cpu-preset model (untrained: validity is meaningless, speed is not)"
    z = prior_latents(model, B, torch.Generator().manual_seed(0))
    decode_latents(model, g2, z[:16])  # warm-up
    out, t_e2e = timed(lambda: decode_latents(model, g2, z, batch_size=B), 1)
    valid = sum(s is not None for s in out)
    print(f"end to end ({what}): {B / t_e2e:.0f} molecules/s, {t_e2e:.2f} s per {B} "
          f"(model + stack + expand + RDKit); {valid} valid, {out.n_incomplete} incomplete")
    print(f"decode_stack: {t_slow / t_fast:.1f}x faster vectorised stack decoding than the per-molecule "
          f"Python loop ({B} x {T} x {R} logits, {device})")


if __name__ == "__main__":
    main()
