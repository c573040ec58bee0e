"""``molshape evaluate``: reconstruction, prior-sample quality and latent-shape metrics of a checkpoint.

The work is :func:`molshape.gvae.evaluation.evaluate_model`; this command checks its options
and outputs first, records them, and adds the run's row to ``evaluate.csv``.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from molshape.core.atomic import append_csv_row
from molshape.grammar.decoding import MODES
from molshape.cli.common import (check_constraints, check_out_dir, checkpoint_option, constraints_option,
                                      emit_summary, inference_options, load_run_model, write_run_config)
from molshape.cli.streaming import announce, plan, timed
from molshape.core.rundir import runs_dir
from molshape.core.runtime import human_duration


@click.command("evaluate", epilog="Without the data set, a shipped model is evaluated on the statistics shipped "
               "with molshape and a 200-molecule slice of its test split (said in the output); the run first prints "
               "what it will do and about how long it takes. Outputs: <out>/samples.txt (streamed to samples.txt.partial, renamed when "
               "complete), samples.png (SMILES), latents.png, config.json, summary.json; one row per run appended "
               "to evaluate.csv beside the checkpoint (runs/ for shipped models or a read-only checkpoint folder). "
               "Every file is written atomically. Runs of --n 20,000 and more print their expected time and "
               "memory on stderr first; FCD uses at most the first 50,000 valid samples. The latent metrics "
               "(summary.json 'latent'; latent_interpolation.png and latent_neighbourhood.png for molecules) use "
               "the first --limit molecules of the split (default: as many as --n, at most 2,000) and print their "
               "expected time first.")
@checkpoint_option
@click.option("--split", type=click.Choice(["test", "valid", "train"]), default="test", show_default=True,
              help="Held-out split for reconstruction, FCD reference and KS statistics.")
@click.option("--n", "n", default=10_000, show_default=True, type=click.IntRange(min=2),
              help="Prior samples for validity, uniqueness, novelty, FCD and the MOSES metrics (MOSES, GuacaMol: "
                   "10,000; 200 takes about a minute on 2 cores, latent metrics included).")
@click.option("--limit", "limit", default=None, type=click.IntRange(min=2),
              help="Reconstruct only the first N held-out molecules, and run the latent metrics on them "
                   "[default: the whole split (the shipped 200 without the data set) for reconstruction; for the "
                   "latent metrics as many as --n, at most 2,000].")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The checkpoint's training data file (default: the standard data set).")
@click.option("--no-fcd", "no_fcd", is_flag=True, help="Skip the Frechet ChemNet Distance.")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(min=1))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder [default: evaluate-<checkpoint name> beside the checkpoint, or in runs/ for "
                   "shipped models and checkpoints in read-only folders].")
@click.option("--mode", type=click.Choice(MODES), default="argmax", show_default=True,
              help="How prior samples are decoded: the most likely rule at each step, or sampled (Gumbel-max).")
@click.option("--no-latent-metrics", "no_latent", is_flag=True,
              help="Skip the latent metrics (exact reconstruction by argmax / beam / GVAE protocol, round-trip "
                   "similarity, nats the latent carries, neighbourhood curve, latent PNGs).")
@click.option("--beam-width", default=5, show_default=True, type=click.IntRange(min=0),
              help="Beam width of the beam-search reconstruction (0 skips it; cost about 0.75 x width argmax decodes).")
@click.option("--gvae-samples", default=None, type=click.IntRange(min=0),
              help="Sampled decodes per molecule of the GVAE-protocol reconstruction (GVAE: 10 encodes x 100; the "
                   "encoder is deterministic, so 1 encode x N here; 0 skips it; cost N argmax decodes) [default: 10; "
                   "0 when --n is under 2,000, so that a quick evaluation stays quick].")
@click.option("--refine-steps", default=None, type=click.IntRange(min=0),
              help="Gradient steps at most of the refined-encoding reconstruction (each latent moved on its "
                   "molecule's likelihood until it decodes back; 0 skips it) [default: 300; 0 when --n is under 2,000].")
@click.option("--refine-limit", default=200, show_default=True, type=click.IntRange(min=1),
              help="Held-out molecules whose latents are refined (about 1-2 s each on one core at 300 steps).")
@constraints_option
@inference_options
def command(checkpoint: Path | None, grammar: str, split: str, n: int, limit: int | None, data: Path | None,
            no_fcd: bool, batch_size: int, out_dir: Path | None, mode: str, no_latent: bool, beam_width: int,
            gvae_samples: int | None, refine_steps: int | None, refine_limit: int, constraints: str, seed: int,
            device: str, threads: int | None, as_json: bool) -> None:
    """Reconstruction accuracy and latent metrics on a held-out split, and validity, uniqueness,
    novelty, FCD, MOSES metrics (IntDiv1/2, SNN, Frag, Scaf) and latent KS statistics of prior
    samples of a trained grammar autoencoder."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.core.runtime import seed_everything
    from molshape.gvae.evaluation import DataMissing, evaluate_model, evaluation_data
    from molshape.grammar.representation import is_molecular
    from molshape.gvae.latent_quality import LATENT_N, LatentOptions, gvae_samples_for, latent_limit, refine_steps_for
    from molshape.gvae.metrics import flat_numbers

    checkpoint, dev, model, g, ckpt = load_run_model(checkpoint, grammar, device, threads)
    check_constraints(g, constraints)
    home = _home(checkpoint)
    out_dir = out_dir or home / f"evaluate-{checkpoint.stem}"
    check_out_dir(out_dir)  # before the work: a folder we cannot write fails now, not after an hour
    check_out_dir(home)
    _check_evaluate_folder(out_dir, [checkpoint, data])
    generator = seed_everything(seed)
    try:
        prepared = evaluation_data(ckpt, g, data)
    except DataMissing as e:
        raise click.ClickException(f"{e} (only shipped models evaluate without their data set)") from None
    except ValueError as e:
        raise click.UsageError(f"{checkpoint}: {e}") from e
    quick_skip = gvae_samples is None and gvae_samples_for(n, None) == 0  # said in the latent metrics' line
    gvae_samples = gvae_samples_for(n, gvae_samples)
    refine_steps = refine_steps_for(n, refine_steps)
    write_run_config(out_dir, {"checkpoint": checkpoint, "split": split, "n": n, "limit": limit, "data": data,
                               "fcd": not no_fcd, "mode": mode, "constraints": constraints, "seed": seed,
                               "device": str(dev), "latent_metrics": not no_latent, "latent_limit": latent_limit(n, limit),
                               "beam_width": beam_width, "gvae_samples": gvae_samples,
                               "refine_steps": refine_steps, "refine_limit": refine_limit})
    latent = None if no_latent else LatentOptions(limit=latent_limit(n, limit), beam_width=beam_width,
                                                  gvae_samples=gvae_samples, seed=seed, refine_steps=refine_steps,
                                                  refine_limit=refine_limit)

    def latent_estimate(seconds: float, rows: int) -> None:
        parts = ["argmax", f"beam {beam_width}" if beam_width else None,
                 f"GVAE protocol 1 x {gvae_samples} samples" if gvae_samples else
                 f"GVAE protocol skipped (--n under {LATENT_N:,}; --gvae-samples 10 runs it)" if quick_skip else None,
                 "teacher-forced NLL x 3", f"{len(latent.sigmas)} noise levels",
                 f"refined encodings of {min(refine_limit, rows):,} ({refine_steps} steps at most)" if refine_steps
                 else None]
        noun = "molecules" if is_molecular(g) else "strings"
        chosen = "" if limit is not None else f" (as many as --n, at most {LATENT_N:,}; --limit sets it)"
        click.echo(f"latent metrics on {rows:,} {split} {noun}{chosen}: {', '.join(p for p in parts if p)}; expected "
                   f"time {human_duration(seconds)} (timed on a few molecules; --no-latent-metrics skips them)", err=True)

    def estimate(probe, n_held: int) -> None:
        plan(n, n_held, prepared is None, not no_fcd, mode, is_molecular(g), probe=lambda m: timed(lambda: probe(m)))
        announce(model, g, n, 1, batch_size, mode, str(out_dir / "samples.txt.partial"),
                 probe=lambda m: timed(lambda: probe(m)))

    summary = evaluate_model(model, g, ckpt, prepared, out_dir, checkpoint_path=checkpoint, device=str(dev),
                             split=split, n=n, limit=limit, data=data, with_fcd=not no_fcd, batch_size=batch_size,
                             mode=mode, constraints=constraints, seed=seed, generator=generator, progress=True,
                             on_estimate=estimate, latent=latent, on_latent_estimate=latent_estimate)
    append_csv_row(home / "evaluate.csv", {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), "checkpoint": str(checkpoint),
        **flat_numbers({k: v for k, v in summary.items() if k not in ("files", "checkpoint")})})
    emit_summary(summary, as_json, _human)


