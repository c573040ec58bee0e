"""Benchmark masked grammar decoding.

1. The masking and stack work alone: fixed random logits ``[B x 277 x 76]`` (SMILES
   grammar) decoded by the vectorised :class:`molshape.grammar.decoding.StackDecoder` and by the
   per-molecule Python-list reference (:func:`molshape.grammar.decoding.reference_decode`), same
   run, results asserted identical.
2. End to end: prior latents -> model -> masked decoding -> SMILES -> RDKit validity, with a
   given checkpoint or a freshly initialised ``cpu``-preset model (said so in the output).
3. Semantic decoding (``smiles_kekule``): random logits ``[B x 277 x 40]`` decoded with the
   grammar masks only, with the vectorised semantic constraints, and by the per-molecule
   reference loop (:class:`molshape.grammar.semantic_oracle.ReferenceSemantics`, on ``--reference-n``
   molecules, results asserted identical); then end to end with a Kekulé model
   (``--kekule-checkpoint``, default the shipped one) under both constraints.

4. Before and after (``--baseline REV``, a git revision): the shipped Kekulé model's
   end-to-end decode of the same prior latents by this tree and by the package as it was at
   REV (exported with ``git archive``, run in a subprocess), interleaved ``--rounds`` times,
   CPU time of the decode call, decoded strings asserted identical.

5. Model against model (``--compare A B ...``, checkpoints or shipped names): end-to-end decoding
   of each model's own prior latents (same seed), interleaved ``--rounds`` times, CPU time of the
   decode call; the first model is the reference. This is how a compressed model (the GRU run
   at choice points only) is measured against today's.

Headline (last line): with ``--compare``, the last model's speed-up over the first; with ``--baseline``, the end-to-end speed-up over REV; otherwise the
speed-up of semantic decoding over the per-molecule loop, and its cost against grammar-only
masking end to end.

Usage:
    python scripts/bench_decode.py [--batch 1000] [--checkpoint best.pt] [--device auto] [--threads N]
    python scripts/bench_decode.py --threads 1 --baseline <rev> [--only-e2e]
    python scripts/bench_decode.py --threads 1 --compare zinc-kekule-gmm-cpu runs/compressed/best.pt
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

from molshape.grammar.decoding import StackDecoder, reference_decode
from molshape.grammar.cfg import load_grammar


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
    ap.add_argument("--reference-n", type=int, default=40, help="molecules for the per-molecule semantic loop")
    ap.add_argument("--kekule-checkpoint", default=None, help="Kekulé model (default: the shipped one)")
    ap.add_argument("--baseline", default=None, help="git revision to compare end-to-end decoding against")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the before/after comparison")
    ap.add_argument("--allow-changes", action="store_true",
                    help="a baseline whose decodes differ (a change of the constraints): count them")
    ap.add_argument("--only-e2e", action="store_true", help="skip sections 1-3 (with --baseline)")
    ap.add_argument("--compare", nargs="+", default=None, metavar="MODEL",
                    help="models to time against the first, end to end (section 5 alone)")
    ap.add_argument("--e2e-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.e2e_worker:
        return e2e_worker(args)
    from molshape.core.runtime import resolve_device

    device = resolve_device(args.device)
    if args.only_e2e:
        return before_after(args)
    if args.compare:
        return compare(args, device)
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

    from molshape.gvae.generation import decode_latents, prior_latents
    from molshape.gvae.checkpoint import load_model
    from molshape.gvae.model import PRESETS, build_model

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
    semantic(args, device)
    if args.baseline:
        before_after(args)


def e2e_worker(args) -> None:
    """One timed end-to-end decode of the shipped Kekulé model's prior latents (JSON on stdout)."""
    from molshape.gvae.generation import decode_latents, prior_latents
    from molshape.gvae.checkpoint import load_model
    from molshape.pretrained import checkpoint_path

    model, g, _ = load_model(checkpoint_path("zinc-kekule-gmm-cpu"), "cpu")
    z = prior_latents(model, args.batch, torch.Generator().manual_seed(0))
    decode_latents(model, g, z[:16])  # warm-up
    c = time.process_time()
    out = decode_latents(model, g, z, batch_size=args.batch)
    cpu = time.process_time() - c
    print(json.dumps({"cpu_s": cpu, "raw": list(out.raw), "valid": sum(s is not None for s in out)}))


def _run_worker(root: Path, args) -> dict:
    env = dict(os.environ, PYTHONPATH=str(root))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--e2e-worker", "--batch", str(args.batch)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    res = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def before_after(args) -> None:
    """Section 4: this tree against ``args.baseline``, same latents, CPU time, interleaved."""
    here = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "base.tar"
        subprocess.run(["git", "archive", "-o", str(archive), args.baseline, "molshape", "grammars"],
                       cwd=here, check=True)
        base = Path(tmp) / "base"
        with tarfile.open(archive) as tar:
            tar.extractall(base, filter="data")
        t_old, t_new = [], []
        for _ in range(args.rounds):
            old, new = _run_worker(base, args), _run_worker(here, args)
            t_old.append(old["cpu_s"])
            t_new.append(new["cpu_s"])
            changed = sum(a != b for a, b in zip(old["raw"], new["raw"]))
            assert args.allow_changes or not changed, "decoded strings differ from the baseline"
    B = args.batch
    before, after = B / min(t_old), B / min(t_new)
    print(f"end to end, shipped Kekulé model, {B} prior latents, semantic masks, "
          f"{args.threads or torch.get_num_threads()} thread(s), CPU time, best of {args.rounds}:")
    print(f"  before ({args.baseline}): {before:7.1f} molecules/s")
    same = "identical decodes" if not changed else f"{changed} of {B} decodes differ"
    print(f"  after  (this tree)     : {after:7.1f} molecules/s; {new['valid']} of {B} valid; {same}")
    print(f"bench_decode: {after / before:.2f}x molecules/s end to end ({before:.0f} -> {after:.0f}) against "
          f"{args.baseline}, {same}")


