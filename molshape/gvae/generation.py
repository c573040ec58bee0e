"""Strings <-> latents through a trained grammar autoencoder, and where latents come from.

- :func:`parse_inputs` / :func:`encode_rules` / :func:`encode_strings`: strings ->
  production sequences -> ``z [N x d]`` (unparseable inputs reported by index, never
  dropped silently).
- :func:`decode_latents`: ``z`` -> strings with the masked stack decoder
  (:mod:`molshape.grammar.decoding`), checked for validity (RDKit for SMILES; a finite function
  for expressions). With ``attempts=k`` each latent is decoded ``k`` times by sampling
  (the latents are repeated, so it stays one batched decode) and the most frequent
  valid result is kept, as GVAE does.
- Latent sources: :func:`prior_latents` (the model's prior), :func:`component_latents`
  (one mixture component), :func:`interpolate_latents` (a straight line between two
  encoded strings) and :class:`ExPostGMM` / :func:`expost_gmm` (RAE's ex-post density: a
  10-component full-covariance GMM fitted to the training latents, cached under
  ``cache_dir()/expost`` keyed by the checkpoint's sha256).

Example:
    >>> z = prior_latents(model, 100, torch.Generator().manual_seed(0))  # doctest: +SKIP
    >>> out = decode_latents(model, grammar, z)  # doctest: +SKIP
    >>> sum(s is not None for s in out), out.reasons[:3]  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from molshape.core.errors import DroppedFeatureWarning, InputError, LatentError
from molshape.grammar.beam import BeamResult
from molshape.grammar.decoding import DecodeResult, StackDecoder, make_decoder
from molshape.grammar.cfg import Grammar, GrammarError
from molshape.grammar.parser import get_parser
from molshape.grammar.representation import is_kekule, is_molecular, to_grammar_strings, to_user_string
from molshape.scoring.expr_score import expression_values
from molshape.core.hashing import file_hash
from molshape.data.trained import TrainedOn, checkpoint_data
from molshape.latent.expost import ExPostGMM
from molshape.core.cache import load_entry, save_entry
from molshape.core.runtime import cache_dir

log = logging.getLogger(__name__)


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# -- validity -------------------------------------------------------------------------
def invalid_reason(grammar: Grammar, s: str) -> str | None:
    """``None`` if ``s`` is a valid output of ``grammar``, else a short reason.

    SMILES: RDKit parses and sanitises it. Expressions: it evaluates to a finite
    function on the scoring grid (``molshape.scoring.expr_score``).
    """
    if is_molecular(grammar):
        from molshape.scoring.chem import invalid_reason as rdkit_reason  # RDKit is heavy: loaded only when molecules are involved

        return rdkit_reason(s)
    if grammar.name == "expr":
        return _expr_reason(s)
    return None  # a custom grammar: a complete derivation is all we can check


def _expr_reason(s: str) -> str | None:
    import numpy as np


    try:
        values = expression_values(s)
    except GrammarError as e:
        return f"not an expression: {e.reason}"
    bad = int((~np.isfinite(values)).sum())
    return f"not finite at {bad} of {values.size} scoring points" if bad else None


def canonical_key(grammar: Grammar) -> Callable[[str], str]:
    """The identity of a valid output: canonical SMILES for molecules, the string otherwise."""
    if is_molecular(grammar):
        from molshape.scoring.chem import canonicalise  # RDKit is heavy: loaded only when molecules are involved

        return lambda s: canonicalise(s) or s
    return lambda s: s


# -- strings -> latents ---------------------------------------------------------------
@dataclass
class ParsedInputs:
    """Result of :func:`parse_inputs`.

    Attributes:
        rules: ``N_ok x T`` long, padded with ``grammar.pad``.
        index: position in the input list of each row of ``rules``.
        failed: ``(position, string, reason)`` of every input that did not parse.
        dropped: ``(position, string, what)`` of every input that parsed without something
            its grammar cannot write (Kekulé SMILES: isotopes, stereo).
    """

    rules: Tensor
    index: list[int]
    failed: list[tuple[int, str, str]]
    dropped: list[tuple[int, str, str]] = dataclasses.field(default_factory=list)


def parse_inputs(grammar: Grammar, strings: Sequence[str], progress: bool = False) -> ParsedInputs:
    """Parse ``strings``; failures are collected with their position and reason.

    Grammars with their own string form (Kekulé SMILES) convert each input first.
    """
    parser = get_parser(grammar)
    rows, index, failed, dropped = [], [], [], []
    converted = to_grammar_strings(grammar, strings, workers=1)
    pairs = tqdm(zip(strings, converted), total=len(strings), desc="parse", disable=not progress, leave=False)
    for i, (s, c) in enumerate(pairs):
        if c is None:
            failed.append((i, s, "RDKit cannot read it as a molecule"))
            continue
        if c != s and is_kekule(grammar):
            from molshape.scoring.chem import dropped_features  # RDKit: only for molecule grammars

            if lost := dropped_features(s):
                dropped.append((i, s, ", ".join(lost)))
        try:
            seq = parser.parse(c)
        except GrammarError as e:
            failed.append((i, s, e.reason))
            continue
        rows.append(seq + [grammar.pad] * (grammar.max_length - len(seq)))
        index.append(i)
    rules = torch.tensor(rows, dtype=torch.long).reshape(len(rows), grammar.max_length)
    return ParsedInputs(rules, index, failed, dropped)


#: per-input warnings :func:`warn_dropped` gives before it sums up the rest
WARN_DROPPED = 20


def warn_dropped(parsed: ParsedInputs, grammar: Grammar) -> None:
    """One :class:`DroppedFeatureWarning` per input that lost something on the way in (the first
    :data:`WARN_DROPPED`, then one for the rest)."""
    for i, s, what in parsed.dropped[:WARN_DROPPED]:
        warnings.warn(f"input {i + 1} {s!r} loses its {what} (the {grammar.name} grammar cannot write them) and is "
                      "encoded as the molecule without them", DroppedFeatureWarning, stacklevel=3)
    if len(parsed.dropped) > WARN_DROPPED:
        warnings.warn(f"{len(parsed.dropped) - WARN_DROPPED} more inputs lost isotopes or stereo on the way in",
                      DroppedFeatureWarning, stacklevel=3)


@torch.no_grad()
def encode_rules(model: nn.Module, rules: Tensor, batch_size: int = 1000, progress: bool = False) -> Tensor:
    """``rules [N x T]`` -> ``z [N x d]`` on CPU (float32), in batches on the model's device."""
    device = model_device(model)
    out = [model.encode(rules[i:i + batch_size].to(device)).float().cpu()
           for i in tqdm(range(0, len(rules), batch_size), desc="encode", disable=not progress, leave=False)]
    if not out:
        raise ValueError("encode_rules: no sequences to encode")
    return torch.cat(out)


