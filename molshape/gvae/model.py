"""The grammar autoencoder: GVAE's convolutional encoder and recurrent decoder.

One network for every objective (``gmm``, ``vae``, ``rae``, ``ae``; see
:mod:`molshape.latent.objectives`). The encoder reads a one-hot ``[B x R x T]`` production
sequence with three 1-D convolutions, a dense layer and the objective's head; the decoder
maps ``z`` through ``dense(latent) + ReLU``, repeats it over the steps, runs a stacked GRU
and a linear layer to production logits (GVAE, Kusner et al. 2017). With
``decoder_feed_rules`` the GRU also reads the previous true production (teacher forcing),
an option beyond GVAE.

Loss (GVAE conditional loss): the logits at each step are masked with the productions
allowed for the true step's left-hand symbol, then a cross-entropy over the masked
softmax, summed over steps and averaged over the batch (nats per sequence), times
``lambda_rec``. Steps past a sequence's end hold the padding production, the only one its
mask allows, so they contribute exactly 0; the decoder therefore runs only to the longest
sequence of the batch (length bucketing) without changing the loss.

The model is built with its grammar's tables (the grammar its config names, unless one is
given), so it is ready for :meth:`GrammarAutoencoder.forward` and decoding at once.

Example:
    >>> import torch
    >>> from molshape.grammar.parser import get_parser
    >>> model = GrammarAutoencoder(PRESETS["expr"]["cpu"])
    >>> grammar = model.grammar
    >>> seqs = [get_parser(grammar).parse(s) for s in ("x*sin(x)", "1+x")]
    >>> rules = torch.full((2, grammar.max_length), grammar.pad)
    >>> for row, seq in zip(rules, seqs):
    ...     row[:len(seq)] = torch.tensor(seq)
    >>> out = model(rules, torch.tensor([len(s) for s in seqs]))
    >>> sorted(out)
    ['acc_rule', 'cv', 'ks', 'loss', 'rec']
    >>> model.encode(rules).shape
    torch.Size([2, 25])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from molshape.core.config import config_from_dict
from molshape.data.teacher_masks import unpack_masks
from molshape.grammar.cfg import Grammar, load_grammar
from molshape.grammar.semantics import semantics_for
from molshape.latent.objectives import (AEConfig, GMMConfig, ObjectiveConfig, RAEConfig, VAEConfig,
                                        objective_from_saved)

#: Finite "minus infinity" for masked logits: exp() underflows to exactly 0 in fp16/fp32
#: while avoiding the NaNs of -inf - (-inf) in rows with a single allowed production.
MASK_VALUE = -1e4

#: The grammar models' settings of each objective, used when ``--model`` picks one: GVAE's
#: ``epsilon_std = 0.01`` and KL averaged over dimensions, RAE's ``beta = 1e-2``, and the
#: GMM-DAE weights estimated for GVAE's ZINC batch of 500 (training sets the batch size it uses).
GRAMMAR_OBJECTIVES: dict[str, ObjectiveConfig] = {
    "gmm": GMMConfig(batch_size=500),
    "vae": VAEConfig(epsilon_std=0.01, kl_weight=1.0),
    "rae": RAEConfig(beta=1e-2, decoder_weight_decay=1e-6),
    "ae": AEConfig(),
}


@dataclass
class ModelConfig:
    """Everything needed to rebuild a :class:`GrammarAutoencoder` (stored in checkpoints)."""

    grammar: str = "smiles"
    n_rules: int = 76
    max_length: int = 277
    # the latent objective and its settings (molshape.latent.objectives)
    objective: ObjectiveConfig = GRAMMAR_OBJECTIVES["gmm"]
    latent_dim: int = 56
    # encoder: GVAE one-hot Conv1d stack ("valid" padding) then dense + ReLU
    conv_filters: tuple[int, ...] = (9, 9, 10)
    conv_kernels: tuple[int, ...] = (9, 9, 11)
    enc_dense: int = 435
    # "conv": GVAE's one-hot Conv1d stack; "gru": a bidirectional GRU over rule embeddings,
    # which sees every rule in order (the conv stack's valid padding blurs long sequences)
    encoder: str = "conv"
    enc_hidden: int = 128  # per direction, "gru" encoder only
    # decoder: dense(latent_dim) + ReLU repeated over steps, GRU stack, linear to rules
    dec_hidden: int = 501
    dec_layers: int = 3
    decoder_feed_rules: bool = False  # teacher forcing: the GRU also reads the previous rule
    rule_embedding: int = 16  # size of the previous-rule embedding when feeding rules
    # training only: the previous rule is hidden (read as "none") with this probability, so
    # the decoder cannot predict from its own history alone and must read z
    rule_dropout: float = 0.0
    # the GRU's initial hidden state is a function of z as well (not only its input)
    dec_init: bool = False
    # compressed derivations: the GRU runs only at choice points, the steps whose masks allow
    # more than one production; a forced step needs no prediction and is applied without it
    # (the GRU still reads it as the previous rule). Needs decoder_feed_rules.
    compressed: bool = False
    # weight of the reconstruction term; None -> resolved by train_grammar (rec_heuristic)
    lambda_rec: float | None = None
    # "semantic": the softmax is normalised over the semantically allowed productions in
    # training too (SD-VAE); needs a grammar with semantic constraints (smiles_kekule)
    constraints: str = "grammar"

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
        return {**d, "objective": self.objective.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """The config of a :meth:`to_dict` dict, or of the older flat layout (see
        :func:`molshape.latent.objectives.objective_from_saved`).

        Raises:
            ConfigError: an unknown key (see :func:`molshape.core.config.config_from_dict`).
        """
        objective, rest = objective_from_saved(d, GRAMMAR_OBJECTIVES)
        rest = {k: tuple(v) if isinstance(v, list) else v for k, v in rest.items()}
        return config_from_dict(cls, {**rest, "objective": objective})

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with ``changes`` applied; ``None`` values are ignored (unset CLI overrides).

        ``objective`` may be a name: another objective gets :data:`GRAMMAR_OBJECTIVES`' settings,
        the same one keeps this config's.
        """
        changes = {k: v for k, v in changes.items() if v is not None}
        if isinstance(changes.get("objective"), str):
            changes["objective"] = grammar_objective(changes["objective"], self.objective)
        return dataclasses.replace(self, **changes)


