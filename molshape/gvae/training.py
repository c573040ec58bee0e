"""Grammar training: per-grammar defaults, the validation evaluator and :func:`train_grammar`,
the ``molshape train`` entry point built on the generic :func:`molshape.training.fit.fit`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from molshape.core.runtime import EPOCH_STRIDE, VALID_BATCH_SEED, resolve_device, seeded_globally
from molshape.data.batching import bucket_batches
from molshape.data.teacher_masks import TeacherMasks, teacher_mask_bits
from molshape.grammar.cfg import Grammar, load_grammar
from molshape.grammar.decoding import make_decoder
from molshape.gvae.checkpoint import ModelCheckpoint
from molshape.gvae.model import GrammarAutoencoder, n_parameters, rec_heuristic
from molshape.training.fit import TrainConfig, fit

#: Training defaults per ``[grammar][preset]`` (``molshape train`` uses them unless overridden).
#: paper: GVAE's (batch 500 / 100 epochs for ZINC, 600 / 50 for expressions). cpu: see docs/training.md.
TRAIN_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "smiles": {"paper": {"epochs": 100, "batch_size": 500},
               # ~125 molecules/s per core (bucketed, scripts/bench_train.py): 60k x 6 epochs ~ 50 min
               "cpu": {"epochs": 6, "batch_size": 100, "limit": 60000, "valid_limit": 2000}},
    # the rate halves every lr_half_life steps (docs/latent-space.md): within 1,000 steps on
    # a CPU, and over ~45 of GVAE's 100 epochs of batch 500 on a GPU
    "smiles_kekule": {"paper": {"epochs": 100, "batch_size": 500, "schedule": "exp", "lr": 2e-3,
                                "lr_half_life": 5000},
                      "cpu": {"epochs": 6, "batch_size": 100, "limit": 50000, "valid_limit": 1000,
                              "schedule": "exp", "lr": 2e-3, "lr_half_life": 1000}},
    "expr": {"paper": {"epochs": 50, "batch_size": 600},
             # ~900 expressions/s per core: 90k x 10 epochs (9,000 updates) ~ 20 min on an idle core.
             # No subset: the expression file is ordered, so its first N lines are not a sample.
             "cpu": {"epochs": 10, "batch_size": 100}},
}



def make_evaluator(grammar: Grammar, rules: Tensor, lengths: Tensor, batch_size: int,
                   prefix: str = "valid", masks: Tensor | None = None) -> Callable[[nn.Module], dict[str, float]]:
    """Validation: mean loss terms, exact reconstruction under argmax decoding, latent stats.

    The batches are fixed (seeded) random buckets, so the gmm KS/CV terms see mixed
    lengths as in training and the value is comparable across epochs. ``masks`` are the
    rows' semantic teacher masks (``N x T`` words of :mod:`molshape.data.teacher_masks`),
    computed at the first call when the model is semantic and none are given.
    """
    batches = bucket_batches(lengths, batch_size, torch.Generator().manual_seed(VALID_BATCH_SEED))

    def evaluate(model: nn.Module) -> dict[str, float]:
        nonlocal masks
        if masks is None and getattr(model.config, "constraints", "grammar") == "semantic":
            masks = teacher_mask_bits(grammar, rules)
        dev = next(model.parameters()).device
        sums: dict[str, float] = defaultdict(float)
        exact, zs = 0, []
        for idx in batches:
            r, n = rules[idx].long().to(dev), lengths[idx].to(dev)
            out = model(r, n) if masks is None else model(r, n, masks[idx].to(dev))
            for k, v in out.items():
                sums[k] += float(v) * len(idx)
            z = model.encode(r).float()
            zs.append(z)
            steps = int(n.max())
            out = make_decoder(grammar, "auto", max_length=steps).decode(model, z)
            exact += int(((out.rules == r[:, :steps]).all(dim=1) & out.complete).sum())
        total = max(len(lengths), 1)
        res = {f"{prefix}_{k}": v / total for k, v in sums.items()}
        res[f"{prefix}_recon_acc"] = exact / total
        if getattr(model.objective, "name", "") == "gmm":
            stats = model.objective.statistics(torch.cat(zs))
            res.update({f"{prefix}_{k}": v for k, v in stats.items()})
        return res

    return evaluate


def train_grammar(model_config: Any, train_config: TrainConfig, data: Any, out_dir: Path,
                  resume: bool = False, on_batch_end: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Train a grammar autoencoder on prepared data; evaluate the best weights on the test split.

    Args:
        model_config: :class:`molshape.gvae.model.ModelConfig`; ``lambda_rec=None`` is resolved
            with :func:`molshape.gvae.model.rec_heuristic` on the training set.
        train_config: optimisation settings.
        data: :class:`molshape.data.datasets.PreparedData` (``rules [N x T]``, ``lengths [N]``, ``split``).
        out_dir: output folder.
        resume: continue from ``out_dir/last.pt`` (its model config and split win).

    Weight initialisation and dropout draw from torch's global generator, seeded with
    ``train_config.seed`` for the run; the caller's generator states are given back after it.

    Returns:
        :func:`fit`'s summary plus ``test_recon_acc``, ``test_loss``, ``lambda_rec``, sizes.
    """
    with seeded_globally(train_config.seed):
        return _train_grammar(model_config, train_config, data, out_dir, resume, on_batch_end)