class EncodedInputs(NamedTuple):
    """What :func:`encode_inputs` returns.

    Attributes:
        z: ``N_ok x d`` float32 latents (CPU) of the inputs that parsed, in input order.
        index: the input position (0-based) of each row of ``z``.
        failed: ``(position, string, reason)`` of every input that did not parse.
        exact: ``N_ok`` bool for refined encodings (the latent decodes back to the input), else None.
    """

    z: Tensor
    index: list[int]
    failed: list[tuple[int, str, str]]
    exact: Tensor | None = None


def encode_inputs(model: nn.Module, grammar: Grammar, strings: Sequence[str], batch_size: int = 1000,
                  progress: bool = False) -> EncodedInputs:
    """Latents of the ``strings`` that parse; the others are skipped and listed, never dropped silently."""
    parsed = parse_inputs(grammar, strings, progress)
    d = int(getattr(getattr(model, "config", None), "latent_dim", 0))
    z = encode_rules(model, parsed.rules, batch_size, progress) if parsed.index else torch.zeros(0, d)
    return EncodedInputs(z, parsed.index, parsed.failed)


def encode_strings(model: nn.Module, grammar: Grammar, strings: Sequence[str], batch_size: int = 1000) -> Tensor:
    """``z [N x d]`` of ``strings``.

    Raises:
        GrammarError: an input does not parse (message names its 1-based position).
    """
    if not strings:
        return torch.zeros(0, int(model.config.latent_dim))
    return encode_rules(model, parse_strings(grammar, strings), batch_size)


def parse_strings(grammar: Grammar, strings: Sequence[str]) -> Tensor:
    """``rules [N x T]`` of ``strings``, all of which must parse.

    Raises:
        GrammarError: an input does not parse (message names its 1-based position).
    """
    parsed = parse_inputs(grammar, strings)
    warn_dropped(parsed, grammar)
    if parsed.failed:
        i, s, reason = parsed.failed[0]
        raise GrammarError(s, None, f"input {i + 1} does not parse: {reason}"
                           + (f" ({len(parsed.failed) - 1} more failed)" if len(parsed.failed) > 1 else ""))
    return parsed.rules


