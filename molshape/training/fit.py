"""Training: one generic loop (:func:`fit`) for grammar and image autoencoders.

:func:`fit` knows nothing of grammars: it takes a model returning ``{"loss", terms...}``,
a function ``epoch -> batches`` and a validation function, and handles devices, mixed
precision (CUDA), DistributedDataParallel (``torchrun``), Adam + ReduceLROnPlateau
(factor 0.2, patience 3, min 1e-4, as GVAE), keep-best, atomic checkpoints every epoch,
``metrics.csv``, ``curves.png`` and exact resume.

Time budget: with ``max_minutes`` the run stops at the first optimizer step past the
budget, validates, and checkpoints that partial epoch (marked ``partial`` in the
metrics); ``--resume`` then starts the next epoch.

Resume: a checkpoint is written at the end of every epoch with the RNG state at that
point. The batches of epoch ``e`` are a pure function of ``(seed, e)``, so a run killed
mid-epoch restarts that epoch from the previous checkpoint and ends with exactly the
weights of an uninterrupted run (on CPU; CUDA kernels may be nondeterministic).

:func:`molshape.gvae.training.train_grammar` is the grammar entry point (``molshape train``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from molshape.data.batching import shard
from molshape.core.atomic import save_figure, write_csv
from molshape.core.checkpoint import FORMAT_KEY, FORMAT_VERSION, load_checkpoint, save_checkpoint
from molshape.core.config import config_from_dict
from molshape.core.errors import TrainingDiverged
from molshape.core.runtime import cpu_bf16_supported, resolve_device

log = logging.getLogger(__name__)

@dataclass
class TrainConfig:
    """Optimisation settings (stored in checkpoints)."""

    epochs: int = 100
    batch_size: int = 500
    lr: float = 1e-3  # Adam (Keras default, as GVAE)
    weight_decay: float = 0.0
    plateau_factor: float = 0.2
    plateau_patience: int = 3
    min_lr: float = 1e-4
    # "plateau": ReduceLROnPlateau on the validation loss each epoch (GVAE); "exp": the rate
    # halves every ``lr_half_life`` optimizer steps down to ``min_lr``, whatever the
    # validation noise (a schedule that does decay within a short CPU budget)
    schedule: str = "plateau"
    lr_half_life: int = 2000
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # mixed precision (float16) on CUDA
    # bfloat16 autocast on CPU: ~1.4x molecules/s per core on CPUs with AVX512-BF16 at the same
    # loss to 3 decimals (scripts/bench_train_levers.py); without bf16 hardware it is ~16x slower,
    # so training falls back to float32 there (core.runtime.cpu_bf16_supported)
    cpu_bf16: bool = False
    limit: int | None = None  # train on the first N training items (smoke runs)
    valid_limit: int | None = None  # validate/test on the first N items (None: all, or limit // 9 with --limit)
    grad_clip: float | None = None
    bucket: bool = True  # length-bucketed batches
    chunk_batches: int = 50  # bucketing sort window, in batches
    progress: bool = True
    max_minutes: float | None = None  # stop at the first step past this wall-clock budget

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Raises ConfigError on an unknown key (:func:`molshape.core.config.config_from_dict`)."""
        return config_from_dict(cls, d)


# -- distributed ------------------------------------------------------------------------
def _distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE > 1``).

    Returns ``(rank, world_size, device)``; on CUDA each process takes ``LOCAL_RANK``'s GPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return dist.get_rank(), world, device


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _call(model: nn.Module, batch: Any) -> dict[str, Tensor]:
    """``model(*batch)`` for tuples, ``model(**batch)`` for dicts, else ``model(batch)``."""
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


