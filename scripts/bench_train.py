"""Training throughput with length bucketing against padding every batch to 277 steps.

Same run, same batches (a few bucketed batches of ZINC), forward + backward + Adam step,
the two variants interleaved batch by batch so machine load affects both alike. The only
difference is the decoder length: the longest sequence in the batch (bucketed) or the
grammar's max length (full padding); the loss value is identical (checked).

Usage:
    python scripts/bench_train.py [--preset paper] [--batches 4] [--batch-size 100] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from molshape.data.batching import bucket_batches
from molshape.data.datasets import load_dataset
from molshape.gvae.model import PRESETS, build_model, rec_heuristic
from molshape.core.runtime import resolve_device


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="paper", choices=["paper", "cpu"])
    ap.add_argument("--model", default="gmm", choices=["gmm", "vae", "rae", "ae"])
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--limit", type=int, default=5000, help="training items read from ZINC")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = resolve_device(args.device)

    data = load_dataset("smiles", limit=args.limit, progress=False)
    idx = data.split["train"]
    batches = bucket_batches(data.lengths[idx], args.batch_size, torch.Generator().manual_seed(0),
                             indices=idx)[: args.batches]
    from molshape.grammar.cfg import load_grammar

    grammar = load_grammar("smiles")
    cfg = PRESETS["smiles"][args.preset].replace(objective=args.model,
                                                 lambda_rec=rec_heuristic(grammar, data.rules[idx]))
    cfg = cfg.replace(objective=cfg.objective.fitted_to_batch(args.batch_size))
    model = build_model(cfg, grammar).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    def step(rules: torch.Tensor, lengths: torch.Tensor) -> float:
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            out = model(rules, lengths)
        opt.zero_grad(set_to_none=True)
        scaler.scale(out["loss"]).backward()
        scaler.step(opt)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize()
            return time.perf_counter() - t0
        return time.process_time() - c0  # CPU time: robust to other processes on a shared machine

    # equal-loss check: bucketing must not change the loss value
    b0 = batches[0]
    r0, n0 = data.rules[b0].long().to(device), data.lengths[b0].to(device)
    with torch.no_grad():
        model.eval()
        l_bucket = model(r0, n0)["rec"].item()
        l_full = model(r0, torch.full_like(n0, grammar.max_length))["rec"].item()
        model.train()
    print(f"loss check: bucketed rec {l_bucket:.6f}, full-padding rec {l_full:.6f}")

    step(r0, n0)  # warm-up
    t_bucket = t_full = 0.0
    n_items = 0
    steps_bucket = steps_full = 0
    for i, b in enumerate(batches):
        rules, lengths = data.rules[b].long().to(device), data.lengths[b].to(device)
        full = torch.full_like(lengths, grammar.max_length)
        t_bucket += step(rules, lengths)
        t_full += step(rules, full)
        n_items += len(b)
        steps_bucket += int(lengths.max()) * len(b)
        steps_full += grammar.max_length * len(b)
        print(f"batch {i}: max length {int(lengths.max())}, bucketed {n_items / t_bucket:.1f} mol/s, "
              f"full {n_items / t_full:.1f} mol/s")
    unit = "GPU wall" if device.type == "cuda" else f"CPU-time, {args.threads} thread(s)"
    print(f"preset {args.preset}: {n_items} molecules, decoder steps {steps_bucket} vs {steps_full} "
          f"({steps_full / steps_bucket:.2f}x)")
    print(f"bucketed: {n_items / t_bucket:.1f} mol/s; full padding: {n_items / t_full:.1f} mol/s ({unit})")
    print(f"bucketing_speedup: {t_full / t_bucket:.2f}x molecules/s, {args.preset} preset, "
          f"batch {args.batch_size}, {len(batches)} batches, {device.type}")


if __name__ == "__main__":
    main()