#: what evaluate writes in its folder (an earlier evaluation there is replaced)
EVALUATE_FILES = frozenset({"samples.txt", "samples.txt.partial", "samples.png", "latents.png", "properties.png",
                            "latent_interpolation.png", "latent_neighbourhood.png", "config.json", "summary.json"})


def _check_evaluate_folder(out_dir: Path, inputs: list[Path | None]) -> None:
    """Refuse (exit 2) a folder that holds another command's run or files of the user's, whose
    ``config.json`` or ``summary.json`` evaluate would replace, and outputs that are inputs."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.core.rundir import leftovers

    for inp in inputs:
        if inp is not None and inp.resolve().parent == out_dir.resolve() and inp.name in EVALUATE_FILES:
            raise click.BadParameter(f"{inp} is an input and would be replaced by evaluate's {inp.name}; "
                                     "choose another --out", param_hint="--out")
    found = leftovers(out_dir)
    other = [name for name in found if name not in EVALUATE_FILES]
    if "config.json" in found and not other and not _evaluate_config(out_dir / "config.json"):
        other = ["config.json"]
    if other:
        raise click.BadParameter(f"{out_dir} holds files evaluate did not write ({', '.join(other[:5])}"
                                 f"{', ...' if len(other) > 5 else ''}), such as another command's run; evaluate "
                                 "would replace its config.json and summary.json: choose another --out",
                                 param_hint="--out")


def _evaluate_config(path: Path) -> bool:
    """Whether ``path`` is the config of an earlier ``molshape evaluate`` run."""
    import json

    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(config, dict):
        return False
    if "command" in config:
        return config["command"] == "evaluate"
    return {"checkpoint", "split", "n", "fcd"} <= set(config)  # written before configs named their command


def _home(checkpoint: Path) -> Path:
    """Where evaluate.csv goes: beside the checkpoint, or runs/ for a shipped model or a folder we cannot write."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.pretrained import pretrained_dir

    folder = checkpoint.resolve().parent
    if folder == pretrained_dir().resolve() or not os.access(folder, os.W_OK):
        return runs_dir()
    return checkpoint.parent


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
        lines.append(f"FCD {m['fcd']:.2f} ({m.get('fcd_n')} valid samples) to {m.get('fcd_reference')}; floor "
                     f"{m.get('fcd_floor', float('nan')):.2f} ({m.get('fcd_floor_n')} real training molecules)")
    if m.get("moses"):
        x = m["moses"]
        lines.append(f"MOSES: IntDiv1 {x['intdiv1']:.3f}, IntDiv2 {x['intdiv2']:.3f}, SNN {x['snn']:.3f}, "
                     f"Frag {x['frag']:.3f}, Scaf {x['scaf']:.3f} (against the standard test split)")
    return lines


