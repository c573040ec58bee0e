"""The evaluation of a trained grammar autoencoder: reconstruction, prior samples, latent shape.

:func:`evaluate_model` reconstructs a held-out split, measures what the latent space holds
about it (:mod:`molshape.gvae.latent_quality`), decodes ``n`` prior samples chunk by
chunk (streamed to ``samples.txt``), counts validity / uniqueness / novelty as it goes, adds
failure categories, realism and FCD for molecules, and writes its pictures and
``summary.json`` into a folder, every file atomically.

Example:
    >>> summary = evaluate_model(model, grammar, ckpt, checkpoint_data(ckpt, grammar), Path("eval"),  # doctest: +SKIP
    ...                          checkpoint_path="best.pt", n=1000)
    >>> summary["samples"]["validity"], summary["reconstruction"]["recon_sequence"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Container

import torch
from torch import Tensor, nn

from molshape.core.atomic import PartialFile, atomic_path, write_json
from molshape.core.runtime import PROBE_SEED_OFFSET
from molshape.data.datasets import PreparedData
from molshape.data.reference import shipped_reference
from molshape.data.trained import TrainedOn, checkpoint_data
from molshape.grammar.cfg import Grammar
from molshape.grammar.representation import is_molecular
from molshape.gvae import generation as gen
from molshape.gvae import metrics
from molshape.gvae.latent_quality import LatentOptions, estimate_seconds, latent_quality
from molshape.gvae.latent_sources import decode_drawn, result_lines
from molshape.gvae.tally import Tally
from molshape.latent.diagnostics import latent_diagnostics
from molshape.latent.prior import GMMPrior

GRID = 30  # molecules drawn in samples.png
FCD_MAX = 50_000  # valid samples the FCD is computed on (its cost grows with them; 10,000 is standard)


@dataclass
class Samples:
    """Decoded prior samples: their counts and the few kept for pictures and the FCD."""

    tally: Tally
    grid: list[str] = field(default_factory=list)  # the first GRID valid samples (samples.png)
    for_fcd: list[str] = field(default_factory=list)  # the first FCD_MAX valid samples
    raw: list[str | None] = field(default_factory=list)  # the first FCD_MAX decoded strings, valid or not


class DataMissing(FileNotFoundError):
    """The checkpoint's data set is absent and no shipped slice stands in for it."""


def evaluation_data(checkpoint: TrainedOn, grammar: Grammar, data: str | Path | None = None) -> PreparedData | None:
    """The checkpoint's data, or None when it is absent but the shipped reference covers this model
    (a shipped model: reconstruction then uses the shipped slice of its test split).

    Raises:
        DataMissing: absent and not covered. ValueError: see :func:`checkpoint_data`.
    """
    try:
        return checkpoint_data(checkpoint, grammar, data)
    except FileNotFoundError as e:
        ref = shipped_reference()
        if data is None and ref is not None and ref.test_slice(checkpoint) is not None:
            return None
        raise DataMissing(str(e)) from None


def held_out(checkpoint: TrainedOn, grammar: Grammar, prepared: PreparedData | None, split: str,
             limit: int | None) -> tuple[Tensor, Tensor, str]:
    """Rules ``[N x T]``, lengths ``[N]`` and a description of the held-out molecules reconstructed."""
    if prepared is not None:
        held = checkpoint.split[split][:limit]
        return prepared.rules[held], prepared.lengths[held], f"{split} split ({len(held)} molecules)"
    strings = shipped_reference().test_slice(checkpoint)[:limit]
    parsed = gen.parse_inputs(grammar, strings)
    lengths = (parsed.rules != grammar.pad).sum(dim=1)
    return parsed.rules, lengths, (f"shipped slice of the test split ({len(parsed.index)} molecules; "
                                   "the data set was not found)")