# Over 60 lines (64): the split, model and batch set-up that fit needs, then the test evaluation.
def _train_grammar(model_config: Any, train_config: TrainConfig, data: Any, out_dir: Path,
                   resume: bool, on_batch_end: Callable[[int, int], None] | None) -> dict[str, Any]:
    out_dir = Path(out_dir)
    cfg = train_config
    grammar = load_grammar(model_config.grammar)
    if data.grammar_hash != grammar.hash:
        raise ValueError(f"data was parsed with a different grammar than {grammar.name!r} (hash mismatch)")
    split = {k: v.clone() for k, v in data.split.items()}
    if resume and (out_dir / "last.pt").is_file():
        ckpt = ModelCheckpoint.load(out_dir / "last.pt")  # its grammar file is checked unchanged there
        model_config, split = ckpt.config, ckpt.split
        if ckpt.grammar.name != grammar.name or ckpt.data.get("sha256") != data.source_sha256:
            raise ValueError(f"--resume: {out_dir / 'last.pt'} was trained on other data or another grammar")
    else:
        valid_limit = cfg.valid_limit or (max(cfg.limit // 9, 200) if cfg.limit else None)
        split["train"] = split["train"][:cfg.limit]
        split["valid"], split["test"] = split["valid"][:valid_limit], split["test"][:valid_limit]
    train_idx = split["train"]
    if len(train_idx) == 0 or len(split["valid"]) == 0:
        raise ValueError(f"empty training or validation split ({len(train_idx)} / {len(split['valid'])} items)")
    rules, lengths = data.rules, data.lengths
    if model_config.lambda_rec is None:
        model_config = model_config.replace(lambda_rec=rec_heuristic(grammar, rules[train_idx[:20000]]))
    model_config = model_config.replace(objective=model_config.objective.fitted_to_batch(cfg.batch_size),
                                        n_rules=grammar.n_productions, max_length=grammar.max_length)
    model = GrammarAutoencoder(model_config, grammar)
    train_lengths = lengths[train_idx]
    full = torch.full_like(train_lengths, grammar.max_length)
    masks = None
    if model_config.constraints == "semantic":  # each row's masks once, carried in its batches
        masks = TeacherMasks.build(grammar, rules, torch.cat([train_idx, split["valid"], split["test"]]))

    def batches(epoch: int) -> Iterable[tuple[Tensor, ...]]:
        gen = torch.Generator().manual_seed(cfg.seed * EPOCH_STRIDE + epoch)
        chunk = cfg.chunk_batches if cfg.bucket else 1
        for idx in bucket_batches(train_lengths, cfg.batch_size, gen, chunk, indices=train_idx):
            n = lengths[idx] if cfg.bucket else full[: len(idx)]
            yield (rules[idx].long(), n) if masks is None else (rules[idx].long(), n, masks[idx])

    def evaluator(rows: Tensor, prefix: str) -> Callable[[nn.Module], dict[str, float]]:
        return make_evaluator(grammar, rules[rows], lengths[rows], cfg.batch_size, prefix,
                              None if masks is None else masks[rows])

    extra = {"kind": "grammar", "model_config": model_config.to_dict(), "grammar": grammar.name,
             "grammar_hash": grammar.hash, "data": {"source": data.source, "sha256": data.source_sha256},
             "split": split}
    validate = evaluator(split["valid"], "valid")
    summary = fit(model, batches, validate, cfg, out_dir, extra, resume=resume, on_batch_end=on_batch_end)
    summary.update(lambda_rec=model_config.lambda_rec, n_parameters=n_parameters(model),
                   n_train=len(train_idx), n_valid=len(split["valid"]), n_test=len(split["test"]))
    if summary["rank"] == 0 and len(split["test"]) and (out_dir / "best.pt").is_file():
        model.to(resolve_device(cfg.device))  # fit gave the model back on the CPU
        model.load_state_dict(ModelCheckpoint.load(out_dir / "best.pt").weights)
        model.eval()
        test = evaluator(split["test"], "test")
        with torch.no_grad():
            summary.update({k: v for k, v in test(model).items() if k in ("test_loss", "test_rec", "test_recon_acc")})
    return summary
