"""``molshape evaluate``: reconstruction, prior-sample quality and latent-shape metrics of a checkpoint."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
import torch

from molshape.core.atomic import PartialFile, append_csv_row, atomic_path, write_json
from molshape.grammar.decoding import MODES
from molshape.cli.common import (check_constraints, check_out_dir, checkpoint_option, constraints_option,
                                      emit_summary, inference_options, load_run_model, write_run_config)
from molshape.latent.diagnostics import latent_diagnostics
from molshape.grammar.representation import is_molecular
from molshape.cli.streaming import Tally, announce, chunk_sizes, timed
from molshape.core.runtime import PROBE_SEED_OFFSET

GRID = 30  # molecules drawn in samples.png
FCD_MAX = 50_000  # valid samples the FCD is computed on (its cost grows with them; 10,000 is standard)


def _key(*parts: Any) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:24]


def _split_key(idx: torch.Tensor) -> str:
    return hashlib.sha256(idx.numpy().tobytes()).hexdigest()[:16]


@click.command("evaluate", epilog="Outputs: <out>/samples.txt (streamed to samples.txt.partial, renamed when "
               "complete), samples.png (SMILES), latents.png, config.json, summary.json; one row per run appended "
               "to evaluate.csv beside the checkpoint (runs/ for shipped models or a read-only checkpoint folder). "
               "Every file is written atomically. Runs of --n 20,000 and more print their expected time and "
               "memory on stderr first; FCD uses at most the first 50,000 valid samples.")
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
              help="Output folder [default: evaluate-<checkpoint name> beside the checkpoint, or in runs/ for "
                   "shipped models and checkpoints in read-only folders].")
@click.option("--mode", type=click.Choice(MODES), default="argmax", show_default=True,
              help="How prior samples are decoded: the most likely rule at each step, or sampled (Gumbel-max).")
# Over 60 lines: the command's steps (reconstruction, samples, FCD, realism, files) share its
# options and summary; the work itself is in molshape.gvae.metrics / molshape.scoring.
@constraints_option
@inference_options
def command(checkpoint: Path | None, grammar: str, split: str, n: int, limit: int | None, data: Path | None,
            no_fcd: bool, batch_size: int, out_dir: Path | None, mode: str, constraints: str, seed: int,
            device: str, threads: int | None, as_json: bool) -> None:
    """Reconstruction accuracy on a held-out split, and validity, uniqueness, novelty, FCD and
    latent KS statistics of prior samples of a trained grammar autoencoder."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.gvae import generation as gen
    from molshape.data.trained import checkpoint_data
    from molshape.gvae import metrics
    from molshape.core.runtime import seed_everything

    checkpoint, dev, model, g, ckpt = load_run_model(checkpoint, grammar, device, threads)
    check_constraints(g, constraints)
    home = _home(checkpoint)
    out_dir = out_dir or home / f"evaluate-{checkpoint.stem}"
    check_out_dir(out_dir)  # before the work: a folder we cannot write fails now, not after an hour
    check_out_dir(home)
    generator = seed_everything(seed)
    try:
        prepared = checkpoint_data(ckpt, g, data)
    except ValueError as e:
        raise click.UsageError(f"{checkpoint}: {e}") from e
    write_run_config(out_dir, {"checkpoint": checkpoint, "split": split, "n": n, "limit": limit, "data": data,
                               "fcd": not no_fcd, "mode": mode, "constraints": constraints, "seed": seed,
                               "device": str(dev)})
    held = ckpt["split"][split][:limit]
    train = ckpt["split"]["train"]
    summary: dict[str, Any] = {"checkpoint": str(checkpoint), "grammar": g.name,
                               "objective": model.config.objective, "split": split, "device": str(dev),
                               "mode": mode, "constraints": constraints}

    # reconstruction of held-out molecules, and the shape of their latents
    t0 = time.perf_counter()
    recon, z = metrics.reconstruction(model, g, prepared.rules[held], prepared.lengths[held], batch_size,
                                      progress=True, constraints=constraints)
    t_recon = time.perf_counter() - t0
    prior = model.objective.prior
    summary["reconstruction"] = recon
    summary["latents"] = {**metrics.ks_statistics(z, prior), "n_components": prior.n_components,
                          **latent_diagnostics(z.to(prior.centers.device, prior.centers.dtype), prior)}

    # prior samples, decoded and counted chunk by chunk
    train_strings = [prepared.strings[i] for i in train.tolist()]
    reference = metrics.reference_set(g, train_strings, key=_key(prepared.source_sha256, _split_key(train)),
                                      progress=True)
    announce(model, g, n, 1, batch_size, "argmax", str(out_dir / "samples.txt.partial"),
             probe=lambda m: timed(lambda: gen.decode_latents(
                 model, g, gen.prior_latents(model, m, torch.Generator().manual_seed(seed + PROBE_SEED_OFFSET)),
                 batch_size=batch_size, mode=mode, constraints=constraints)))
    t0 = time.perf_counter()
    samples = _sample(model, g, n, generator, batch_size, reference, out_dir / "samples.txt", mode, constraints)
    t_sample = time.perf_counter() - t0
    summary["samples"] = {**samples.tally.metrics(), "n_incomplete": samples.tally.n_incomplete}
    if is_molecular(g):  # failure categories, realism and FCD against the standard ZINC test split
        # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
        from molshape.scoring.sample_quality import molecule_report

        with atomic_path(out_dir / "properties.png") as plot:
            report = molecule_report(samples.raw, samples.for_fcd, data=data, grammar_name=g.name, device=str(dev),
                                     with_fcd=not no_fcd, plot=plot)
        summary["samples"]["failures"] = report["failures"]
        summary["samples"]["realism"] = report["realism"]
        for k in ("fcd", "fcd_floor", "fcd_n"):
            if k in report:
                summary["samples"][k] = report[k]
        summary["samples"]["fcd_reference"] = report["reference"]
    summary["timing"] = {"reconstruct_s_per_1000": round(1000 * t_recon / max(len(held), 1), 3),
                         "sample_s_per_1000": round(1000 * t_sample / n, 3)}

    # outputs a person looks at
    files = {"samples": str(out_dir / "samples.txt")}
    if is_molecular(g):
        files["properties"] = str(out_dir / "properties.png")
    if is_molecular(g) and samples.grid:
        # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
        from molshape.scoring.chem import draw_grid

        with atomic_path(out_dir / "samples.png") as tmp:
            draw_grid(samples.grid, None, tmp)
        files["grid"] = str(out_dir / "samples.png")
    with atomic_path(out_dir / "latents.png") as tmp:
        metrics.plot_latents(z, prior.assign(z.to(prior.centers.device)).cpu(), tmp,
                             f"{split} latents (PCA), coloured by mixture component", centers=prior.centers.cpu())
    files["latents"] = str(out_dir / "latents.png")
    summary["files"] = files
    write_json(out_dir / "summary.json", summary, default=str)
    append_csv_row(home / "evaluate.csv", {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), "checkpoint": str(checkpoint),
        **metrics.flat_numbers({k: v for k, v in summary.items() if k not in ("files", "checkpoint")})})
    emit_summary(summary, as_json, _human)


