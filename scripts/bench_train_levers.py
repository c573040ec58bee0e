"""Training molecules/s per core of the Kekulé SMILES model: the shipped model's design against
the current preset, and the CPU levers on the current preset, side by side in one run.

Variants (all on the same real ZINC batches, forward + backward + Adam step, one thread):

* ``shipped``: the design of the shipped ``zinc-kekule-gmm-cpu`` (its saved model config);
* ``preset``: today's Kekulé CPU preset (bidirectional GRU encoder, z as the decoder's
  initial state, rule dropout), fp32;
* ``preset, batch B`` / ``shipped, batch B``: a larger batch (``--big-batch``), per molecule;
* ``preset+compressed`` / ``shipped+compressed``: compressed derivations (the decoder GRU runs at
  choice points only);
* where the CPU has bf16 arithmetic (AVX512-BF16 or AMX): ``preset+bf16`` (the same under
  ``torch.autocast("cpu", dtype=torch.bfloat16)``), ``preset+bf16, batch B`` and
  ``shipped+bf16, batch B``; on other CPUs bf16 autocast is about 16x slower and is left out;
* ``preset[+bf16]+compressed, batch B`` / ``shipped[+bf16]+compressed, batch B``: the levers
  together;
* ``preset+compile``: ``torch.compile`` of the model (with ``--compile``; its compile time is
  reported apart).

The variants take turns batch by batch, so machine load affects them alike; the time is CPU
time of this process (robust to other jobs on a shared machine). The semantic teacher masks of
every batch are computed once before timing and passed in, as training does, so the figures
are the steady state of a training run. bf16 is also checked for its effect on the loss on the same batch.

Usage:
    python scripts/bench_train_levers.py [--limit 3000] [--batches 6] [--big-batch 250] [--compile]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from molshape.core.runtime import cpu_bf16_supported
from molshape.data.batching import bucket_batches
from molshape.data.datasets import PreparedData, load_dataset
from molshape.data.teacher_masks import TeacherMasks
from molshape.grammar.cfg import load_grammar
from molshape.gvae.checkpoint import ModelCheckpoint
from molshape.gvae.model import PRESETS, ModelConfig, build_model, rec_heuristic
from molshape.pretrained import checkpoint_path


def stepper(model: torch.nn.Module, bf16: bool, data: PreparedData, masks: TeacherMasks) -> Callable[[torch.Tensor], tuple[float, float]]:
    """One Adam step per call on data rows ``idx`` (their teacher masks precomputed, as in
    training); returns (CPU seconds, loss)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(idx: torch.Tensor) -> tuple[float, float]:
        rules, lengths = data.rules[idx].long(), data.lengths[idx]
        c0 = time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(rules, lengths, masks[idx])
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        return time.process_time() - c0, float(out["loss"].detach())

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=3000, help="molecules read from ZINC")
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--big-batch", type=int, default=250)
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)

    grammar = load_grammar("smiles_kekule")
    data = load_dataset("smiles_kekule", limit=args.limit, progress=False)
    idx = data.split["train"]
    gen = torch.Generator().manual_seed(0)
    small = bucket_batches(data.lengths[idx], args.batch_size, gen, indices=idx)[: args.batches]
    big = bucket_batches(data.lengths[idx], args.big_batch, torch.Generator().manual_seed(0),
                         indices=idx)[: max(1, args.batches * args.batch_size // args.big_batch)]
    lam = rec_heuristic(grammar, data.rules[idx])
    masks = TeacherMasks.build(grammar, data.rules, torch.cat(small + big))
    shipped_cfg = ModelCheckpoint.load(checkpoint_path("zinc-kekule-gmm-cpu")).config

    def model(cfg: ModelConfig, batch_size: int) -> torch.nn.Module:
        torch.manual_seed(0)
        return build_model(cfg.replace(objective=cfg.objective.fitted_to_batch(batch_size), lambda_rec=lam), grammar)

    preset = PRESETS["smiles_kekule"]["cpu"]
    compressed = preset.replace(compressed=True)
    # bf16 variants only where the CPU has bf16 arithmetic: elsewhere autocast is ~16x slower
    # and training falls back to float32 (molshape.core.runtime.cpu_bf16_supported)
    bf16 = cpu_bf16_supported()
    lever, B = ("+bf16" if bf16 else ""), args.big_batch
    print(f"CPU bf16 arithmetic: {'yes' if bf16 else 'no (bf16 variants left out)'}", flush=True)
    specs = {  # name: (config, bf16, batch size)
        "shipped": (shipped_cfg, False, args.batch_size),
        "preset": (preset, False, args.batch_size),
        f"preset, batch {B}": (preset, False, B),
        f"shipped, batch {B}": (shipped_cfg, False, B),
        "preset+compressed": (compressed, False, args.batch_size),
        "shipped+compressed": (shipped_cfg.replace(compressed=True), False, args.batch_size),
    }
    if bf16:
        specs |= {"preset+bf16": (preset, True, args.batch_size),
                  f"preset+bf16, batch {B}": (preset, True, B),
                  f"shipped+bf16, batch {B}": (shipped_cfg, True, B)}
    specs |= {f"preset{lever}+compressed, batch {B}": (compressed, bf16, B),
              f"shipped{lever}+compressed, batch {B}": (shipped_cfg.replace(compressed=True), bf16, B)}
    variants: dict[str, tuple[Callable, list]] = {
        name: (stepper(model(cfg, size), half, data, masks), small if size == args.batch_size else big)
        for name, (cfg, half, size) in specs.items()}
    if args.compile:
        m = model(preset, args.batch_size)
        t0 = time.perf_counter()
        compiled = torch.compile(m)
        s = stepper(compiled, False, data, masks)
        b = small[0]
        s(b)
        print(f"torch.compile: first step (compilation) {time.perf_counter() - t0:.0f} s", flush=True)
        variants["preset+compile"] = (s, small)

    # one-off set-up out of the timing: one untimed step of every variant on
    # every batch it will see
    for name, (step, batches) in variants.items():
        for b in batches:
            step(b)
    # bf16 against fp32 on the same weights and batch
    b = small[0]
    m32 = model(preset, args.batch_size).eval()
    with torch.no_grad():
        l32 = float(m32(data.rules[b].long(), data.lengths[b])["rec"])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            l16 = float(m32(data.rules[b].long(), data.lengths[b])["rec"])
    print(f"loss check, same weights and batch: fp32 rec {l32:.4f}, bf16 autocast rec {l16:.4f}", flush=True)

    seconds = dict.fromkeys(variants, 0.0)
    items = dict.fromkeys(variants, 0)
    rounds = max(len(v[1]) for v in variants.values())
    for i in range(rounds):
        for name, (step, batches) in variants.items():
            if i < len(batches):
                b = batches[i]
                dt, _ = step(b)
                seconds[name] += dt
                items[name] += len(b)
    rate = {k: items[k] / seconds[k] for k in variants}
    for k in variants:
        print(f"{k:>36}: {rate[k]:6.1f} molecules/s per core ({rate[k] / rate['shipped']:.2f}x shipped, "
              f"{items[k]} molecules)")
    every = f"preset{lever}+compressed, batch {B}"
    best = max(rate, key=rate.get)
    print(f"bench_train_levers: {rate[every] / rate['shipped']:.2f}x training molecules/s per core, {every} against "
          f"the shipped model's design and settings ({rate['shipped']:.1f} -> {rate[every]:.1f}); preset fp32 "
          f"{rate['preset'] / rate['shipped']:.2f}x, compressed {rate['preset+compressed'] / rate['preset']:.2f}x the "
          f"preset and {rate['shipped+compressed'] / rate['shipped']:.2f}x the shipped design"
          + (f", bf16 {rate['preset+bf16'] / rate['preset']:.2f}x the preset" if bf16 else "")
          + f"; fastest: {best} {rate[best] / rate['shipped']:.2f}x")

if __name__ == "__main__":
    main()
