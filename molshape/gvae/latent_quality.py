"""What the latent space holds about a held-out molecule: reconstruction, information, locality.

:func:`latent_quality` measures, on held-out production sequences (the checkpoint's test
split in ``molshape evaluate``):

- **exact reconstruction** three ways: ``argmax`` (the most likely rule at each step),
  ``beam`` (the most likely complete derivation a beam of ``beam_width`` finds under the
  decoder's constraints, :mod:`molshape.grammar.beam`) and ``gvae_protocol`` (GVAE, Kusner
  et al. 2017: 10 encodes x 100 sampled decodes, the most frequent result). molshape's
  encoders are deterministic (``vae`` models encode to the mean), so GVAE's 10 encodes
  would be identical: the protocol here is 1 encode x ``gvae_samples`` sampled decodes,
  the most frequent valid result kept. A decode is exact when it is the same molecule
  (canonical SMILES) or, for other grammars, the same string;
- **round-trip similarity** of each molecule and its argmax decode: Morgan Tanimoto
  (radius 2, 2,048 bits) for molecules, string equality (1 or 0) otherwise; an invalid
  decode scores 0. Mean and the shares at least 0.6 and 0.8;
- **nats the latent carries**: the teacher-forced negative log-likelihood of each
  sequence (nats per molecule, the training loss's ``rec`` term: softmax over the rules
  the true step's symbol allows, and the semantic masks for models trained with them)
  given its own latent, another molecule's latent (a seeded derangement) and ``z = 0``.
  ``nats_carried`` = shuffled - own;
- **neighbourhood curve**: mean similarity to the molecule of the argmax decodes of
  ``z + sigma * eps`` (``eps ~ N(0, I)``, seeded), for ``sigma`` in ``sigmas``; sigma 0 is
  its own decode;
- **refined encodings** (``refined``, and ``recon["refined"]``): the first ``refine_limit``
  molecules' latents refined for up to ``refine_steps`` gradient steps on their own
  likelihood (:mod:`molshape.gvae.latent_refinement`): the share whose argmax decode is then
  the molecule, round trip, NLL and latent norm before / after, and the neighbourhood curve
  around the refined latents;
- **pictures** (molecules): ``latent_interpolation.png`` (argmax decodes along the line
  between the first two molecules) and ``latent_neighbourhood.png`` (decodes around the
  first molecule at increasing sigma); a blank cell is an invalid decode.

Every part can be skipped (``beam_width=0``, ``gvae_samples=0``, ``nll=False``,
``sigmas=()``, ``refine_steps=0``, ``pictures=False``); its keys are then ``None``, so every model's summary
has the same keys.

Example:
    >>> out = latent_quality(model, grammar, rules[:200], lengths[:200], LatentOptions(beam_width=3))  # doctest: +SKIP
    >>> out["recon"], out["roundtrip"]["mean"], out["nll"]["nats_carried"]  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from molshape.core.atomic import atomic_path
from molshape.grammar.cfg import Grammar
from molshape.grammar.decoding import choice_step, skips_forced
from molshape.grammar.parser import get_parser
from molshape.grammar.representation import is_molecular, to_user_string
from molshape.gvae import generation as gen
from molshape.gvae.beam_decoding import decode_beam
from molshape.gvae.latent_refinement import (REFINE_STEPS, RefineOptions, allowed_rules, exact_matches,
                                             refine_latents)

#: held-out molecules the latent metrics use by default
LATENT_N = 2000


#: sampled decodes per molecule of the GVAE-protocol reconstruction in a full evaluation
GVAE_SAMPLES = 10


def latent_limit(n: int, limit: int | None) -> int:
    """Held-out rows the latent metrics of an evaluation with ``n`` prior samples use: ``limit``
    when given, else as many as the samples, at most :data:`LATENT_N` (a quick evaluation stays quick)."""
    return limit if limit is not None else min(n, LATENT_N)


def gvae_samples_for(n: int, gvae_samples: int | None) -> int:
    """GVAE-protocol samples of an evaluation with ``n`` prior samples: ``gvae_samples`` when
    given, else :data:`GVAE_SAMPLES`, or 0 (skipped) when ``n`` is under :data:`LATENT_N`: the
    protocol costs ``GVAE_SAMPLES`` decodes per molecule and a quick evaluation stays quick."""
    return _full_only(n, gvae_samples, GVAE_SAMPLES)


def refine_steps_for(n: int, refine_steps: int | None) -> int:
    """Refinement steps of an evaluation with ``n`` prior samples: ``refine_steps`` when given,
    else :data:`REFINE_STEPS`, or 0 (skipped) when ``n`` is under :data:`LATENT_N` (a gradient
    pass per step and molecule: the costliest latent metric)."""
    return _full_only(n, refine_steps, REFINE_STEPS)


def _full_only(n: int, value: int | None, default: int) -> int:
    if value is not None:
        return value
    return default if n >= LATENT_N else 0


#: latent noise levels of the neighbourhood curve
SIGMAS = (0.1, 0.3, 1.0)
#: held-out molecules whose latents are refined (the costliest part: a gradient pass per step)
REFINE_N = 200
#: a "minus infinity" for rules the teacher-forced loss masks (finite, as the training loss's)
_MASKED = -1e4
#: steps of the interpolation picture; decodes per noise level in the neighbourhood picture
LINE_STEPS, AROUND = 10, 5


@dataclass
class LatentOptions:
    """Which latent metrics to compute, and their sizes (0 / False / () skips a part)."""

    limit: int = LATENT_N
    beam_width: int = 5
    gvae_samples: int = 10
    nll: bool = True
    sigmas: tuple[float, ...] = SIGMAS
    pictures: bool = True
    seed: int = 0
    refine_steps: int = REFINE_STEPS
    refine_limit: int = REFINE_N


def similarity_kind(grammar: Grammar) -> str:
    return "tanimoto_morgan2_2048" if is_molecular(grammar) else "string_equality"


def pair_similarity(grammar: Grammar, truth: Sequence[str], decoded: Sequence[str | None]) -> np.ndarray:
    """``[N]`` similarity of each decode to its truth: Morgan Tanimoto for molecules, else equality."""
    if is_molecular(grammar):
        from molshape.scoring.similarity import tanimoto_pairs  # RDKit is heavy: loaded only when molecules are involved

        return tanimoto_pairs(truth, decoded)
    return np.array([float(d is not None and d == t) for t, d in zip(truth, decoded)], dtype=np.float64)


def exact_share(grammar: Grammar, truth: Sequence[str], decoded: Sequence[str | None]) -> float:
    """Share of ``decoded`` that are the same molecule (canonical SMILES) or string as ``truth``."""
    return float(exact_matches(grammar, truth, decoded).sum()) / max(len(truth), 1)


def teacher_forced_nll(model: nn.Module, grammar: Grammar, z: Tensor, rules: Tensor, lengths: Tensor,
                       batch_size: int = 500) -> Tensor:
    """``[N]`` float64 negative log-likelihood (nats) of ``rules [N x T]`` given latents ``z [N x d]``.

    Teacher forcing through the model's step API (``decoder_init`` / ``decoder_step``): the
    true previous rule is fed back. Each step's softmax runs over the rules the true step's
    symbol allows, intersected with the semantic masks when the model was trained with
    them (``config.constraints == "semantic"``), as the training loss does.
    """
    return teacher_forced_nlls(model, grammar, {"z": z}, rules, lengths, batch_size)["z"]


@torch.no_grad()
def teacher_forced_nlls(model: nn.Module, grammar: Grammar, latents: dict[str, Tensor], rules: Tensor,
                        lengths: Tensor, batch_size: int = 500) -> dict[str, Tensor]:
    """:func:`teacher_forced_nll` of the same sequences under several latents ``{name: z [N x d]}``.

    The masks along the true derivations (a step loop of their own under semantic
    constraints) are computed once per batch and shared by every set of latents.
    """
    device = gen.model_device(model)
    out: dict[str, list[Tensor]] = {name: [] for name in latents}
    skip = skips_forced(model)
    for i in range(0, len(rules), batch_size):
        steps = int(lengths[i:i + batch_size].max())
        r = rules[i:i + batch_size, :steps]
        allowed, r_dev = allowed_rules(model, grammar, r).to(device), r.to(device)
        for name, z in latents.items():
            state = model.decoder_init(z[i:i + batch_size].to(device))
            prev = torch.full((len(r),), grammar.pad, dtype=torch.long, device=device)
            nll = torch.zeros(len(r), dtype=torch.float64, device=device)
            for t in range(steps):
                choice = allowed[:, t].sum(dim=1) > 1 if skip else None
                logits, state = choice_step(model, state, prev, choice, grammar.n_productions)
                logp = F.log_softmax(logits.float().masked_fill(~allowed[:, t], _MASKED), dim=1)
                nll -= logp.gather(1, r_dev[:, t:t + 1]).squeeze(1).double()
                prev = r_dev[:, t]
            out[name].append(nll.cpu())
    return {name: torch.cat(parts) for name, parts in out.items()}


def derangement(n: int, generator: torch.Generator) -> Tensor:
    """A seeded permutation of ``range(n)`` with no fixed point (``n >= 2``)."""
    order = torch.randperm(n, generator=generator)
    perm = torch.empty(n, dtype=torch.long)
    perm[order] = order.roll(-1)  # each takes the next one in a random cycle
    return perm


def latent_quality(model: nn.Module, grammar: Grammar, rules: Tensor, lengths: Tensor,
                   options: LatentOptions | None = None, *, out_dir: Path | None = None, batch_size: int = 1000,
                   constraints: str = "auto", progress: bool = False) -> dict[str, Any]:
    """The latent metrics of held-out sequences (see the module docstring).

    Args:
        rules / lengths: ``N x T`` padded held-out production sequences and their lengths
            (the first ``options.limit`` are used).
        out_dir: where the pictures go (molecules; none when None).
        batch_size: latents per argmax decode; the beam takes ``batch_size // beam_width``.
        constraints: decoding constraints (see :func:`molshape.grammar.decoding.make_decoder`).

    Returns:
        a dict with the same keys for every model: ``n``, ``similarity`` (its kind),
        ``recon`` (``argmax`` / ``beam`` / ``gvae_protocol`` / ``refined`` exact shares), ``beam``,
        ``gvae_protocol``, ``roundtrip``, ``nll``, ``neighbourhood``, ``refined``, ``timing``, ``files``.
    """
    o = options or LatentOptions()
    rules, lengths = rules[:o.limit], lengths[:o.limit]
    n = len(rules)
    if n < 2:
        raise ValueError(f"the latent metrics need at least 2 held-out sequences, got {n}")
    parser = get_parser(grammar)
    truth = [parser.expand(r[: int(m)].tolist()) for r, m in zip(rules, lengths)]
    z = gen.encode_rules(model, rules, batch_size)
    timing: dict[str, float | None] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timing[f"{name}_s"] = round(now - clock, 2)
        clock = now

    argmax = gen.decode_latents(model, grammar, z, batch_size=batch_size, progress=progress, constraints=constraints)
    own = pair_similarity(grammar, truth, argmax)
    recon: dict[str, float | None] = {"argmax": exact_share(grammar, truth, argmax), "beam": None,
                                      "gvae_protocol": None}
    lap("argmax")

    beam: dict[str, Any] = {"width": o.beam_width or None, "log_likelihood": None, "argmax_log_likelihood": None}
    if o.beam_width:
        found = decode_beam(model, grammar, z, o.beam_width, max(1, batch_size // o.beam_width),
                                progress=progress, constraints=constraints)
        recon["beam"] = exact_share(grammar, truth, found.decoded)
        beam["log_likelihood"] = _finite_mean(found.log_likelihood)
        beam["argmax_log_likelihood"] = _finite_mean(found.argmax_log_likelihood)
        lap("beam")

    protocol = {"encodes": 1, "samples": o.gvae_samples or None,
                "note": "deterministic encoder: GVAE's 10 encodes would be identical, so 1 encode x "
                        f"{o.gvae_samples} sampled decodes, the most frequent valid result"}
    if o.gvae_samples:
        generator = torch.Generator().manual_seed(o.seed)
        voted = gen.decode_latents(model, grammar, z, mode="sample", attempts=o.gvae_samples, generator=generator,
                                   batch_size=batch_size, progress=progress, constraints=constraints)
        recon["gvae_protocol"] = exact_share(grammar, truth, voted)
        lap("gvae_protocol")

    nll: dict[str, float | None] = {"own": None, "shuffled": None, "zero": None, "nats_carried": None,
                                    "zero_minus_own": None}
    if o.nll:
        generator = torch.Generator().manual_seed(o.seed)
        values = {"own": z, "shuffled": z[derangement(n, generator)], "zero": torch.zeros_like(z)}
        for name, per_molecule in teacher_forced_nlls(model, grammar, values, rules, lengths).items():
            nll[name] = float(per_molecule.mean())
        nll["nats_carried"] = nll["shuffled"] - nll["own"]
        nll["zero_minus_own"] = nll["zero"] - nll["own"]
        lap("nll")

    around, around_valid = _neighbourhood(model, grammar, z, truth, o, batch_size, constraints, progress)
    neighbourhood: dict[str, float] = {"sigma_0": float(own.mean()), **around}
    neighbourhood_valid: dict[str, float] = {"sigma_0": _valid_share(argmax), **around_valid}
    if o.sigmas:
        lap("neighbourhood")

    refined = _refined(model, grammar, rules, truth, z, o, constraints, progress)
    recon["refined"] = None if refined is None else refined["exact"]
    if refined is not None:
        lap("refined")

    files: dict[str, str] = {}
    if o.pictures and out_dir is not None and is_molecular(grammar):
        files = _pictures(model, grammar, z[:2], truth[:2], out_dir, o, constraints)
        lap("pictures")
    return {
        "n": n, "similarity": similarity_kind(grammar), "recon": recon, "beam": beam, "gvae_protocol": protocol,
        "roundtrip": {"mean": float(own.mean()), "share_ge_0.6": float((own >= 0.6).mean()),
                      "share_ge_0.8": float((own >= 0.8).mean())},
        "nll": nll, "neighbourhood": neighbourhood, "neighbourhood_valid": neighbourhood_valid,
        "refined": refined or {key: None for key in REFINED_KEYS},
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(o).items()},
        "timing": timing, "files": files,
    }


#: keys of the ``refined`` section (all None when it is skipped)
REFINED_KEYS = ("n", "steps", "exact", "tanimoto_mean", "share_ge_0.8", "nll_before", "nll_after", "norm_before",
                "norm_after", "mean_steps_taken", "neighbourhood")


def _refined(model: nn.Module, grammar: Grammar, rules: Tensor, truth: list[str], z: Tensor, o: LatentOptions,
             constraints: str, progress: bool) -> dict[str, Any] | None:
    """Refined encodings of the first ``o.refine_limit`` molecules: exact share (argmax decode of the
    refined latent), round trip, NLL and norm before / after, and the neighbourhood curve around them."""
    m = min(o.refine_limit, len(rules))
    if not o.refine_steps or m < 1:
        return None
    out = refine_latents(model, grammar, rules[:m], RefineOptions(steps=o.refine_steps), z=z[:m],
                         constraints=constraints, progress=progress)
    decoded = gen.decode_latents(model, grammar, out.z, constraints=constraints)
    close = pair_similarity(grammar, truth[:m], decoded)
    around, _ = _neighbourhood(model, grammar, out.z, truth[:m], o, constraints=constraints)
    return {"n": m, "steps": o.refine_steps, "exact": exact_share(grammar, truth[:m], decoded),
            "tanimoto_mean": float(close.mean()), "share_ge_0.8": float((close >= 0.8).mean()),
            "nll_before": float(out.nll_before.mean()), "nll_after": float(out.nll_after.mean()),
            "norm_before": float(out.norm_before.mean()), "norm_after": float(out.norm_after.mean()),
            "mean_steps_taken": float(out.steps.float().mean()), "neighbourhood": around}


def _neighbourhood(model: nn.Module, grammar: Grammar, z: Tensor, truth: Sequence[str], o: LatentOptions,
                   batch_size: int = 1000, constraints: str = "auto",
                   progress: bool = False) -> tuple[dict[str, float], dict[str, float]]:
    """Mean similarity to ``truth`` of the argmax decodes of ``z + sigma * eps`` for each of ``o.sigmas``
    (seeded by ``o.seed``), and the valid share of those decodes: ``({"sigma_S": ...}, {"sigma_S": ...})``."""
    generator = torch.Generator().manual_seed(o.seed)
    similar, valid = {}, {}
    for sigma in tqdm(o.sigmas, desc="neighbourhood", disable=not progress, leave=False):
        noisy = z + sigma * torch.randn(z.shape, generator=generator)
        decoded = gen.decode_latents(model, grammar, noisy, batch_size=batch_size, constraints=constraints)
        similar[f"sigma_{sigma:g}"] = float(pair_similarity(grammar, truth, decoded).mean())
        valid[f"sigma_{sigma:g}"] = _valid_share(decoded)
    return similar, valid


def _finite_mean(values: Tensor) -> float | None:
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if len(finite) else None


def _valid_share(decoded: Sequence[str | None]) -> float:
    return sum(d is not None for d in decoded) / max(len(decoded), 1)


def _pictures(model: nn.Module, grammar: Grammar, z: Tensor, truth: list[str], out_dir: Path, o: LatentOptions,
              constraints: str) -> dict[str, str]:
    """``latent_interpolation.png`` (a line between two molecules) and ``latent_neighbourhood.png``."""
    from molshape.scoring.chem import draw_grid  # RDKit is heavy: loaded only when molecules are involved

    t = torch.linspace(0.0, 1.0, LINE_STEPS).unsqueeze(1)
    line = gen.decode_latents(model, grammar, (1 - t) * z[0] + t * z[1], constraints=constraints)
    ends = [to_user_string(grammar, s) for s in truth]
    smiles = [ends[0], *line, ends[1]]
    labels = ["A (input)", *(f"t={x:.2f}" for x in t.squeeze(1).tolist()), "B (input)"]
    interpolation = out_dir / "latent_interpolation.png"
    with atomic_path(interpolation) as tmp:
        draw_grid(smiles, labels, tmp, per_row=6, keep_invalid=True)

    generator = torch.Generator().manual_seed(o.seed)
    sigmas = [s for s in o.sigmas if s > 0] or list(SIGMAS)
    own = gen.decode_latents(model, grammar, z[:1], constraints=constraints)
    smiles = [ends[0], *own]
    labels = ["input", f"own decode: Tanimoto {pair_similarity(grammar, truth[:1], own)[0]:.2f}"]
    smiles += [None] * (AROUND - 2)
    labels += [""] * (AROUND - 2)
    for sigma in sigmas:
        noisy = z[:1] + sigma * torch.randn((AROUND, z.shape[1]), generator=generator)
        decoded = gen.decode_latents(model, grammar, noisy, constraints=constraints)
        smiles += list(decoded)
        close = pair_similarity(grammar, truth[:1] * AROUND, decoded)
        labels += [f"sigma={sigma:g}: " + (f"Tanimoto {c:.2f}" if d is not None else "invalid")
                   for d, c in zip(decoded, close)]
    around = out_dir / "latent_neighbourhood.png"
    with atomic_path(around) as tmp:
        draw_grid(smiles, labels, tmp, per_row=AROUND, keep_invalid=True)
    return {"latent_interpolation": str(interpolation), "latent_neighbourhood": str(around)}


def estimate_seconds(model: nn.Module, grammar: Grammar, rules: Tensor, lengths: Tensor, options: LatentOptions,
                     n: int, constraints: str = "auto", probe: int = 32) -> float:
    """Expected seconds of :func:`latent_quality` on ``n`` sequences, timed on the first ``probe`` of ``rules``.

    Argmax decoding, the beam and the teacher-forced pass are each timed on the probe and
    scaled to ``n`` (GVAE-protocol samples and noise levels cost one argmax decode each).
    Small probe batches run less efficiently than full ones, so this errs on the long side.
    """
    m = min(probe, len(rules))
    z = gen.encode_rules(model, rules[:m])
    t0 = time.perf_counter()
    gen.decode_latents(model, grammar, z, constraints=constraints)
    argmax = (time.perf_counter() - t0) / m
    beam = nll = 0.0
    if options.beam_width:
        t0 = time.perf_counter()
        decode_beam(model, grammar, z, options.beam_width, constraints=constraints)
        beam = (time.perf_counter() - t0) / m
    if options.nll:
        t0 = time.perf_counter()
        teacher_forced_nlls(model, grammar, {"own": z, "shuffled": z.flip(0), "zero": torch.zeros_like(z)},
                            rules[:m], lengths[:m])
        nll = (time.perf_counter() - t0) / m
    per = argmax * (1 + options.gvae_samples + len(options.sigmas)) + beam + nll
    # nll timed three forward passes (own, shuffled, zero); a refinement step is one with its backward pass
    checks = options.refine_steps // RefineOptions.check_every + 2 + len(options.sigmas)
    refine = nll * options.refine_steps + argmax * checks
    refined = min(options.refine_limit, n) * refine if options.refine_steps else 0.0
    return per * n + refined + (argmax * (LINE_STEPS + 1 + AROUND * 3) if options.pictures else 0.0)