def _home(checkpoint: Path) -> Path:
    """Where evaluate.csv goes: beside the checkpoint, or runs/ for a shipped model or a folder we cannot write."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.pretrained import pretrained_dir

    folder = checkpoint.resolve().parent
    if folder == pretrained_dir().resolve() or not os.access(folder, os.W_OK):
        return Path("runs")
    return checkpoint.parent


@dataclass
class _Samples:
    tally: Tally
    grid: list[str] = field(default_factory=list)  # the first GRID valid samples (samples.png)
    for_fcd: list[str] = field(default_factory=list)  # the first FCD_MAX valid samples
    raw: list[str | None] = field(default_factory=list)  # the first FCD_MAX decoded strings, valid or not


def _sample(model, g, n: int, generator, batch_size: int, reference: set[str], path: Path, mode: str = "argmax",
            constraints: str = "auto") -> _Samples:
    """Decode ``n`` prior samples chunk by chunk into ``path`` (via ``path.partial``), counting as it goes."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.gvae import generation as gen

    out = _Samples(Tally(gen.canonical_key(g), reference))
    sink = PartialFile(path)
    try:
        for m in chunk_sizes(n):
            decoded = gen.decode_latents(model, g, gen.prior_latents(model, m, generator), batch_size=batch_size,
                                         progress=True, mode=mode, constraints=constraints, generator=generator)
            sink.write_chunk([s if s is not None else f"# {r}" for s, r in zip(decoded, decoded.reasons)])
            out.tally.add(decoded, decoded.reasons)
            valid = [s for s in decoded if s is not None]
            out.grid += valid[:GRID - len(out.grid)]
            out.for_fcd += valid[:FCD_MAX - len(out.for_fcd)]
            out.raw += decoded.raw[:FCD_MAX - len(out.raw)]
    except KeyboardInterrupt:
        click.echo(f"interrupted: the samples so far are in {sink.partial}", err=True)
        raise
    except BaseException:
        sink.discard()
        raise
    sink.commit()
    return out


