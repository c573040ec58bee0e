"""Encoding by optimisation: move an encoder's latent until the decoder gives the molecule back.

A trained encoder is amortised: one forward pass guesses a latent for any molecule, and the
guess is only as good as the encoder (held-out molecules of the shipped CPU models decode to
themselves almost never). For a molecule in hand the decoder can be asked directly:
:func:`refine_latents` starts from the encoder's latent and follows the gradient of the
teacher-forced negative log-likelihood of the molecule's own derivation (the training loss's
``rec`` term, under the same masks) with respect to ``z``, the decoder frozen. Every
``check_every`` steps the rows still moving are decoded (argmax); a row whose decode is the
molecule (canonical SMILES, or the same string for other grammars) stops there, so its latent
is one the decoder is known to map back to the molecule.

The result is a point of the same latent space, but further from the prior's bulk than the
encoder's (:class:`Refined` reports the norms). With ``prior_quantile`` set, each step ends
by pulling the latent back into the ball holding that much of its nearest prior
component's mass, the region the searches propose in: the lead searches refine that way.

Example:
    >>> out = refine_latents(model, grammar, rules, RefineOptions(steps=300))  # doctest: +SKIP
    >>> out.exact.float().mean(), out.nll_after.mean()  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from molshape.grammar.cfg import Grammar
from molshape.grammar.parser import get_parser
from molshape.grammar.semantics import semantics_for
from molshape.gvae import generation as gen
from molshape.latent.prior import pull_into_balls

#: optimisation steps of a refined encoding by default
REFINE_STEPS = 300


@dataclass(frozen=True)
class RefineOptions:
    """How far and how fast to refine.

    Attributes:
        steps: Adam steps at most per latent (0: the encoder's latents, checked once).
        lr: Adam's learning rate in latent units (the prior's components have std 1).
        check_every: steps between argmax decodes of the rows still moving.
        batch_size: molecules optimised together (rows are grouped by derivation length).
        prior_quantile: after each step, latents are pulled into the ball holding this much of
            their nearest prior component's mass (as the searches' proposals are, which the lead
            searches use), so a refined latent is one a search can start from; None (default)
            leaves them free, which decodes back more often (GMM priors only).
    """

    steps: int = REFINE_STEPS
    lr: float = 0.15
    check_every: int = 25
    batch_size: int = 200
    prior_quantile: float | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "check_every", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "steps" else 1):
                raise ValueError(f"{name} must be a whole number >= {0 if name == 'steps' else 1}, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.prior_quantile is not None and not 0 < self.prior_quantile < 1:
            raise ValueError(f"prior_quantile must be in (0, 1), got {self.prior_quantile!r}")


class Refined(NamedTuple):
    """What :func:`refine_latents` returns (rows in input order, CPU).

    Attributes:
        z: ``N x d`` float32 refined latents.
        exact: ``N`` bool, the argmax decode of ``z`` is the molecule (checked, not hoped).
        steps: ``N`` long, optimisation steps each row took (0: the encoder's latent was exact).
        nll_before / nll_after: ``N`` float64 teacher-forced NLL (nats) at the encoder's and the refined latent.
        norm_before / norm_after: ``N`` float32 latent norms.
    """

    z: Tensor
    exact: Tensor
    steps: Tensor
    nll_before: Tensor
    nll_after: Tensor
    norm_before: Tensor
    norm_after: Tensor


def exact_matches(grammar: Grammar, truth: Sequence[str], decoded: Sequence[str | None]) -> Tensor:
    """``N`` bool: each decode is the same molecule (canonical SMILES) or string as its truth."""
    key = gen.canonical_key(grammar)
    return torch.tensor([d is not None and key(d) == key(t) for t, d in zip(truth, decoded)], dtype=torch.bool)


def _sequence_nll(model: nn.Module, z: Tensor, target: Tensor, allowed: Tensor) -> Tensor:
    """``B`` teacher-forced NLL (nats) of ``target [B x T]`` under ``allowed [B x T x R]``, differentiable in ``z``."""
    logits = model.teacher_logits(z, target, allowed).float().masked_fill(~allowed, -1e4)
    return F.cross_entropy(logits.transpose(1, 2), target, reduction="none").sum(dim=1)


def allowed_rules(model: nn.Module, grammar: Grammar, target: Tensor) -> Tensor:
    """``[B x T x R]`` bool: the rules each true step of ``target [B x T]`` may choose, the grammar's
    and, for a model trained under semantic constraints, the semantic masks (the training loss's softmax)."""
    allowed = grammar.masks[grammar.lhs_tensor()[target]]
    if getattr(getattr(model, "config", None), "constraints", "grammar") == "semantic":
        allowed = allowed & semantics_for(grammar).teacher_masks(target)
    return allowed


def _shrunk(opt: torch.optim.Adam, z: Tensor, keep: Tensor, lr: float) -> tuple[Tensor, torch.optim.Adam]:
    """The rows ``keep`` of ``z`` as a new leaf, with an Adam that carries their moments on."""
    state = opt.state.get(z, {})
    z_new = z.detach()[keep].clone().requires_grad_(True)
    new = torch.optim.Adam([z_new], lr=lr)
    if state:
        new.state[z_new] = {"step": state["step"].clone(), "exp_avg": state["exp_avg"][keep].clone(),
                            "exp_avg_sq": state["exp_avg_sq"][keep].clone()}
    return z_new, new


def _refine_batch(model: nn.Module, grammar: Grammar, rules: Tensor, lengths: Tensor, truth: list[str],
                  z0: Tensor, o: RefineOptions, constraints: str) -> tuple[Tensor, Tensor, Tensor]:
    """One batch: ``(z [B x d], exact [B], steps [B])``; ``z0`` and the result on the model's device."""
    device = z0.device
    steps = int(lengths.max())
    target = rules[:, :steps]
    allowed = allowed_rules(model, grammar, target).to(device)
    target = target.to(device)
    out, exact = z0.detach().clone(), torch.zeros(len(z0), dtype=torch.bool)
    took = torch.zeros(len(z0), dtype=torch.long)
    active = torch.arange(len(z0))  # rows of this batch still moving
    prior = getattr(getattr(model, "objective", None), "prior", None)
    radius = None if prior is None or o.prior_quantile is None else prior.ball_radius(o.prior_quantile)
    z = z0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=o.lr)
    done = 0
    while True:
        if done % o.check_every == 0 or done == o.steps:
            decoded = gen.decode_latents(model, grammar, z.detach(), batch_size=len(z), constraints=constraints)
            hit = exact_matches(grammar, [truth[i] for i in active.tolist()], decoded)
            out[active] = z.detach()
            took[active] = done
            exact[active[hit]] = True
            if hit.any():
                keep = ~hit
                active = active[keep]
                if len(active):
                    z, opt = _shrunk(opt, z, keep.to(device), o.lr)
                    target, allowed = target[keep.to(device)], allowed[keep.to(device)]
        if done == o.steps or not len(active):
            return out, exact, took
        opt.zero_grad(set_to_none=True)
        _sequence_nll(model, z, target, allowed).sum().backward()  # rows are independent: each its own gradient
        opt.step()
        if radius is not None:
            with torch.no_grad():
                z.copy_(pull_into_balls(z, prior.centers, radius))
        done += 1


def refine_latents(model: nn.Module, grammar: Grammar, rules: Tensor, options: RefineOptions | None = None, *,
                   z: Tensor | None = None, constraints: str = "auto", progress: bool = False) -> Refined:
    """Refine the latents of the derivations ``rules [N x T]`` (padded with ``grammar.pad``) until
    each decodes to its own string or ``options.steps`` run out (see the module docstring).

    Args:
        z: starting latents ``[N x d]`` (default: the model's encoder).
        constraints: decoding constraints of the argmax checks (as :func:`gen.decode_latents`).

    The model's parameters are left untouched (no gradient reaches them) and it stays in eval mode.
    """
    o = options or RefineOptions()
    if not len(rules):
        raise ValueError("refine_latents: no sequences to refine")
    lengths = (rules != grammar.pad).sum(dim=1)
    parser = get_parser(grammar)
    truth = [parser.expand(r[: int(n)].tolist()) for r, n in zip(rules, lengths)]
    device = gen.model_device(model)
    z0 = gen.encode_rules(model, rules) if z is None else z.detach().float().cpu()
    before = _nll(model, grammar, z0, rules, lengths, device)
    order = torch.argsort(lengths, stable=True)  # like lengths together: less padding per batch
    z_out, exact, took = z0.clone(), torch.zeros(len(z0), dtype=torch.bool), torch.zeros(len(z0), dtype=torch.long)
    grads = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for i in tqdm(range(0, len(order), o.batch_size), desc="refine", disable=not progress, leave=False):
            idx = order[i:i + o.batch_size]
            zb, hit, n = _refine_batch(model, grammar, rules[idx], lengths[idx], [truth[j] for j in idx.tolist()],
                                       z0[idx].to(device), o, constraints)
            z_out[idx], exact[idx], took[idx] = zb.float().cpu(), hit, n
    finally:
        for p, g in zip(model.parameters(), grads):
            p.requires_grad_(g)
    after = _nll(model, grammar, z_out, rules, lengths, device)
    return Refined(z_out, exact, took, before, after, z0.norm(dim=1), z_out.norm(dim=1))


@torch.no_grad()
def _nll(model: nn.Module, grammar: Grammar, z: Tensor, rules: Tensor, lengths: Tensor, device: torch.device,
         batch_size: int = 500) -> Tensor:
    parts = []
    for i in range(0, len(rules), batch_size):
        steps = int(lengths[i:i + batch_size].max())
        target = rules[i:i + batch_size, :steps]
        allowed = allowed_rules(model, grammar, target).to(device)
        parts.append(_sequence_nll(model, z[i:i + batch_size].to(device), target.to(device), allowed).double().cpu())
    return torch.cat(parts)
