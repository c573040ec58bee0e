"""``molshape evaluate``: reconstruction, prior-sample quality and latent-shape metrics of a checkpoint."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import click
import torch

from molshape.commands.common import checkpoint_option, emit_summary, inference_options, load_run_model, write_run_config

GRID = 30  # molecules drawn in samples.png


def _key(*parts: Any) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:24]


def _split_key(idx: torch.Tensor) -> str:
    return hashlib.sha256(idx.numpy().tobytes()).hexdigest()[:16]


@click.command("evaluate", epilog="Outputs: <out>/samples.txt, samples.png (SMILES), latents.png, "
               "config.json, summary.json; one row per run appended to evaluate.csv beside the checkpoint (runs/ for shipped models).")
@checkpoint_option
@click.option("--split", type=click.Choice(["test", "valid", "train"]), default="test", show_default=True,
              help="Held-out split for reconstruction, FCD reference and KS statistics.")
@click.option("--n", "n", default=10_000, show_default=True, type=click.IntRange(min=2),
              help="Prior samples for validity / uniqueness / novelty / FCD (MOSES, GuacaMol: 10,000).")
@click.option("--limit", "limit", default=None, type=click.IntRange(min=2),
              help="Use only the first N molecules of the split (smoke runs).")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The checkpoint's training data file (default: the standard data set).")
@click.option("--no-fcd", "no_fcd", is_flag=True, help="Skip the Frechet ChemNet Distance.")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(min=1))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder [default: evaluate-<checkpoint name> beside the checkpoint].")
@inference_options
def command(checkpoint: Path | None, grammar: str, split: str, n: int, limit: int | None, data: Path | None,
            no_fcd: bool, batch_size: int, out_dir: Path | None, seed: int, device: str, threads: int | None,
            as_json: bool) -> None:
    """Reconstruction accuracy on a held-out split, and validity, uniqueness, novelty, FCD and
    latent KS statistics of prior samples of a trained grammar autoencoder."""
    from molshape import generation as gen
    from molshape import metrics
    from molshape.runtime import seed_everything

    checkpoint, dev, model, g, ckpt = load_run_model(checkpoint, grammar, device, threads)
    from molshape.pretrained import pretrained_dir

    # results sit beside the checkpoint, except for shipped models (the package folder may be read-only)
    home = Path("runs") if checkpoint.resolve().parent == pretrained_dir().resolve() else checkpoint.parent
    out_dir = out_dir or home / f"evaluate-{checkpoint.stem}"
    generator = seed_everything(seed)
    write_run_config(out_dir, {"checkpoint": checkpoint, "split": split, "n": n, "limit": limit, "data": data,
                               "fcd": not no_fcd, "seed": seed, "device": str(dev)})
    try:
        prepared = gen.checkpoint_data(ckpt, g, data)
    except ValueError as e:
        raise click.UsageError(f"{checkpoint}: {e}") from e
    held = ckpt["split"][split][:limit]
    train = ckpt["split"]["train"]
    summary: dict[str, Any] = {"checkpoint": str(checkpoint), "grammar": g.name,
                               "objective": model.config.objective, "split": split, "device": str(dev)}

    # reconstruction of held-out molecules, and the shape of their latents
    t0 = time.perf_counter()
    recon, z = metrics.reconstruction(model, g, prepared.rules[held], prepared.lengths[held], batch_size,
                                      progress=True)
    t_recon = time.perf_counter() - t0
    prior = model.objective.prior
    summary["reconstruction"] = recon
    summary["latents"] = {**metrics.ks_statistics(z, prior), "n_components": prior.n_components}

    # prior samples
    t0 = time.perf_counter()
    samples = gen.decode_latents(model, g, gen.prior_latents(model, n, generator), batch_size=batch_size,
                                 progress=True)
    t_sample = time.perf_counter() - t0
    train_strings = [prepared.strings[i] for i in train.tolist()]
    reference = metrics.reference_set(g, train_strings, key=_key(prepared.source_sha256, _split_key(train)),
                                      progress=True)
    summary["samples"] = {**metrics.sample_metrics(g, samples, reference), "n_incomplete": samples.n_incomplete}
    if g.name == "smiles" and not no_fcd:
        valid = [s for s in samples if s is not None]
        held_strings = [prepared.strings[i] for i in held.tolist()]
        try:
            summary["samples"]["fcd"] = metrics.fcd(valid, held_strings, dev,
                                                    reference_key=_key(prepared.source_sha256, _split_key(held)))
        except ValueError as e:
            summary["samples"]["fcd"] = None
            summary["samples"]["fcd_skipped"] = str(e)
    summary["timing"] = {"reconstruct_s_per_1000": round(1000 * t_recon / max(len(held), 1), 3),
                         "sample_s_per_1000": round(1000 * t_sample / n, 3)}

    # outputs a person looks at
    (out_dir / "samples.txt").write_text("\n".join(s if s is not None else f"# {r}"
                                                   for s, r in zip(samples, samples.reasons)) + "\n")
    files = {"samples": str(out_dir / "samples.txt")}
    if g.name == "smiles":
        from molshape.chem import draw_grid

        valid = [s for s in samples if s is not None][:GRID]
        if valid:
            files["grid"] = str(draw_grid(valid, None, out_dir / "samples.png"))
    files["latents"] = str(metrics.plot_latents(
        z, prior.assign(z.to(prior.centers.device)).cpu(), out_dir / "latents.png",
        f"{split} latents (PCA), coloured by mixture component", centers=prior.centers.cpu()))
    summary["files"] = files
    import json

    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    metrics.append_csv(home / "evaluate.csv",
                       {"checkpoint": str(checkpoint), **metrics.flat_numbers({k: v for k, v in summary.items()
                                                                               if k not in ("files", "checkpoint")})})
    emit_summary(summary, as_json, _human)


def _human(s: dict[str, Any]) -> str:
    r, m, lat, t = s["reconstruction"], s["samples"], s["latents"], s["timing"]
    lines = [
        f"{s['checkpoint']} ({s['grammar']}, {s['objective']})",
        f"reconstruction ({s['split']}, {r['n_recon']} molecules, argmax): whole sequence {r['recon_sequence']:.1%}, "
        f"same canonical string {r['recon_canonical']:.1%}; per-rule accuracy {r['recon_per_rule']:.1%} "
        "(per rule, NOT per molecule)",
        f"prior samples ({m['n_samples']}): validity {m['validity']:.1%}, uniqueness {m['uniqueness']:.1%}, "
        f"novelty {m.get('novelty', float('nan')):.1%}, incomplete {m['n_incomplete']}"
        + (f", FCD {m['fcd']:.2f}" if m.get("fcd") is not None else ""),
        f"latents vs prior: KS mean {lat['ks_mean']:.3f}, max {lat['ks_max']:.3f}",
        f"time: {t['reconstruct_s_per_1000']:.2f} s per 1,000 reconstructions, "
        f"{t['sample_s_per_1000']:.2f} s per 1,000 samples",
        f"outputs: {', '.join(s['files'].values())}",
    ]
    return "\n".join(lines)