def compare(args, device) -> None:
    """Section 5: end-to-end decoding of several models, interleaved, CPU time."""
    from molshape.gvae.checkpoint import load_model
    from molshape.gvae.generation import decode_latents, prior_latents
    from molshape.api import resolve_model

    B = args.batch
    models = []
    for name in args.compare:
        model, g, _ = load_model(resolve_model(name), device)
        z = prior_latents(model, B, torch.Generator().manual_seed(0))
        decode_latents(model, g, z[:16])  # warm-up
        models.append((name, model, g, z))
    best = {name: float("inf") for name in args.compare}
    stats: dict[str, tuple[int, float]] = {}
    for _ in range(args.rounds):
        for name, model, g, z in models:
            c = time.process_time()
            out = decode_latents(model, g, z, batch_size=B)
            best[name] = min(best[name], time.process_time() - c)
            valid = [s for s in out if s is not None]
            stats[name] = (len(valid), sum(len(s) for s in valid) / max(len(valid), 1))
    print(f"end to end, {B} prior latents of each model, {args.threads or torch.get_num_threads()} thread(s), "
          f"CPU time, best of {args.rounds}:")
    first, last = args.compare[0], args.compare[-1]
    for name, model, _, _ in models:
        extra = ", compressed derivations" if getattr(model.config, "compressed", False) else ""
        print(f"  {name}{extra}: {B / best[name]:7.1f} molecules/s ({best[name] / best[first]:.2f}x the time of "
              f"{first}); {stats[name][0]} of {B} valid, mean SMILES length {stats[name][1]:.1f}")
    print(f"bench_decode: {best[first] / best[last]:.2f}x molecules/s end to end, {last} against {first} "
          f"({B / best[first]:.0f} -> {B / best[last]:.0f}, one process, interleaved)")


def semantic(args, device) -> None:
    """Section 3: semantic constraints against grammar-only masking and the per-molecule loop."""
    from molshape.scoring.chem import is_valid
    from molshape.grammar.decoding import make_decoder
    from molshape.gvae.generation import decode_latents, prior_latents
    from molshape.gvae.checkpoint import load_model
    from molshape.grammar.parser import get_parser

    g = load_grammar("smiles_kekule")
    B, T, R = args.batch, g.max_length, g.n_productions
    logits = torch.randn(B, T, R, generator=torch.Generator().manual_seed(0)).to(device)
    # the reference loop has the hard constraints only, so the identity check runs unguided
    plain, sem = make_decoder(g, "grammar"), make_decoder(g, "semantic", guide=False)
    guided = make_decoder(g, "semantic")
    sem.decode_logits(logits[:8])
    fast_g, t_g = timed(lambda: plain.decode_logits(logits), args.repeats)
    fast_s, t_s = timed(lambda: sem.decode_logits(logits), args.repeats)
    _, t_guided = timed(lambda: guided.decode_logits(logits), args.repeats)
    k = min(args.reference_n, B)
    slow, t_ref = timed(lambda: reference_decode(g, logits[:k].cpu(), semantics=True), 1)
    assert torch.equal(fast_s.rules[:k].cpu(), slow.rules) and torch.equal(fast_s.complete[:k].cpu(), slow.complete)
    parser = get_parser(g)
    valid = sum(is_valid(parser.expand(r[: int(n)].tolist())) for r, n, c in
                zip(fast_s.rules.cpu(), fast_s.lengths.cpu(), fast_s.complete.cpu()) if c)
    rate_s, rate_ref = B / t_s, k / t_ref
    print(f"kekule grammar, random logits {B} x {T} x {R}:")
    print(f"  grammar masks only, vectorised : {B / t_g:10.0f} seq/s ({int(fast_g.complete.sum())} of {B} complete)")
    print(f"  semantic, vectorised           : {rate_s:10.0f} seq/s ({int(fast_s.complete.sum())} complete, "
          f"{valid} RDKit-valid)")
    print(f"  semantic + guidance, vectorised: {B / t_guided:10.0f} seq/s")
    print(f"  semantic, per-molecule loop    : {rate_ref:10.1f} seq/s (first {k}; identical results: yes)")

    path = args.kekule_checkpoint
    if path is None:
        from molshape.pretrained import checkpoint_path

        path = checkpoint_path("zinc-kekule-gmm-cpu")
    model, g2, _ = load_model(path, device)
    z = prior_latents(model, B, torch.Generator().manual_seed(0))
    decode_latents(model, g2, z[:16])  # warm-up
    res = {}
    for c in ("grammar", "semantic"):
        out, t = timed(lambda: decode_latents(model, g2, z, batch_size=B, constraints=c), 1)
        res[c] = (t, sum(s is not None for s in out))
        print(f"  end to end, {c:8s} constraints ({path}): {B / t:7.0f} molecules/s, {res[c][1]} of {B} valid")
    ratio = res["semantic"][0] / res["grammar"][0]
    print(f"decode_semantic: {rate_s / rate_ref:.1f}x faster than the per-molecule loop, "
          f"{t_s / t_g:.1f}x the time of grammar masks on the same logits; end to end "
          f"{ratio:.2f}x the time of grammar-only masking ({res['semantic'][1]} vs {res['grammar'][1]} of {B} valid, "
          f"{device})")


if __name__ == "__main__":
    main()