# -- latents -> strings ---------------------------------------------------------------
class Decoded(list):
    """``list[str | None]`` (None = invalid or incomplete) with the details kept alongside.

    Attributes:
        reasons: per item, ``None`` when valid, else e.g. ``"incomplete"`` or
            ``"invalid: CC( (RDKit: ...)"``.
        raw: per item, the decoded string even if invalid (None when incomplete).
        n_incomplete: items whose derivation did not finish (all attempts, with ``attempts > 1``).
    """

    def __init__(self, strings: list[str | None], reasons: list[str | None], raw: list[str | None]) -> None:
        super().__init__(strings)
        self.reasons = reasons
        self.raw = raw
        self.n_incomplete = sum(r == "incomplete" for r in reasons)


def expand_results(grammar: Grammar, result: DecodeResult | BeamResult) -> list[str | None]:
    """Strings of the complete derivations of ``result``; ``None`` for incomplete ones."""
    parser = get_parser(grammar)
    rules = result.rules.cpu()
    return [parser.expand(r[: int(n)].tolist()) if ok else None
            for r, n, ok in zip(rules, result.lengths.cpu(), result.complete.cpu().tolist())]


def judge(grammar: Grammar, raw: list[str | None]) -> list[str | None]:
    """Reason per raw string (None = valid); each distinct string is checked once."""
    seen: dict[str, str | None] = {}
    reasons: list[str | None] = []
    for s in raw:
        if s is None:
            reasons.append("incomplete")
            continue
        if s not in seen:
            why = invalid_reason(grammar, s)
            seen[s] = None if why is None else f"invalid: {s} ({why})"
        reasons.append(seen[s])
    return reasons


@torch.no_grad()
def decode_latents(model: nn.Module, grammar: Grammar, z: Tensor, mode: str = "argmax", attempts: int = 1,
                   generator: torch.Generator | None = None, batch_size: int = 2000,
                   progress: bool = False, constraints: str = "auto") -> Decoded:
    """Decode latents to strings.

    Args:
        model: a grammar autoencoder (``decoder_init`` / ``decoder_step``), in eval mode.
        grammar: its grammar.
        z: ``N x d`` latents (any device).
        mode: ``argmax`` or ``sample``; ``attempts > 1`` requires ``sample``.
        attempts: decodes per latent; the most frequent valid result (by canonical
            SMILES for molecules) is kept.
        generator: seeds the sampling noise.
        batch_size: decoded sequences per model call (latents x attempts).
        progress: show a progress bar.
        constraints: ``auto`` (semantic where the grammar has semantic constraints),
            ``semantic`` or ``grammar`` (see :func:`molshape.grammar.decoding.make_decoder`).

    Returns:
        :class:`Decoded` of length N, in the order of ``z``. Molecules of Kekulé
        grammars come back as canonical (aromatic) SMILES; ``raw`` keeps the decoded form.

    Raises:
        LatentError: ``z`` is not ``N x d`` floating point, or holds NaN or infinity.
    """
    z = check_latents(z, int(model.config.latent_dim))
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise InputError(f"attempts must be a whole number >= 1, got {attempts!r}")
    if attempts > 1 and mode != "sample":
        raise InputError("attempts > 1 needs mode='sample' (argmax decodes give the same result every time)")
    decoder = cached_decoder(grammar, constraints)
    device = model_device(model)
    z_rep = z.repeat_interleave(attempts, dim=0)  # [N*k, d], the k attempts of a latent adjacent
    raw: list[str | None] = []
    bar = tqdm(total=len(z_rep), desc="decode", unit="seq", disable=not progress, leave=False)
    for i in range(0, len(z_rep), batch_size):
        chunk = z_rep[i:i + batch_size].to(device)
        raw += expand_results(grammar, decoder.decode(model, chunk, mode=mode, generator=generator))
        bar.update(len(chunk))
    bar.close()
    reasons = judge(grammar, raw)
    if attempts == 1:
        return decoded_strings(grammar, raw, reasons)
    out = _aggregate(grammar, raw, reasons, attempts)
    out[:] = [to_user_string(grammar, s) for s in out]
    return out


def decoded_strings(grammar: Grammar, raw: list[str | None], reasons: list[str | None]) -> Decoded:
    """One result per raw string: its user form where valid, else None (with the reason)."""
    return Decoded([to_user_string(grammar, s) if r is None else None for s, r in zip(raw, reasons)], reasons, raw)