def evaluate_model(model: nn.Module, grammar: Grammar, checkpoint: TrainedOn, prepared: PreparedData | None,
                   out_dir: Path, *,
                   checkpoint_path: str | Path, device: str | None = None, split: str = "test", n: int = 10_000,
                   limit: int | None = None, data: str | Path | None = None, with_fcd: bool = True,
                   batch_size: int = 1000, mode: str = "argmax", constraints: str = "auto", seed: int = 0,
                   generator: torch.Generator | None = None, progress: bool = True,
                   on_estimate: Callable[[Callable[[int], Any], int], Any] | None = None,
                   latent: LatentOptions | None = None,
                   on_latent_estimate: Callable[[float, int], Any] | None = None) -> dict[str, Any]:
    """Evaluate ``model`` on its checkpoint's data and write the results into ``out_dir``.

    Args:
        prepared: the checkpoint's data (:func:`evaluation_data`); None: a shipped model without
            its data set, evaluated on the shipped reference (a slice of its test split).
        checkpoint_path: named in the summary. device: named in the summary and where
            ChemNet runs (default: the model's device).
        split / limit: the held-out rows reconstructed (the first ``limit`` of them).
        n: prior samples decoded (``mode``, ``constraints``) in chunks, ``batch_size`` per model call.
        data: the ZINC file the molecule realism and FCD compare against (default: found).
        seed: seeds the latents of the cost probe. generator: draws the samples (default:
            seeded with ``seed``).
        on_estimate: called before any work with ``probe(m)``, which decodes ``m`` probe
            latents, and the number of held-out molecules (to time them and announce the run).
        latent: the latent metrics to compute (:mod:`molshape.gvae.latent_quality`) on the
            first ``limit`` held-out rows (``latent.limit`` when ``limit`` is None); None skips
            them (``summary["latent"]`` is then None).
        on_latent_estimate: called before any work with ``(expected seconds, molecules)`` of the
            latent metrics (after ``on_estimate``).

    Returns:
        the summary (``reconstruction``, ``latents``, ``samples``, ``timing``, ``files``, ...),
        also written to ``out_dir/summary.json``. Writes ``samples.txt`` (the string or
        ``# <reason>`` per sample), ``latents.png`` and, for molecules, ``properties.png``
        and ``samples.png``.
    """
    device = device if device is not None else str(gen.model_device(model))
    generator = generator if generator is not None else torch.Generator().manual_seed(seed)
    rules, lengths, held_name = held_out(checkpoint, grammar, prepared, split, limit)
    summary: dict[str, Any] = {"checkpoint": str(checkpoint_path), "grammar": grammar.name,
                               "objective": model.config.objective.name, "split": split, "device": device,
                               "mode": mode, "constraints": constraints}
    if on_estimate is not None:
        on_estimate(lambda m: gen.decode_latents(
            model, grammar, gen.prior_latents(model, m, torch.Generator().manual_seed(seed + PROBE_SEED_OFFSET)),
            batch_size=batch_size, mode=mode, constraints=constraints), len(rules))
    opts = None if latent is None else dataclasses.replace(latent, limit=limit if limit is not None else latent.limit)
    if opts is not None and on_latent_estimate is not None:
        rows = min(opts.limit, len(rules))
        on_latent_estimate(estimate_seconds(model, grammar, rules[:rows], lengths[:rows], opts, rows, constraints), rows)

    # reconstruction of held-out molecules, and the shape of their latents
    t0 = time.perf_counter()
    recon, z = metrics.reconstruction(model, grammar, rules, lengths, batch_size,
                                      progress=progress, constraints=constraints)
    t_recon = time.perf_counter() - t0
    prior = model.objective.prior
    summary["reconstruction"] = {**recon, "held_out": held_name}
    summary["latents"] = {**metrics.ks_statistics(z, prior), "n_components": prior.n_components,
                          **latent_diagnostics(z.to(prior.centers.device, prior.centers.dtype), prior)}

    # what the latent space holds: exact reconstruction three ways, similarity, nats, neighbourhoods
    t0 = time.perf_counter()
    summary["latent"] = None
    files: dict[str, str] = {}
    latent_timing: dict[str, float] = {}
    if opts is not None:
        summary["latent"] = latent_quality(model, grammar, rules[:opts.limit], lengths[:opts.limit], opts,
                                           out_dir=out_dir, batch_size=batch_size, constraints=constraints,
                                           progress=progress)
        # times and paths differ from run to run; they join the summary's own "timing" and "files"
        files = summary["latent"].pop("files")
        latent_timing = summary["latent"].pop("timing")
    t_latent = time.perf_counter() - t0

    # prior samples, decoded and counted chunk by chunk
    reference = _reference(grammar, prepared, checkpoint, progress)
    t0 = time.perf_counter()
    samples = sample_prior(model, grammar, n, out_dir / "samples.txt", reference, generator=generator,
                           batch_size=batch_size, mode=mode, constraints=constraints, progress=progress)
    t_sample = time.perf_counter() - t0
    summary["samples"] = {**samples.tally.metrics(), "n_incomplete": samples.tally.n_incomplete}
    if is_molecular(grammar):  # failure categories, realism and FCD against the standard ZINC test split
        summary["samples"].update(_molecule_quality(samples, out_dir, data, grammar, device, with_fcd))
    summary["timing"] = {"reconstruct_s_per_1000": round(1000 * t_recon / max(len(rules), 1), 3),
                         "sample_s_per_1000": round(1000 * t_sample / n, 3), "latent_s": round(t_latent, 1),
                         **{f"latent_{k}": v for k, v in latent_timing.items()}}
    summary["files"] = {**_pictures(grammar, samples, z, prior, out_dir, split), **files}
    write_json(out_dir / "summary.json", summary, default=str)
    return summary


