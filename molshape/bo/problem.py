"""Turn a trained grammar autoencoder into a BO :class:`~molshape.bo.loop.Problem`.

Initial data (``init``):

* ``data``: the checkpoint's training split of its data set, encoded, with its scores
  (GVAE). Latents are cached under ``cache_dir()/optimize`` keyed by the checkpoint's
  sha256, the data's sha256 and the rows used; scores by the data's sha256, the target
  and the rows (they do not depend on the model).
* ``prior``: ``n_init`` latents from the model's prior, decoded and scored on the fly;
  needs no data set.
* ``auto``: ``data`` when the data set is found, else ``prior``.

New latents are decoded once by argmax, or with ``attempts = k > 1`` by GVAE's majority
vote over ``k`` stochastic decodes (the argmax decode is then recorded alongside).
A decoded molecule that raises a realism flag is rejected before it is scored, unless
``realism_gate=False`` (:mod:`molshape.bo.realism_gate`).

Example:
    >>> problem = build_problem(model, grammar, "logp", checkpoint=ckpt, checkpoint_path=path)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from molshape.grammar.cfg import Grammar
from molshape.bo.config import INITS
from molshape.bo.constrained import Region
from molshape.bo.loop import Problem
from molshape.bo.realism_gate import gated_scores
from molshape.scoring.targets import OPTIMIZE_TARGETS, fits, get_target, score_values
from molshape.gvae.generation import prior_latents
from molshape.core.checkpoint import load_checkpoint, save_checkpoint
from molshape.core.hashing import file_hash
from molshape.data.datasets import PreparedData
from molshape.data.trained import checkpoint_data
from molshape.gvae.generation import encode_rules
from molshape.core.runtime import cache_dir
from molshape.gvae.generation import canonical_key, decode_latents

log = logging.getLogger(__name__)

def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else p.encode())
    return h.hexdigest()[:24]


def build_problem(model, grammar: Grammar, target: str, *, checkpoint: dict, checkpoint_path: str | Path,
                  init: str = "auto", n_init: int | None = None, data: str | Path | None = None,
                  attempts: int = 1, seed: int = 0, progress: bool = False, constraints: str = "auto",
                  prior_quantile: float | None = None, realism_gate: bool = True) -> Problem:
    """Initial data and an ``evaluate`` function for latent BO with a trained model.

    With ``prior_quantile`` the search keeps to the ball holding that share of the mass of
    the nearest prior component (and the prior's central box), where the decoder writes
    realistic molecules. With ``realism_gate`` (molecule targets) a decoded molecule that
    raises a realism flag is rejected unscored (:mod:`molshape.bo.realism_gate`), in the
    prior initial design as in the proposals.

    Raises:
        ValueError: the target does not match the model's grammar, or the data set is not the
            one the checkpoint was trained on.
        FileNotFoundError: ``init="data"`` and the data set is not found.
    """
    if target not in OPTIMIZE_TARGETS:
        raise ValueError(f"unknown target {target!r}; choose from {sorted(OPTIMIZE_TARGETS)}")
    higher = get_target(target).higher_is_better
    if not fits(target, grammar):
        needs = "smiles" if get_target(target).molecular else target
        raise ValueError(f"target {target!r} needs a {needs!r} model; {checkpoint_path} is a {grammar.name!r} model")
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose from {INITS}")

    ckpt_sha = file_hash(checkpoint_path)
    region = None
    if prior_quantile is not None:
        prior = model.objective.prior
        region = Region.around(prior.centers.detach().cpu().double(), float(prior.std), quantile=prior_quantile)
    gate = realism_gate and get_target(target).molecular
    evaluate = make_evaluate(model, grammar, target, attempts, constraints, gate)
    gate_key = "-realism-gate" if gate else ""  # an ungated run keeps the state files it always had
    if init in ("auto", "data"):
        try:
            z, scores, source, key = _data_init(model, grammar, target, checkpoint, ckpt_sha, data, n_init, seed,
                                                progress)
            return Problem(z, scores, evaluate, higher, source, _digest(key, f"q{prior_quantile}{gate_key}"), grammar.name,
                           target, region)
        except FileNotFoundError as e:
            if init == "data":
                raise
            log.warning("no data set found (%s); initial design = %d decoded prior samples", e, n_init or 500)
    n = n_init or 500
    z = _prior_latents(model, n, seed)
    records = evaluate(z.double())
    scores = np.array([r["score"] for r in records], dtype=np.float64)
    valid = sum(r["string"] is not None for r in records)
    log.info("prior initial design: %d of %d decodes valid", valid, n)
    source = f"prior ({valid}/{n} valid)"
    if gate:
        source = f"prior ({valid}/{n} valid, {sum(bool(r['rejected']) for r in records)} rejected as unrealistic)"
    return Problem(z.double(), scores, evaluate, higher, source,
                   _digest(ckpt_sha, f"prior-{n}-{seed}-{attempts}-{constraints}-q{prior_quantile}{gate_key}"),
                   grammar.name, target, region)


def _prior_latents(model, n: int, seed: int) -> Tensor:
    return prior_latents(model, n, torch.Generator().manual_seed(seed))


def initial_rows(checkpoint: dict, grammar: Grammar, data, n_init: int | None,
                 seed: int) -> tuple[PreparedData, Tensor]:
    """The checkpoint's data (with its ``--limit``) and the training rows the initial design
    starts from: all of them, or a seeded random ``n_init`` of them."""
    prepared = checkpoint_data(checkpoint, grammar, data)
    rows = checkpoint.split["train"]
    if n_init is not None and n_init < len(rows):
        rows = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))[:n_init]]
    return prepared, rows


def _data_init(model, grammar: Grammar, target: str, checkpoint: dict, ckpt_sha: str, data, n_init: int | None,
               seed: int, progress: bool) -> tuple[Tensor, np.ndarray, str, str]:
    prepared, rows = initial_rows(checkpoint, grammar, data, n_init, seed)
    rows_id = _digest(rows.numpy().astype(np.int64).tobytes())
    folder = cache_dir() / "optimize"
    z_path = folder / f"latents-{_digest(ckpt_sha, prepared.source_sha256, rows_id)}.pt"
    s_path = folder / f"scores-{target}-{_digest(prepared.source_sha256, rows_id)}.pt"
    if z_path.is_file():
        z = load_checkpoint(z_path)["z"]
    else:
        z = encode_rules(model, prepared.rules[rows], progress=progress)
        save_checkpoint({"z": z}, z_path)
    if s_path.is_file():
        scores = load_checkpoint(s_path)["scores"].numpy()
    else:
        strings = [prepared.strings[int(i)] for i in rows]
        scores = score_values(target, strings, progress=progress, workers=None)
        save_checkpoint({"scores": torch.from_numpy(scores)}, s_path)
    n_bad = int(np.isnan(scores).sum())
    if n_bad:
        log.warning("%d of %d initial molecules could not be scored; they enter with the worst score", n_bad,
                    len(scores))
    source = f"data:{Path(prepared.source).name} ({len(rows)} training rows)"
    return z.double(), scores, source, _digest(ckpt_sha, prepared.source_sha256, rows_id)


def make_evaluate(model, grammar: Grammar, target: str, attempts: int = 1, constraints: str = "auto",
                  realism_gate: bool = True):
    """``evaluate(z [q x d]) -> records``: decode (under ``constraints``), score, and record why
    invalid ones failed. With ``realism_gate`` a molecule raising a realism flag is not scored
    (:mod:`molshape.bo.realism_gate`); its record keeps the string, no score, and the flags
    under ``rejected``."""
    key = canonical_key(grammar)

    def oracle(strings: list) -> np.ndarray:
        return score_values(target, strings)

    def evaluate(z: Tensor) -> list[dict]:
        zf = z.float()
        argmax = decode_latents(model, grammar, zf, mode="argmax", constraints=constraints)
        argmax_scores, argmax_rejected = gated_scores(oracle, argmax, realism_gate)
        if attempts == 1:
            return [_record(s, float(v), why, key, rej, realism_gate)
                    for s, v, why, rej in zip(argmax, argmax_scores, argmax.reasons, argmax_rejected)]
        # seeded by the latents themselves, so a resumed run decodes the same way
        gen = torch.Generator().manual_seed(int(_digest(z.cpu().numpy().tobytes())[:12], 16))
        voted = decode_latents(model, grammar, zf, mode="sample", attempts=attempts, generator=gen,
                               constraints=constraints)
        voted_scores, voted_rejected = gated_scores(oracle, voted, realism_gate)
        return [{**_record(s, float(v), why, key, rej, realism_gate), "argmax_string": a,
                 "argmax_score": float(av) if a is not None else float("nan"),
                 "argmax_canonical": key(a) if a is not None else None}
                for s, v, why, rej, a, av in zip(voted, voted_scores, voted.reasons, voted_rejected, argmax,
                                                 argmax_scores)]

    return evaluate


def _record(s: str | None, score: float, reason: str | None, key, rejected: str | None = None,
            gate: bool = False) -> dict:
    out = {"string": s, "score": score if s is not None else float("nan"),
           "canonical": key(s) if s is not None else None,
           "reason": f"unrealistic: {rejected}" if rejected else reason}
    if gate:  # the column exists only in gated runs, so an ungated run's files are as they always were
        out["rejected"] = rejected
    return out