def check_latents(z: object, dim: int) -> Tensor:
    """``z`` as a float32 ``N x dim`` tensor, or :class:`LatentError` saying in one sentence what is wrong.

    Any floating dtype is accepted (and cast); integers, booleans and complex numbers are not,
    nor NaN or infinity (a decoder given them returns garbage that only looks like an answer).
    """
    if not isinstance(z, Tensor):
        try:
            z = torch.as_tensor(z)
        except (TypeError, ValueError, RuntimeError) as e:
            raise LatentError(f"latents must be a float tensor of shape [N x {dim}], got {type(z).__name__} "
                              f"({e})") from None
    if not torch.is_floating_point(z):
        raise LatentError(f"latents must be floating point, got dtype {str(z.dtype).removeprefix('torch.')}; "
                          "convert them with z.float()")
    if z.dim() != 2 or z.shape[1] != dim:
        hint = "; for one latent use z.unsqueeze(0)" if z.dim() == 1 and z.shape[0] == dim else ""
        raise LatentError(f"latents must have shape [N x {dim}] for this model, got {list(z.shape)}{hint}")
    finite = torch.isfinite(z).all(dim=1)
    if not bool(finite.all()):
        bad = (~finite).nonzero().flatten()
        raise LatentError(f"latents hold NaN or infinity in {len(bad)} of {len(z)} rows (first: row {int(bad[0])}); "
                          "decode finite values only")
    return z.float()


def _aggregate(grammar: Grammar, raw: list[str | None], reasons: list[str | None], k: int) -> Decoded:
    """Most frequent valid result per group of ``k`` attempts (ties: the first seen)."""
    key = canonical_key(grammar)
    strings, why, first = [], [], []
    for g in range(0, len(raw), k):
        group = list(zip(raw[g:g + k], reasons[g:g + k]))
        valid = [s for s, r in group if r is None]
        if valid:
            keys = [key(s) for s in valid]
            best = Counter(keys).most_common(1)[0][0]
            strings.append(valid[keys.index(best)])
            why.append(None)
            first.append(strings[-1])
        else:
            strings.append(None)
            why.append("incomplete" if all(r == "incomplete" for _, r in group)
                       else f"no valid result in {k} attempts (first: {group[0][1]})")
            first.append(group[0][0])
    return Decoded(strings, why, first)


@lru_cache(maxsize=8)
def cached_decoder(grammar: Grammar, constraints: str = "auto") -> StackDecoder:
    return make_decoder(grammar, constraints)


# -- latent sources ---------------------------------------------------------------------
def _cpu_prior(model: nn.Module):
    # Sample on CPU with a CPU generator: the same seed gives the same latents on any device.
    return copy.deepcopy(model.objective.prior).to("cpu")


def prior_latents(model: nn.Module, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n x d`` latents from the model's prior (its GMM, or N(0, I)), on CPU."""
    return _cpu_prior(model).sample(n, generator=generator)[0].float()


def component_latents(model: nn.Module, k: int, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n x d`` latents from mixture component ``k`` of the model's prior, on CPU."""
    return _cpu_prior(model).sample_component(k, n, generator=generator).float()


def interpolate_latents(model: nn.Module, grammar: Grammar, a: str, b: str, steps: int) -> Tensor:
    """``steps x d`` latents on the straight line from ``encode(a)`` to ``encode(b)``."""
    za, zb = encode_strings(model, grammar, [a, b])
    return latent_line(za, zb, steps)


def latent_line(za: Tensor, zb: Tensor, steps: int) -> Tensor:
    """``steps x d`` latents evenly spaced on the straight line from ``za [d]`` to ``zb [d]``, ends included."""
    if steps < 2:
        raise ValueError(f"interpolation needs steps >= 2, got {steps}")
    t = torch.linspace(0.0, 1.0, steps).unsqueeze(1)  # [steps, 1]
    return (1 - t) * za + t * zb


def expost_gmm(model: nn.Module, grammar: Grammar, checkpoint: TrainedOn, checkpoint_path: str | Path,
               data: str | Path | None = None, n_components: int = 10, limit: int = 50_000,
               seed: int = 0, progress: bool = False) -> ExPostGMM:
    """The ex-post GMM of a checkpoint, fitted once and cached (keyed by its sha256).

    Training latents are the encoded rows ``checkpoint.split["train"]`` of the
    checkpoint's data set (at most ``limit``, a seeded random subset).

    Raises:
        ValueError: the data set found is not the one the checkpoint was trained on.
    """
    key = f"{file_hash(checkpoint_path)[:24]}-k{n_components}-n{limit}-s{seed}"
    path = cache_dir() / "expost" / f"{key}.pt"
    cached = load_entry(path)
    if cached is not None:
        try:
            return ExPostGMM(**cached)
        except TypeError:  # another version's fields: rebuild it
            log.warning("cache file %s is not an ex-post GMM of this version; it is rebuilt", path)
    prepared = checkpoint_data(checkpoint, grammar, data)
    train = checkpoint.split["train"]
    if len(train) > limit:
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:limit]
        train = train[pick]
    log.info("fitting the ex-post GMM to %d training latents", len(train))
    z = encode_rules(model, prepared.rules[train], progress=progress)
    gmm = ExPostGMM.fit(z, n_components, seed)
    save_entry(gmm.to_dict(), path)
    return gmm
