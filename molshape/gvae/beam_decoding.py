"""Strings by beam search: the most likely complete derivation of each latent, as strings.

:func:`decode_beam` runs :func:`molshape.grammar.beam.beam_decode` in batches and returns the
strings as :func:`molshape.gvae.generation.decode_latents` does, with their log-likelihoods.

Example:
    >>> out = decode_beam(model, grammar, z, width=5)  # doctest: +SKIP
    >>> out.decoded[:3], out.log_likelihood[:3], out.argmax_log_likelihood[:3]  # doctest: +SKIP
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from molshape.grammar.beam import beam_decode
from molshape.grammar.cfg import Grammar
from molshape.gvae import generation as gen


class BeamDecoded(NamedTuple):
    """What :func:`decode_beam` returns.

    Attributes:
        decoded: the most likely complete derivation found per latent, as :func:`~molshape.gvae.generation.decode_latents` returns strings.
        log_likelihood: ``[N]`` float64, its total log-probability (nats).
        argmax_log_likelihood: ``[N]`` float64, that of the argmax derivation (never above ``log_likelihood``).
    """

    decoded: gen.Decoded
    log_likelihood: Tensor
    argmax_log_likelihood: Tensor


@torch.no_grad()
def decode_beam(model: nn.Module, grammar: Grammar, z: Tensor, width: int = 5, batch_size: int = 200,
                progress: bool = False, constraints: str = "auto") -> BeamDecoded:
    """Decode latents by beam search (:func:`molshape.grammar.beam.beam_decode`).

    Args:
        z: ``N x d`` latents (any device). width: hypotheses kept per latent (1 = argmax).
        batch_size: latents per beam (``batch_size x width`` rows per model call).
        constraints: as for :func:`~molshape.gvae.generation.decode_latents`.
    """
    decoder = gen.cached_decoder(grammar, constraints)
    device = gen.model_device(model)
    raw: list[str | None] = []
    ll: list[Tensor] = []
    greedy: list[Tensor] = []
    for i in tqdm(range(0, len(z), batch_size), desc=f"beam {width}", disable=not progress, leave=False):
        result = beam_decode(decoder, model, z[i:i + batch_size].to(device), width)
        raw += gen.expand_results(grammar, result)
        ll.append(result.log_likelihood.cpu())
        greedy.append(result.argmax_log_likelihood.cpu())
    empty = torch.zeros(0, dtype=torch.float64)
    return BeamDecoded(gen.decoded_strings(grammar, raw, gen.judge(grammar, raw)), torch.cat(ll) if ll else empty,
                       torch.cat(greedy) if greedy else empty)