def _reference(grammar: Grammar, prepared: PreparedData | None, checkpoint: TrainedOn,
               progress: bool) -> Container[str] | None:
    """Canonical forms of the training strings (for novelty), cached by data and split; without
    the data, the shipped hashes of a shipped model's training molecules (None for another model)."""
    if prepared is None:
        return shipped_reference().novelty_set(checkpoint)
    train = checkpoint.split["train"]
    strings = [prepared.strings[i] for i in train.tolist()]
    split_key = hashlib.sha256(train.numpy().tobytes()).hexdigest()[:16]
    key = hashlib.sha256(f"{prepared.source_sha256}|{split_key}".encode()).hexdigest()[:24]
    return metrics.reference_set(grammar, strings, key=key, progress=progress)


def sample_prior(model: nn.Module, grammar: Grammar, n: int, path: Path, reference: Container[str] | None = None, *,
                 generator: torch.Generator | None = None, batch_size: int = 1000, mode: str = "argmax",
                 constraints: str = "auto", progress: bool = False) -> Samples:
    """Decode ``n`` prior samples chunk by chunk into ``path`` (via ``path.partial``), counting as it goes.

    An interrupted run (Ctrl-C, a kill) keeps the finished chunks in ``path.partial`` and says so
    on stderr; one that fails otherwise removes it.
    """
    out = Samples(Tally(gen.canonical_key(grammar), reference))
    sink = PartialFile(path)
    try:
        for decoded in decode_drawn(model, grammar, lambda m: gen.prior_latents(model, m, generator), n, mode,
                                    generator=generator, batch_size=batch_size, progress=progress,
                                    constraints=constraints):
            sink.write_chunk(result_lines(decoded, decoded.reasons))
            out.tally.add(decoded, decoded.reasons)
            valid = [s for s in decoded if s is not None]
            out.grid += valid[:GRID - len(out.grid)]
            out.for_fcd += valid[:FCD_MAX - len(out.for_fcd)]
            out.raw += decoded.raw[:FCD_MAX - len(out.raw)]
    except KeyboardInterrupt:
        print(f"interrupted: the samples so far are in {sink.partial}", file=sys.stderr, flush=True)
        raise
    except BaseException:
        sink.discard()
        raise
    sink.commit()
    return out


def _molecule_quality(samples: Samples, out_dir: Path, data: str | Path | None, grammar: Grammar, device: str,
                      with_fcd: bool) -> dict[str, Any]:
    """Failure categories, realism and FCD of molecule samples; writes ``properties.png``."""
    # RDKit is heavy: loaded only when molecules are involved
    from molshape.scoring.sample_quality import molecule_report

    with atomic_path(out_dir / "properties.png") as plot:
        report = molecule_report(samples.raw, samples.for_fcd, data=data, grammar_name=grammar.name, device=device,
                                 with_fcd=with_fcd, plot=plot)
    out = {"failures": report["failures"], "realism": report["realism"], "moses": report["moses"]}
    out.update({k: report[k] for k in ("fcd", "fcd_floor", "fcd_floor_n", "fcd_n") if k in report})
    out["fcd_reference"] = report["reference"]
    return out


def _pictures(grammar: Grammar, samples: Samples, z: Tensor, prior: GMMPrior, out_dir: Path,
              split: str) -> dict[str, str]:
    """Write ``samples.png`` (molecules) and ``latents.png``; the output files by kind."""
    files = {"samples": str(out_dir / "samples.txt")}
    if is_molecular(grammar):
        files["properties"] = str(out_dir / "properties.png")
    if is_molecular(grammar) and samples.grid:
        # RDKit is heavy: loaded only when molecules are involved
        from molshape.scoring.chem import draw_grid, qed

        labels = [f"prior sample {i + 1}  QED {qed(s):.2f}" for i, s in enumerate(samples.grid)]
        with atomic_path(out_dir / "samples.png") as tmp:
            draw_grid(samples.grid, labels, tmp, per_row=6)
        files["grid"] = str(out_dir / "samples.png")
    with atomic_path(out_dir / "latents.png") as tmp:
        metrics.plot_latents(z, prior.assign(z.to(prior.centers.device)).cpu(), tmp,
                             f"{split} latents (PCA), coloured by mixture component", centers=prior.centers.cpu())
    files["latents"] = str(out_dir / "latents.png")
    return files