def _batch_len(batch: Any) -> int:
    first = next(iter(batch.values())) if isinstance(batch, dict) else batch[0] if isinstance(batch, (tuple, list)) else batch
    return int(first.shape[0])


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# -- the loop ---------------------------------------------------------------------------
def fit(model: nn.Module, train_batches: Callable[[int], Iterable[Any]],
        validate: Callable[[nn.Module], dict[str, float]], cfg: TrainConfig, out_dir: Path,
        checkpoint_extra: dict[str, Any], resume: bool = False,
        on_batch_end: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Train ``model`` and write checkpoints, metrics and curves to ``out_dir``.

    Args:
        model: ``model(*batch)`` (tuple batch), ``model(**batch)`` (dict) or ``model(batch)``
            returns ``{"loss": scalar, <term>: scalar, ...}``. An optional
            ``model.parameter_groups(weight_decay)`` supplies optimizer groups.
        train_batches: ``epoch -> batches``; must be a pure function of the epoch for exact
            resume. Under DDP each process takes every ``world_size``-th batch.
        validate: called with the (unwrapped) model in eval mode under ``no_grad``;
            returns floats including ``valid_loss`` (keep-best and the LR schedule use it).
        cfg: optimisation settings.
        out_dir: output folder (``last.pt``, ``best.pt``, ``metrics.csv``, ``curves.png``).
        checkpoint_extra: plain values stored in every checkpoint (model_config, kind, ...).
        resume: continue from ``out_dir/last.pt``.
        on_batch_end: ``(epoch, batch_index)`` hook after each optimizer step (tests).

    ``model`` is trained in place on ``cfg.device`` and put back on the device it came on
    (also when training fails): the caller keeps its model, trained, where it had it.

    Returns:
        summary: ``best_valid_loss``, ``epochs``, ``wall_s``, ``items_per_s``, ``last`` (the
        final epoch's metrics) and the checkpoint paths.
    """
    home = next(model.parameters(), torch.empty(0)).device
    try:
        return _fit(model, train_batches, validate, cfg, Path(out_dir), checkpoint_extra, resume, on_batch_end)
    finally:
        model.to(home)  # trained in place, and back where the caller had it


def _fit(model: nn.Module, train_batches: Callable[[int], Iterable[Any]],
         validate: Callable[[nn.Module], dict[str, float]], cfg: TrainConfig, out_dir: Path,
         checkpoint_extra: dict[str, Any], resume: bool,
         on_batch_end: Callable[[int, int], None] | None) -> dict[str, Any]:
    run = _Run.start(model, cfg)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    start_epoch, best, history = run.restore(last_path) if resume else (0, math.inf, [])
    run.wrap()
    t_run, rates = time.perf_counter(), []
    deadline = t_run + 60.0 * cfg.max_minutes if cfg.max_minutes else None
    out_of_time = False
    for epoch in range(start_epoch, cfg.epochs):
        if deadline is not None and epoch > start_epoch and _past(deadline, run.world, run.device):
            out_of_time = True  # validation ran past the budget: no one-step epoch at the end
            break
        sums, n_items, train_s, partial, out_of_time = run.train_epoch(
            shard(list(train_batches(epoch)), run.rank, run.world), epoch, cfg, deadline, on_batch_end)
        rates.append(n_items * run.world / max(train_s, 1e-9))
        run.raw.eval()
        with torch.no_grad(), run.autocast():
            valid = validate(run.raw)
        if not math.isfinite(valid["valid_loss"]):
            raise diverged(valid["valid_loss"], epoch, run.step, cfg, "validation loss")
        if not run.per_step:
            run.scheduler.step(valid["valid_loss"])
        record = {"epoch": epoch + 1, "lr": run.optimizer.param_groups[0]["lr"],
                  **{f"train_{k}": v / max(n_items, 1) for k, v in sums.items()}, **valid,
                  "train_s": train_s, "items_per_s": rates[-1], "partial": float(partial)}
        history.append(record)
        improved = valid["valid_loss"] < best
        best = min(best, valid["valid_loss"])
        if run.rank == 0:
            run.save(out_dir, {**checkpoint_extra, "train_config": cfg.to_dict(), "epoch": epoch + 1,
                               "best_valid_loss": best, "history": history}, improved)
            log.info("epoch %d: %s", epoch + 1, {k: round(v, 4) for k, v in record.items() if isinstance(v, float)})
        if out_of_time:
            log.info("stopping after %.1f min (--max-minutes %g)", (time.perf_counter() - t_run) / 60, cfg.max_minutes)
            break
    return {"stopped_by_time_limit": out_of_time, "best_valid_loss": best, "epochs": len(history),
            "wall_s": time.perf_counter() - t_run,
            "items_per_s": sum(rates) / len(rates) if rates else None, "last": history[-1] if history else {},
            "checkpoint": str(last_path), "best_checkpoint": str(best_path), "rank": run.rank,
            "world_size": run.world}


@dataclass
class _Run:
    """What one training run holds between epochs: the model (wrapped for DDP), optimizer,
    schedule, gradient scaler, device and the global step."""

    model: nn.Module
    raw: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    device: torch.device
    rank: int
    world: int
    use_amp: bool
    step: int = 0
    cpu_bf16: bool = False

    per_step: bool = False  # the schedule steps after every optimizer step, not every epoch

    @classmethod
    def start(cls, model: nn.Module, cfg: TrainConfig) -> "_Run":
        rank, world, device = _distributed(resolve_device(cfg.device))
        use_amp = cfg.amp and device.type == "cuda"
        model.to(device)
        groups = model.parameter_groups(cfg.weight_decay) if hasattr(model, "parameter_groups") else \
            [{"params": list(model.parameters()), "weight_decay": cfg.weight_decay}]
        optimizer = torch.optim.Adam(groups, lr=cfg.lr)
        scheduler = _scheduler(optimizer, cfg)
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        cpu_bf16 = cfg.cpu_bf16 and device.type == "cpu"
        if cpu_bf16 and not cpu_bf16_supported():
            log.warning("cpu_bf16: this CPU has no native bfloat16 arithmetic (AVX512-BF16 or AMX), where "
                        "bf16 autocast runs about 16x slower than float32; training in float32 instead")
            cpu_bf16 = False
        return cls(model, model, optimizer, scheduler, scaler, device, rank, world, use_amp,
                   per_step=cfg.schedule == "exp", cpu_bf16=cpu_bf16)

    def autocast(self) -> torch.autocast:
        """float16 on CUDA with ``amp``, bfloat16 on CPU with ``cpu_bf16``, else off."""
        if self.cpu_bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp)

    def restore(self, last_path: Path) -> tuple[int, float, list[dict[str, Any]]]:
        """Load ``last.pt`` (weights, optimizer, schedule, scaler, RNG); ``(epoch, best, history)``."""
        if not last_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {last_path}; start without --resume")
        ckpt = load_checkpoint(last_path, map_location=self.device)
        self.raw.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt.get("scaler", {}))
        self.step = ckpt["step"]
        _set_rng_state(ckpt["rng"], self.device)
        log.info("resumed from %s after epoch %d", last_path, ckpt["epoch"])
        return ckpt["epoch"], ckpt["best_valid_loss"], ckpt["history"]

    def wrap(self) -> None:
        """Wrap the model for DistributedDataParallel under ``torchrun`` (after any restore)."""
        if self.world > 1:
            self.model = nn.parallel.DistributedDataParallel(
                self.raw, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def train_epoch(self, batches: list[Any], epoch: int, cfg: TrainConfig, deadline: float | None,
                    on_batch_end: Callable[[int, int], None] | None):
        """One pass over ``batches``; ``(term sums, items, seconds, partial, out of time)``."""
        from tqdm import tqdm

        self.model.train()
        sums: dict[str, float] = defaultdict(float)
        n_items, t0, partial, out_of_time = 0, time.perf_counter(), False, False
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (cfg.progress and self.rank == 0),
                   leave=False, dynamic_ncols=True)
        for i, batch in enumerate(bar):
            b = self._step(_to_device(batch, self.device), cfg, sums)
            if not math.isfinite(sums["loss"]):  # stop at once: the weights are now garbage, never saved
                raise diverged(sums["loss"], epoch, self.step, cfg, "training loss")
            n_items += b
            bar.set_postfix(loss=f"{sums['loss'] / n_items:.4g}",
                            items_s=f"{n_items * self.world / (time.perf_counter() - t0):.0f}")
            if on_batch_end is not None:
                on_batch_end(epoch, i)
            if deadline is not None and _past(deadline, self.world, self.device):
                partial = i + 1 < len(batches)
                out_of_time = partial or epoch + 1 < cfg.epochs
                break
        return sums, n_items, time.perf_counter() - t0, partial, out_of_time

    def _step(self, batch: Any, cfg: TrainConfig, sums: dict[str, float]) -> int:
        """One optimizer step on ``batch``; adds its item-weighted terms to ``sums``; returns its size."""
        with self.autocast():
            out = _call(self.model, batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(out["loss"]).backward()
        if cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.raw.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.per_step:
            self.scheduler.step()
        b = _batch_len(batch)
        for k, v in out.items():
            sums[k] += float(v.detach()) * b
        self.step += 1
        return b

    def save(self, out_dir: Path, extra: dict[str, Any], improved: bool) -> None:
        """Checkpoint the epoch (``best.pt`` when improved, then ``last.pt``), metrics and curves."""
        ckpt = {FORMAT_KEY: FORMAT_VERSION, **extra, "model": self.raw.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "step": self.step, "rng": _rng_state(self.device)}
        # best.pt first: a kill between the two writes then leaves the previous last.pt, from
        # which --resume redoes this epoch, and never a run with last.pt but no best.pt
        if improved:
            save_checkpoint(ckpt, out_dir / "best.pt")
        save_checkpoint(ckpt, out_dir / "last.pt")
        write_metrics(extra["history"], out_dir / "metrics.csv")
        plot_curves(extra["history"], out_dir / "curves.png")


SCHEDULES = ("plateau", "exp")


def _scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> Any:
    """The learning-rate schedule named by ``cfg.schedule`` (see :class:`TrainConfig`)."""
    if cfg.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience, min_lr=cfg.min_lr)
    if cfg.schedule == "exp":
        floor = min(1.0, cfg.min_lr / cfg.lr)
        half_life = max(1, cfg.lr_half_life)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(floor, 0.5 ** (step / half_life)))
    raise ValueError(f"TrainConfig: schedule {cfg.schedule!r} is not one of {SCHEDULES}")


def diverged(loss: float, epoch: int, step: int, cfg: TrainConfig, what: str) -> TrainingDiverged:
    """The one-line error for a loss that became NaN or infinite (``epoch`` 0-based)."""
    kept = (f"the checkpoints of epoch {epoch} are kept" if epoch > 0
            else "no checkpoint was written (it diverged in the first epoch)")
    clip = f"a smaller --grad-clip than {cfg.grad_clip:g}" if cfg.grad_clip else "set --grad-clip (e.g. 1.0)"
    return TrainingDiverged(f"training diverged: the {what} is {loss} at epoch {epoch + 1}, step {step}; lower --lr "
                            f"(now {cfg.lr:g}) or {clip}, and check the loss weights; {kept}")


def _past(deadline: float, world: int, device: torch.device) -> bool:
    """Whether the time budget is spent; under DDP every rank stops at the same step."""
    past = time.perf_counter() > deadline
    if world > 1:
        import torch.distributed as dist

        flag = torch.tensor([float(past)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        past = bool(flag.item())
    return past


def write_metrics(history: list[dict[str, Any]], path: Path) -> None:
    """One CSV row per epoch; columns are the union of the records' keys."""
    write_csv(path, history)  # atomic: a kill never leaves a half-written metrics.csv


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Loss, reconstruction and latent-term curves (train vs valid) per epoch."""
    from matplotlib.figure import Figure  # slow to import: only for figures

    epochs = [r["epoch"] for r in history]
    terms = [k[len("train_"):] for k in history[-1] if k.startswith("train_") and k != "train_s"]
    fig = Figure(figsize=(3.2 * (len(terms) + 1), 3))
    axes = fig.subplots(1, len(terms) + 1, squeeze=False)
    for ax, term in zip(axes[0], terms):
        for split in ("train", "valid"):
            ys = [r.get(f"{split}_{term}", float("nan")) for r in history]
            ax.plot(epochs, ys, marker=".", label=split)
        ax.set_title(term)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    ax = axes[0][-1]
    for key in [k for k in history[-1] if k.endswith("recon_acc") or k.endswith("ks_stat")]:
        ax.plot(epochs, [r.get(key, float("nan")) for r in history], marker=".", label=key)
    ax.set_title("validation")
    ax.set_xlabel("epoch")
    ax.legend(fontsize=7)
    save_figure(fig, path, close=True, dpi=90)