def latent_lines(lat: dict[str, Any] | None) -> list[str]:
    """The latent metrics, one line per metric, for people (``None``: skipped)."""
    if lat is None:
        return ["latent metrics: skipped (--no-latent-metrics)"]

    def pct(v: float | None) -> str:
        return "skipped" if v is None else f"{v:.1%}"

    r, rt, nll, nb = lat["recon"], lat["roundtrip"], lat["nll"], lat["neighbourhood"]
    molecules = lat["similarity"].startswith("tanimoto")
    sim = "Tanimoto (Morgan r2, 2048 bits)" if molecules else "string equality"
    lines = [f"exact reconstruction ({lat['n']:,} {'molecules' if molecules else 'strings'}): argmax {pct(r['argmax'])}, beam "
             f"{lat['beam']['width'] or '-'} {pct(r['beam'])}, GVAE protocol (1 encode x "
             f"{lat['gvae_protocol']['samples'] or '-'} samples) {pct(r['gvae_protocol'])}",
             f"round trip ({sim}): mean {rt['mean']:.3f}, share >= 0.6 {rt['share_ge_0.6']:.1%}, "
             f">= 0.8 {rt['share_ge_0.8']:.1%}"]
    if nll["own"] is not None:
        lines.append(f"teacher-forced NLL (nats per molecule): own latent {nll['own']:.2f}, shuffled "
                     f"{nll['shuffled']:.2f}, z = 0 {nll['zero']:.2f}; the latent carries {nll['nats_carried']:.2f}")
    lines.append("neighbourhood (mean similarity of decodes at latent noise sigma): "
                 + ", ".join(f"{k.removeprefix('sigma_')} {v:.3f}" for k, v in nb.items()))
    ref = lat.get("refined") or {}
    if ref.get("n"):
        lines.append(f"refined encodings ({ref['n']:,}, up to {ref['steps']} steps): exact (argmax) {ref['exact']:.1%}, "
                     f"round trip {ref['tanimoto_mean']:.3f}, NLL {ref['nll_before']:.2f} -> {ref['nll_after']:.2f}, "
                     f"norm {ref['norm_before']:.2f} -> {ref['norm_after']:.2f}; neighbourhood "
                     + ", ".join(f"{k.removeprefix('sigma_')} {v:.3f}" for k, v in ref["neighbourhood"].items()))
    return lines