def _molecule_lines(m: dict[str, Any]) -> list[str]:
    """The failure table and realism figures of molecule samples, for people."""
    if "failures" not in m:
        return []
    fails = ", ".join(f"{k} {v:.1%}" for k, v in m["failures"].items() if v)
    r = m["realism"]
    w1 = ", ".join(f"{k[3:]} {r[k]:.3f} (floor {r.get('floor_' + k, float('nan')):.3f})"
                   for k in r if k.startswith("w1_"))
    lines = [f"outcomes: {fails}",
             f"realism: macrocycles {r.get('macrocycle_share', float('nan')):.2%} (data "
             f"{r.get('ref_macrocycle_share', float('nan')):.2%}), long CH2 chains {r.get('long_chain_share', float('nan')):.2%}"
             f" (data {r.get('ref_long_chain_share', float('nan')):.2%}), rings per molecule "
             f"{r.get('rings_per_molecule', float('nan')):.2f} (data {r.get('ref_rings_per_molecule', float('nan')):.2f})",
             f"Wasserstein-1 to the test split: {w1}"]
    if m.get("fcd") is not None:
        lines.append(f"FCD {m['fcd']:.2f} to {m.get('fcd_reference')}; floor {m.get('fcd_floor', float('nan')):.2f} "
                     f"({m.get('fcd_n')} real training molecules)")
    return lines


def _human(s: dict[str, Any]) -> str:
    r, m, lat, t = s["reconstruction"], s["samples"], s["latents"], s["timing"]
    lines = [
        f"{s['checkpoint']} ({s['grammar']}, {s['objective']})",
        f"reconstruction ({s['split']}, {r['n_recon']} molecules, argmax): whole sequence {r['recon_sequence']:.1%}, "
        f"same canonical string {r['recon_canonical']:.1%}; per-rule accuracy {r['recon_per_rule']:.1%} "
        "(per rule, NOT per molecule)",
        f"prior samples ({m['n_samples']}): validity {m['validity']:.1%}, uniqueness {m['uniqueness']:.1%}, "
        f"novelty {m.get('novelty', float('nan')):.1%}, incomplete {m['n_incomplete']}"
        + f" ({s.get('mode', 'argmax')}, {s.get('constraints', 'auto')} constraints)",
        f"latents vs prior: KS mean {lat['ks_mean']:.3f}, max {lat['ks_max']:.3f}"
        + (f"; {lat['inside_share']:.1%} inside the prior's 99 % radius of their nearest component"
           if "inside_share" in lat else ""),
        *_molecule_lines(m),
        f"time: {t['reconstruct_s_per_1000']:.2f} s per 1,000 reconstructions, "
        f"{t['sample_s_per_1000']:.2f} s per 1,000 samples",
        f"outputs: {', '.join(s['files'].values())}",
    ]
    return "\n".join(lines)
