"""Print what a checkpoint's latent space holds, one line per metric, and a headline last.

The metrics are ``molshape evaluate``'s ``latent`` section (``Model.latent_metrics``, see
docs/latent-space.md) on the first ``--limit`` molecules of the checkpoint's test split:
exact reconstruction (argmax, beam, GVAE protocol), round-trip similarity, teacher-forced
NLL with own / shuffled / zero latents, and the neighbourhood curve. The data are the
checkpoint's own (found through ``$MOLSHAPE_DATA_DIR`` or ``--data``).

Usage:
    python scripts/latent_report.py CHECKPOINT [--limit 2000] [--beam-width 5] [--gvae-samples 10]
        [--refine-steps 300] [--refine-limit 200] [--threads 1] [--device cpu] [--data FILE] [--out DIR] [--json FILE]

CHECKPOINT: a best.pt / last.pt path, or a shipped model's name (zinc-kekule-gmm-cpu).
Last line: ``latent: <argmax %> exact (beam k <%>, GVAE protocol <%>), tanimoto <mean> ...``.
"""

from __future__ import annotations

import argparse
import time

import torch

import molshape
from molshape.core.atomic import write_json
from molshape.gvae.metrics import flat_numbers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", help="checkpoint file or shipped model name")
    ap.add_argument("--limit", type=int, default=2000, help="test molecules (default 2000)")
    ap.add_argument("--split", default="test", choices=("test", "valid", "train"))
    ap.add_argument("--beam-width", type=int, default=5, help="0 skips the beam")
    ap.add_argument("--gvae-samples", type=int, default=10, help="0 skips the GVAE protocol")
    ap.add_argument("--refine-steps", type=int, default=300, help="refined-encoding steps at most (0 skips them)")
    ap.add_argument("--refine-limit", type=int, default=200, help="molecules whose latents are refined (default 200)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    ap.add_argument("--data", default=None, help="the checkpoint's training data file (default: found)")
    ap.add_argument("--out", default=None, help="folder for the two PNGs (molecules)")
    ap.add_argument("--json", dest="json_path", default=None, help="also write the metrics to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = molshape.load(args.checkpoint, device=args.device)
    t0 = time.perf_counter()
    lat = model.latent_metrics(args.out, split=args.split, limit=args.limit, data=args.data,
                               beam_width=args.beam_width, gvae_samples=args.gvae_samples,
                               refine_steps=args.refine_steps, refine_limit=args.refine_limit, progress=True)
    wall = time.perf_counter() - t0
    for key, value in flat_numbers({k: v for k, v in lat.items() if k not in ("options", "files")}).items():
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    for name, path in lat["files"].items():
        print(f"file {name}: {path}")
    print(f"checkpoint: {model.path}; wall {wall:.0f} s on {args.threads} thread(s)")
    if args.json_path:
        write_json(args.json_path, {"checkpoint": str(model.path), "wall_s": round(wall, 1), "latent": lat})
    print(headline(lat))


def headline(lat: dict) -> str:
    """``latent: 0.1% exact (beam 5 0.4%, GVAE protocol 0.2%), tanimoto 0.270 (>= 0.8: 1.0%), ...``."""
    r, nll, nb = lat["recon"], lat["nll"], lat["neighbourhood"]
    sim = "tanimoto" if lat["similarity"].startswith("tanimoto") else "string-equality"

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.1%}"

    text = (f"latent: {pct(r['argmax'])} exact (argmax; beam {lat['beam']['width'] or '-'} {pct(r['beam'])}, "
            f"GVAE protocol {pct(r['gvae_protocol'])}), {sim} {lat['roundtrip']['mean']:.3f} "
            f"(>= 0.8: {pct(lat['roundtrip']['share_ge_0.8'])})")
    if nll["own"] is not None:
        text += f", NLL {nll['own']:.2f} nats (shuffled {nll['shuffled']:.2f}, carried {nll['nats_carried']:.2f})"
    text += ", neighbourhood " + " ".join(f"{k.removeprefix('sigma_')}:{v:.2f}" for k, v in nb.items())
    ref = lat["refined"]
    if ref["n"]:
        text += (f", refined ({ref['n']}, {ref['steps']} steps) {pct(ref['exact'])} exact, tanimoto "
                 f"{ref['tanimoto_mean']:.3f}, NLL {ref['nll_after']:.2f}")
    return text + f", n {lat['n']}"


if __name__ == "__main__":
    main()