def grammar_objective(name: str, current: ObjectiveConfig | None = None) -> ObjectiveConfig:
    """The objective config a grammar model uses for ``name``: ``current`` when it is that
    objective, else :data:`GRAMMAR_OBJECTIVES`' settings."""
    if current is not None and current.name == name:
        return current
    if name not in GRAMMAR_OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {sorted(GRAMMAR_OBJECTIVES)}")
    return GRAMMAR_OBJECTIVES[name]


def _presets() -> dict[str, dict[str, ModelConfig]]:
    smiles_paper = ModelConfig()
    # cpu: sized so a useful ZINC model trains in ~1 h on 2 cores (see docs/training.md).
    # The decoder GRU dominates the cost (quadratic in its width, linear in the steps);
    # 2 x 256 costs ~6x less per step than 3 x 501, and bucketing halves the steps.
    smiles_cpu = dataclasses.replace(smiles_paper, dec_hidden=256, dec_layers=2, enc_dense=256)
    expr_paper = ModelConfig(grammar="expr", n_rules=12, max_length=15, latent_dim=25,
                             conv_filters=(2, 3, 4), conv_kernels=(2, 3, 4), enc_dense=100,
                             dec_hidden=100, dec_layers=3, objective=GMMConfig(batch_size=600))
    # The expression model is already small; cpu keeps the paper sizes and feeds the
    # previous rule to the GRU, which reconstructs better within a CPU budget.
    expr_cpu = dataclasses.replace(expr_paper, decoder_feed_rules=True)
    # Kekule SMILES under semantic constraints: GVAE's sizes for the paper preset; the cpu
    # model feeds back the previous rule, as the shipped grammar-only model does.
    # Kekule SMILES under semantic constraints, the design that holds molecules best per
    # training step (docs/latent-space.md, "Training ablation"): a bidirectional GRU encoder,
    # the previous rule fed back with dropout, z also as the GRU's initial state. The two
    # presets differ in sizes only.
    kek = dict(grammar="smiles_kekule", n_rules=40, constraints="semantic", decoder_feed_rules=True,
               encoder="gru", dec_init=True, rule_dropout=0.25)
    kek_paper = dataclasses.replace(smiles_paper, enc_hidden=256, **kek)
    kek_cpu = dataclasses.replace(smiles_cpu, **kek)
    return {"smiles": {"paper": smiles_paper, "cpu": smiles_cpu},
            "smiles_kekule": {"paper": kek_paper, "cpu": kek_cpu},
            "expr": {"paper": expr_paper, "cpu": expr_cpu}}