def _human(s: dict[str, Any]) -> str:
    r, m, lat, t = s["reconstruction"], s["samples"], s["latents"], s["timing"]
    lines = [
        f"{s['checkpoint']} ({s['grammar']}, {s['objective']})",
        f"reconstruction of {r.get('held_out', s['split'])}, argmax: whole molecule {r['recon_sequence']:.1%} "
        f"(same canonical SMILES {r['recon_canonical']:.1%}); free-running per-rule accuracy "
        f"{r['recon_per_rule']:.1%} (each rule decoded from the model's own previous rules; per rule, NOT per "
        "molecule; training's valid_acc_rule is teacher-forced)",
        f"prior samples ({m['n_samples']}): validity {m['validity']:.1%}, uniqueness {m['uniqueness']:.1%}, "
        f"novelty {m.get('novelty', float('nan')):.1%}, incomplete {m['n_incomplete']}"
        + f" ({s.get('mode', 'argmax')}, {s.get('constraints', 'auto')} constraints)",
        f"latents vs prior: KS mean {lat['ks_mean']:.3f}, max {lat['ks_max']:.3f}"
        + (f"; {lat['inside_share']:.1%} inside the prior's 99 % radius of their nearest component"
           if "inside_share" in lat else ""),
        *_molecule_lines(m),
        *latent_lines(s.get("latent")),
        f"time: {t['reconstruct_s_per_1000']:.2f} s per 1,000 reconstructions, "
        f"{t['sample_s_per_1000']:.2f} s per 1,000 samples, latent metrics {t.get('latent_s', 0):.0f} s",
        f"outputs: {', '.join(s['files'].values())}",
    ]
    return "\n".join(lines)