#: ``PRESETS[grammar][preset]`` -> :class:`ModelConfig`.
PRESETS: dict[str, dict[str, ModelConfig]] = _presets()
#: preset names (every grammar has each)
PRESET_NAMES = tuple(sorted({name for presets in PRESETS.values() for name in presets}))


#: Reconstruction term at initialisation, in units of one regulariser term at its target
#: (KS and CV are each ~1 when the latents follow the prior). The public GMM-DAE image code
#: weights a pixel MSE by 1 / 5e-4; an untrained sigmoid decoder has an MSE of ~0.05-0.2,
#: so there the reconstruction term starts ~100-400x a regulariser term. We keep that ratio.
REC_INIT_SCALE = 100.0


def rec_heuristic(grammar: Grammar, rules: Tensor, scale: float = REC_INIT_SCALE) -> float:
    """lambda_REC = ``scale`` / (reconstruction loss of an untrained decoder), from data.

    An untrained decoder is uniform over the productions its mask allows, so its loss per
    sequence is ``H0 = mean_n sum_t log |allowed(n, t)|`` nats (computable from the grammar
    and the data alone). ``lambda_REC = scale / H0`` makes the reconstruction term start at
    ``scale`` regulariser units whatever the grammar and sequence lengths, the same balance
    as the public image code (see ``REC_INIT_SCALE``); ``scripts/sweep_lambda_rec.py``
    checks that it is near the best on the expression grammar.

    Args:
        grammar: the grammar.
        rules: ``N x T`` padded production sequences (training set or a sample of it).
        scale: reconstruction term at initialisation, in regulariser units.
    """
    n_allowed = grammar.masks.sum(dim=1).clamp(min=1).double()  # (n_symbols,)
    lhs = grammar.lhs_tensor()[rules]  # (N, T)
    h0 = n_allowed[lhs].log().sum(dim=1).mean().item()
    return scale / max(h0, 1e-6)


class Encoder(nn.Module):
    """One-hot ``B x R x T`` -> features ``B x enc_dense`` (GVAE conv stack)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, length = cfg.n_rules, cfg.max_length
        for filters, kernel in zip(cfg.conv_filters, cfg.conv_kernels, strict=True):
            layers += [nn.Conv1d(channels, filters, kernel), nn.ReLU()]
            channels, length = filters, length - kernel + 1
        if length < 1:
            raise ValueError(f"ModelConfig: kernels {cfg.conv_kernels} too long for max_length {cfg.max_length}")
        self.conv = nn.Sequential(*layers)
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(channels * length, cfg.enc_dense), nn.ReLU())

    def forward(self, onehot: Tensor) -> Tensor:
        return self.dense(self.conv(onehot))


class RuleGRUEncoder(nn.Module):
    """Padded rules ``B x T`` -> features ``B x enc_dense``: a bidirectional GRU over rule
    embeddings, each direction reading exactly a sequence's rules (the padding production ends
    a sequence).

    The two directions run as two plain passes over padded sequences, the backward one over
    each sequence reversed within its length, and read their state at the last rule: the
    same numbers as a packed sequence, but the CPU backward pass of a packed GRU fills a
    zero gradient of the whole packed input at every step (quadratic in the length), which
    made it 2.6x slower.
    """

    def __init__(self, cfg: ModelConfig, pad: int) -> None:
        super().__init__()
        self.pad = pad
        self.embed = nn.Embedding(cfg.n_rules, cfg.rule_embedding * 2)
        self.gru = nn.GRU(cfg.rule_embedding * 2, cfg.enc_hidden, batch_first=True, bidirectional=True)
        self.dense = nn.Sequential(nn.Linear(2 * cfg.enc_hidden, cfg.enc_dense), nn.ReLU())

    def forward(self, rules: Tensor) -> Tensor:
        lengths = (rules != self.pad).sum(dim=1).clamp(min=1)
        steps = int(lengths.max())
        x = self.embed(rules[:, :steps])  # (B, steps, E)
        last = (lengths - 1).unsqueeze(1)  # (B, 1)
        # position t of the reversed sequence holds rule last - t; past the end, rule 0 (never read)
        backward = x.gather(1, (last - torch.arange(steps, device=x.device)).clamp(min=0).unsqueeze(2)
                            .expand(-1, -1, x.shape[2]))
        at_last = last.unsqueeze(2).expand(-1, 1, self.gru.hidden_size)
        h = [self._direction(seq, suffix).gather(1, at_last).squeeze(1)
             for seq, suffix in ((x, ""), (backward, "_reverse"))]
        return self.dense(torch.cat(h, dim=-1))

    def _direction(self, x: Tensor, suffix: str) -> Tensor:
        """Outputs ``B x T x H`` of one direction of ``self.gru`` over ``x``, from a zero state."""
        g = self.gru
        weights = [getattr(g, f"{name}_l0{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        h0 = x.new_zeros(1, x.shape[0], g.hidden_size)
        out, _ = torch.gru(x, h0, weights, True, 1, 0.0, self.training, False, True)
        return out


ENCODERS = ("conv", "gru")


class GrammarAutoencoder(nn.Module):
    """GVAE-shaped autoencoder over production sequences with a pluggable latent objective.

    Args:
        config: sizes, objective and its settings. ``lambda_rec=None`` means 1.
        grammar: the grammar whose tables (left-hand symbols, allowed productions, semantic
            constraints) the loss and decoders use; default: the one ``config.grammar`` names.
        estimate: ``False`` skips estimating what the objective derives from its prior (the
            ``gmm`` KS/CV weights): for a model whose saved weights are loaded next.
    """

    def __init__(self, config: ModelConfig, grammar: Grammar | None = None, *, estimate: bool = True) -> None:
        super().__init__()
        self.config = c = config
        grammar = grammar if grammar is not None else load_grammar(c.grammar)
        if grammar.n_productions != c.n_rules:
            raise ValueError(f"grammar {grammar.name} has {grammar.n_productions} productions, "
                             f"model expects {c.n_rules}")
        if c.encoder not in ENCODERS:
            raise ValueError(f"ModelConfig: encoder {c.encoder!r} is not one of {ENCODERS}")
        if c.compressed and not c.decoder_feed_rules:
            raise ValueError("ModelConfig: compressed derivations need decoder_feed_rules (the GRU must "
                             "read the forced steps it skips)")
        self.grammar = grammar
        self.encoder = Encoder(c) if c.encoder == "conv" else RuleGRUEncoder(c, pad=grammar.pad)
        self.objective = c.objective.build(c.latent_dim, c.enc_dense, estimate=estimate)
        self.dec_input = nn.Sequential(nn.Linear(c.latent_dim, c.latent_dim), nn.ReLU())
        gru_in = c.latent_dim
        if c.decoder_feed_rules:
            # index n_rules = "no previous rule" at step 0
            self.rule_embed = nn.Embedding(c.n_rules + 1, c.rule_embedding)
            gru_in += c.rule_embedding
        self.gru = nn.GRU(gru_in, c.dec_hidden, num_layers=c.dec_layers, batch_first=True)
        if c.dec_init:
            self.init_hidden = nn.Linear(c.latent_dim, c.dec_layers * c.dec_hidden)
        self.out = nn.Linear(c.dec_hidden, c.n_rules)
        self.register_buffer("lambda_rec", torch.tensor(1.0 if c.lambda_rec is None else float(c.lambda_rec)))
        # rule -> left-hand symbol, and symbol -> allowed rules: the GVAE loss mask
        self.register_buffer("_lhs", grammar.lhs_tensor().clone(), persistent=False)
        self.register_buffer("_masks", grammar.masks.clone(), persistent=False)
        self._semantics = None
        if c.constraints == "semantic":
            self._semantics = semantics_for(grammar)
            if self._semantics is None:
                raise ValueError(f"grammar {grammar.name} has no semantic constraints; use constraints='grammar'")

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer groups: decoder parameters get the objective's extra weight decay (rae)."""
        extra = self.objective.decoder_weight_decay
        if not extra:
            return [{"params": [p for p in self.parameters() if p.requires_grad], "weight_decay": weight_decay}]
        decoder_ids = {id(p) for m in self.decoder_modules() for p in m.parameters()}
        dec = [p for p in self.parameters() if id(p) in decoder_ids]
        rest = [p for p in self.parameters() if id(p) not in decoder_ids]
        return [{"params": rest, "weight_decay": weight_decay},
                {"params": dec, "weight_decay": weight_decay + extra}]

    def decoder_modules(self) -> list[nn.Module]:
        mods = [self.dec_input, self.gru, self.out]
        if self.config.decoder_feed_rules:
            mods.append(self.rule_embed)
        if self.config.dec_init:
            mods.append(self.init_hidden)
        return mods

    # -- encoder ----------------------------------------------------------------------
    def _features(self, rules: Tensor) -> Tensor:
        if isinstance(self.encoder, RuleGRUEncoder):
            return self.encoder(rules)
        onehot = F.one_hot(rules, self.config.n_rules).transpose(1, 2)  # (B, R, T)
        return self.encoder(onehot.to(self.out.weight.dtype))

    def encode(self, rules: Tensor) -> Tensor:
        """``B x T`` padded rules -> deterministic latents ``B x d`` (the mean for ``vae``)."""
        return self.objective.encode(self._features(rules))

    # -- decoder ----------------------------------------------------------------------
    def _gru_inputs(self, z: Tensor, steps: int, prev_rules: Tensor | None) -> Tensor:
        x = self.dec_input(z).unsqueeze(1).expand(-1, steps, -1)  # (B, steps, d)
        if self.config.decoder_feed_rules:
            if prev_rules is None:
                raise ValueError("decoder_feed_rules: pass the previous rules (teacher forcing)")
            x = torch.cat([x, self.rule_embed(prev_rules)], dim=-1)
        return x

    def _shifted(self, rules: Tensor) -> Tensor:
        """``B x T`` -> the previous rule at each step (``n_rules`` = none at step 0; in training
        also where rule dropout hides it)."""
        none = self.config.n_rules
        prev = torch.cat([torch.full_like(rules[:, :1], none), rules[:, :-1]], dim=1)
        if self.training and self.config.rule_dropout > 0:
            prev = prev.masked_fill(torch.rand(prev.shape, device=prev.device) < self.config.rule_dropout, none)
        return prev

    def _initial_hidden(self, x: Tensor) -> Tensor | None:
        """GRU state before the first step, ``layers x B x hidden`` (None: zeros, as GVAE)."""
        if not self.config.dec_init:
            return None
        c = self.config
        return torch.tanh(self.init_hidden(x)).view(-1, c.dec_layers, c.dec_hidden).transpose(0, 1).contiguous()

    @property
    def decoder_feed_rules(self) -> bool:
        """Whether each decoding step reads the previous rule (see ``SequenceDecoder``)."""
        return self.config.decoder_feed_rules

    def decode_logits(self, z: Tensor, steps: int | None = None) -> Tensor:
        """Teacher-free logits ``B x steps x R`` (GVAE decoders only; unmasked)."""
        if self.config.decoder_feed_rules:
            raise ValueError("decode_logits: this decoder feeds back rules; use decoder_step with a stack decoder")
        steps = steps or self.config.max_length
        h, _ = self.gru(self._gru_inputs(z, steps, None), self._initial_hidden(self.dec_input(z)))
        return self.out(h)

    def decoder_init(self, z: Tensor) -> tuple[Tensor, Tensor | None]:
        """Decoder state for latents ``z [B x d]``: ``(dense(z) [B x d], GRU hidden or None)``."""
        return self.dec_input(z), None

    @property
    def decoder_skips_forced(self) -> bool:
        """Whether decoders call :meth:`decoder_step` at choice points only (``compressed``)."""
        return self.config.compressed

    def decoder_step(self, state: tuple[Tensor, Tensor | None], prev_rule: Tensor) -> tuple[Tensor, tuple]:
        """One decoding step.

        Args:
            state: from :meth:`decoder_init` or the previous step.
            prev_rule: ``B`` long, the rule applied at the previous step (any value at step 0;
                a compressed model's first step may follow forced steps, and reads the last of
                them); ignored unless ``decoder_feed_rules``.

        Returns:
            ``(logits [B x R], new state)``.
        """
        x, hidden = state
        inp = x
        if self.config.decoder_feed_rules:
            if hidden is None:
                none = torch.full_like(prev_rule, self.config.n_rules)
                # the pad rule never precedes a choice point: there it stands for "no rule yet"
                prev_rule = prev_rule.where(self.config.compressed & (prev_rule != self.grammar.pad), none)
            inp = torch.cat([x, self.rule_embed(prev_rule)], dim=-1)
        if hidden is None:  # the first step
            hidden = self._initial_hidden(x)
        out, hidden = self.gru(inp.unsqueeze(1), hidden)
        return self.out(out[:, 0]), (x, hidden)

    def teacher_logits(self, z: Tensor, rules: Tensor, allowed: Tensor | None = None) -> Tensor:
        """Training-time logits ``B x T' x R`` for the first ``T'`` steps of ``rules [B x T']``.

        A compressed model runs its GRU at the choice points of ``allowed`` (``B x T' x R``,
        :meth:`allowed_rules`; computed when not given) and leaves zeros at forced steps,
        where the masked softmax has a single rule.
        """
        steps = rules.shape[1]
        prev = self._shifted(rules) if self.config.decoder_feed_rules else None
        if not self.config.compressed:
            x = self._gru_inputs(z, steps, prev)
            h, _ = self.gru(x, self._initial_hidden(x[:, 0, :self.config.latent_dim]))
            return self.out(h)
        allowed = self.allowed_rules(rules) if allowed is None else allowed
        where, live = choice_positions(allowed.sum(dim=-1) > 1)  # [B, C]
        x = self._gru_inputs(z, where.shape[1], prev.gather(1, where))
        h, _ = self.gru(x, self._initial_hidden(x[:, 0, :self.config.latent_dim]))
        logits = self.out(h)  # [B, C, R]
        # the padding slots of the compressed sequences land on an extra step that is dropped
        index = where.masked_fill(~live, steps).unsqueeze(2).expand(-1, -1, logits.shape[2])
        full = logits.new_zeros(rules.shape[0], steps + 1, logits.shape[2])
        return full.scatter(1, index, logits)[:, :steps]

    # -- loss ---------------------------------------------------------------------------
    def allowed_rules(self, rules: Tensor, semantic_masks: Tensor | None = None) -> Tensor:
        """``B x T x R`` bool: the productions each true step of ``rules`` may choose: its symbol's,
        and under semantic constraints ``semantic_masks`` (``B x T`` bit-packed words of
        :mod:`molshape.data.teacher_masks`; computed here, slowly, when not given)."""
        allowed = self._masks[self._lhs[rules]]  # (B, T, R)
        if self._semantics is not None:  # normalise over what semantic decoding can choose
            allowed = allowed & (self._semantics.teacher_masks(rules) if semantic_masks is None
                                 else unpack_masks(semantic_masks, self.config.n_rules))
        return allowed

    def masked_logits(self, logits: Tensor, rules: Tensor, semantic_masks: Tensor | None = None,
                      allowed: Tensor | None = None) -> Tensor:
        """Mask ``B x T x R`` logits with :meth:`allowed_rules` (or ``allowed``), in fp32."""
        allowed = self.allowed_rules(rules, semantic_masks) if allowed is None else allowed
        return logits.float().masked_fill(~allowed, MASK_VALUE)

    def forward(self, rules: Tensor, lengths: Tensor, semantic_masks: Tensor | None = None) -> dict[str, Tensor]:
        """Loss and its named terms for a batch.

        Args:
            rules: ``B x T`` padded production sequences (T = max_length).
            lengths: ``B`` unpadded lengths; the decoder runs ``max(lengths)`` steps.
            semantic_masks: ``B x T`` int64 teacher masks of ``rules``
                (:class:`molshape.data.teacher_masks.TeacherMasks`) for a model trained under
                semantic constraints; ignored otherwise.

        Returns:
            ``loss`` (scalar), ``rec`` (masked cross-entropy, nats per sequence,
            unweighted), ``acc_rule`` (teacher-forced per-step accuracy) and the
            objective's weighted latent terms.
        """
        steps = int(lengths.max().item()) if lengths.numel() else 1
        z, terms = self.objective(self._features(rules))
        target = rules[:, :steps]
        masks = None if semantic_masks is None else semantic_masks[:, :steps]
        allowed = self.allowed_rules(target, masks)
        logits = self.masked_logits(self.teacher_logits(z, target, allowed), target, allowed=allowed)  # fp32
        ce = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")  # (B, steps)
        rec = ce.sum(dim=1).mean()
        loss = self.lambda_rec * rec + sum(t.float() for t in terms.values())
        with torch.no_grad():
            valid = torch.arange(steps, device=rules.device) < lengths.unsqueeze(1)
            acc = ((logits.argmax(-1) == target) & valid).sum() / valid.sum().clamp(min=1)
        return {"loss": loss, "rec": rec.detach(), "acc_rule": acc, **{k: v.detach() for k, v in terms.items()}}


def choice_positions(choice: Tensor) -> tuple[Tensor, Tensor]:
    """The choice points of ``choice [B x T]`` (bool) packed to the left: ``(where [B x C], live
    [B x C])``, ``where`` the steps in order, ``live`` False on padding slots (which hold
    forced steps), C the most choice points of any row (at least 1).

    >>> choice_positions(torch.tensor([[False, True, False, True], [True, False, False, False]]))
    (tensor([[1, 3],
            [0, 1]]), tensor([[ True,  True],
            [ True, False]]))
    """
    counts = choice.sum(dim=1)
    width = max(int(counts.max()) if counts.numel() else 0, 1)
    where = torch.argsort((~choice).to(torch.int8), dim=1, stable=True)[:, :width]
    return where, torch.arange(width, device=choice.device) < counts.unsqueeze(1)


def build_model(config: ModelConfig, grammar: Grammar | None = None) -> GrammarAutoencoder:
    """``GrammarAutoencoder(config, grammar)``: a new model (``grammar`` defaults to ``config.grammar``)."""
    return GrammarAutoencoder(config, grammar)


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


