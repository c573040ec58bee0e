"""``molshape train``: train a grammar autoencoder (gmm, vae, rae, ae) on SMILES or expressions."""

from __future__ import annotations

import dataclasses
import operator
import os
from pathlib import Path
from typing import Any

import click

from molshape.core.atomic import remove_stale_temps
from molshape.core.checkpoint import CheckpointError
from molshape.core.errors import MolshapeError
from molshape.grammar.cfg import GRAMMARS
from molshape.gvae.model import PRESET_NAMES
from molshape.latent.objectives import OBJECTIVES
from molshape.cli.common import (FiniteFloat, device_option, emit_summary, json_option, resolve_preset, seed_option,
                                      set_threads, threads_option, write_run_config)
from molshape.core.rundir import RunLock, RunLocked, leftovers, runs_dir


@click.command(name="train", epilog="Run folders are never overwritten: a fresh run refuses a folder that holds "
               "files (use --resume to continue it or --force to start over), a second run into a folder in use "
               "refuses (lock file OUT/.lock), and config.json is written only once the checks pass. "
               "Checkpoints, metrics.csv and curves.png are replaced atomically after every epoch.")
@click.option("--grammar", "grammar_name", type=click.Choice(GRAMMARS), default="smiles_kekule",
              show_default=True, help="smiles (GVAE's grammar), smiles_kekule (Kekulé SMILES with semantic "
                                      "constraints: every complete decode is a valid molecule) or expr.")
@click.option("--model", "objective", type=click.Choice(OBJECTIVES), default="gmm", show_default=True,
              help="Latent objective: gmm (GMM-DAE), vae (GVAE), rae (RAE), ae (none).")
@click.option("--preset", type=click.Choice(["auto", *PRESET_NAMES]), default="auto", show_default=True,
              help="Model sizes: paper = GVAE's, cpu = small enough for ~1 h of CPU training; "
                   "auto = paper on CUDA, cpu otherwise.")
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Data file (default: the standard set).")
@click.option("--limit", type=int, default=None, help="Train on the first N training items.")
@click.option("--valid-limit", type=int, default=None, help="Validate/test on the first N items.")
@click.option("--epochs", type=int, default=None, help="Default: the preset's.")
@click.option("--batch-size", type=int, default=None, help="Default: the preset's.")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=None, help="Adam learning rate (default 1e-3).")
@click.option("--latent-dim", type=int, default=None)
@click.option("--hidden", type=int, default=None, help="Decoder GRU width.")
@click.option("--layers", type=int, default=None, help="Decoder GRU layers.")
@click.option("--components", type=int, default=None, help="gmm: mixture components K (default 10).")
@click.option("--std", type=FiniteFloat(min=0, min_open=True), default=None, help="gmm: component std s (default 1).")
@click.option("--layout", type=click.Choice(["spread", "basis", "onehot", "standard"]), default=None,
              help="gmm: centre layout (default spread; onehot: means at 10 e_k, the authors' later code).")
@click.option("--lambda-rec", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Reconstruction weight, > 0 (default: the heuristic).")
@click.option("--feed-rules/--no-feed-rules", default=None, help="Decoder reads the previous rule (not GVAE).")
@click.option("--encoder", type=click.Choice(["conv", "gru"]), default=None,
              help="conv: GVAE's convolutions over one-hot rules; gru: a bidirectional GRU over the rules.")
@click.option("--enc-hidden", type=click.IntRange(min=1), default=None, help="gru encoder: width per direction.")
@click.option("--rule-dropout", type=FiniteFloat(0, 1, max_open=True), default=None,
              help="Training: hide the decoder's previous rule with this probability (forces use of z).")
@click.option("--dec-init/--no-dec-init", default=None, help="The decoder GRU's initial state is a function of z.")
@click.option("--compressed/--no-compressed", default=None,
              help="Compressed derivations: the decoder GRU runs only at choice points (steps whose masks allow "
                   "more than one rule); needs --feed-rules.")
@click.option("--schedule", type=click.Choice(["plateau", "exp"]), default=None,
              help="Learning-rate schedule: plateau (x0.2 on a validation plateau, GVAE) or exp (halves every "
                   "--lr-half-life steps). Default: the preset's.")
@click.option("--lr-half-life", type=click.IntRange(min=1), default=None, help="exp schedule: steps per halving.")
@click.option("--min-lr", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Floor of the learning rate (default 1e-4).")
@click.option("--no-bucket", is_flag=True, help="Pad every batch to the full length (slower; for comparison).")
@click.option("--max-minutes", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Wall-clock budget: stop at the first step past it, validate and checkpoint (the last "
                   "epoch may be partial; --resume starts the next one).")
@click.option("--grad-clip", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Clip the gradient norm to this value (default: no clipping, as GVAE).")
@click.option("--amp/--no-amp", default=True, show_default=True, help="Mixed precision on CUDA.")
@click.option("--cpu-bf16", is_flag=True,
              help="bfloat16 autocast on CPU: about 1.5x faster per core where the CPU has AVX512-BF16 or AMX; "
                   "on other CPUs it would be about 16x slower, so it trains in float32 and warns.")
@threads_option
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Default: runs/<grammar>-<model>-<preset>.")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt (same --model, grammar and data).")
@click.option("--force", is_flag=True, help="Start afresh in a folder holding an earlier run, deleting its "
              "checkpoints, metrics and config (without it, such a folder is refused).")
# Over 60 lines: option validation and run-folder checks for many options; the work is
# molshape.gvae.training.train_grammar.
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@device_option
@seed_option
@json_option
def command(grammar_name: str, objective: str, preset: str, data: Path | None, limit: int | None,
            valid_limit: int | None, epochs: int | None, batch_size: int | None, lr: float | None,
            latent_dim: int | None, hidden: int | None, layers: int | None, components: int | None,
            std: float | None, layout: str | None, lambda_rec: float | None, feed_rules: bool | None,
            encoder: str | None, enc_hidden: int | None, rule_dropout: float | None, dec_init: bool | None,
            compressed: bool | None,
            schedule: str | None, lr_half_life: int | None, min_lr: float | None, no_bucket: bool, max_minutes: float | None, grad_clip: float | None, amp: bool, cpu_bf16: bool, threads: int | None,
            out: Path | None, resume: bool, force: bool, no_progress: bool, device: str, seed: int,
            as_json: bool) -> None:
    """Train a grammar autoencoder; writes last.pt, best.pt, metrics.csv, curves.png, config.json.

    Runs data-parallel under ``torchrun --nproc_per_node N -m molshape train ...``.
    """
    import torch

    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.gvae.model import PRESETS
    from molshape.gvae.training import TRAIN_DEFAULTS
    from molshape.training.fit import TrainConfig

    for name, value in (("--limit", limit), ("--epochs", epochs), ("--batch-size", batch_size),
                        ("--valid-limit", valid_limit)):
        if value is not None and value < 1:
            raise click.BadParameter(f"must be >= 1, got {value}", param_hint=name)
    if resume and force:
        raise click.UsageError("--resume continues a run and --force starts over; pass one of them")
    set_threads(threads)
    preset = resolve_preset(preset, device)
    defaults = TRAIN_DEFAULTS[grammar_name][preset]
    model_cfg = PRESETS[grammar_name][preset].replace(
        objective=objective, latent_dim=latent_dim, dec_hidden=hidden, dec_layers=layers, lambda_rec=lambda_rec,
        decoder_feed_rules=feed_rules, encoder=encoder, enc_hidden=enc_hidden, rule_dropout=rule_dropout,
        dec_init=dec_init, compressed=compressed)
    # --components, --std and --layout set the gmm prior; the other objectives have no prior to set
    prior = {k: v for k, v in (("n_components", components), ("std", std), ("layout", layout))
             if k in model_cfg.objective.settings()}
    model_cfg = model_cfg.replace(objective=model_cfg.objective.replace(**prior))
    train_cfg = TrainConfig(
        epochs=epochs or defaults["epochs"], batch_size=batch_size or defaults["batch_size"],
        lr=lr or defaults.get("lr", TrainConfig.lr), schedule=schedule or defaults.get("schedule", TrainConfig.schedule),
        lr_half_life=lr_half_life or defaults.get("lr_half_life", TrainConfig.lr_half_life),
        min_lr=min_lr or TrainConfig.min_lr, seed=seed, device=device, amp=amp, cpu_bf16=cpu_bf16, limit=limit or defaults.get("limit"),
        valid_limit=valid_limit or defaults.get("valid_limit"), bucket=not no_bucket, progress=not no_progress,
        max_minutes=max_minutes, grad_clip=grad_clip)
    out = out or runs_dir() / f"{grammar_name}-{objective}-{preset}"
    if out.exists() and not out.is_dir():
        raise click.BadParameter(f"{out} is a file, not a folder", param_hint="--out")
    rank0 = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 owns the folder
    lock = RunLock(out)
    created = not out.exists()
    if rank0:
        try:
            lock.acquire()
        except RunLocked as e:
            raise click.UsageError(str(e)) from None
    ok = wrote = False
    try:
        previous = _check_folder(out, grammar_name, resume, force) if rank0 else None
        if previous is not None:
            train_cfg = _same_subset(previous, train_cfg, out)
        prepared = _load_data(grammar_name, data, train_cfg.limit, not no_progress)
        if previous is not None:
            _check_same_data(previous, prepared, out)
            model_cfg = previous.config  # the checkpoint's model wins
        params: dict[str, Any] = {"grammar": grammar_name, "preset": preset, "data": prepared.source,
                                  "model_config": model_cfg.to_dict(), "train_config": train_cfg.to_dict(),
                                  "resume": resume, "threads": torch.get_num_threads()}
        if rank0:
            if force:
                _clear_run(out)
            remove_stale_temps(out)  # temp files of a killed run; we hold the lock, so none is in use
            write_run_config(out, params)
            wrote = True
        summary = _train(model_cfg, train_cfg, prepared, out, resume)
        ok = True
    finally:
        if wrote and not ok and not resume and not (out / "last.pt").exists():
            # nothing trained (a failed start, or divergence in the first epoch): drop the config we
            # wrote, so the corrected command runs in the same folder without --force
            (out / "config.json").unlink(missing_ok=True)
        lock.release()
        if rank0 and created and not ok and not leftovers(out):
            _remove_empty(out)  # a refused or failed first run leaves no empty folder behind
    if summary.get("rank", 0) != 0:
        return
    summary["out"] = str(out)
    emit_summary(summary, as_json, _human)


#: what a training run writes (``--force`` deletes these, and only these)
RUN_FILES = ("last.pt", "best.pt", "metrics.csv", "curves.png", "config.json")
#: options that define the model, with the ModelConfig attribute each sets: on --resume, a value
#: typed that differs from the checkpoint's is refused
MODEL_OPTIONS = {"objective": ("--model", "objective.name"), "latent_dim": ("--latent-dim", "latent_dim"),
                 "hidden": ("--hidden", "dec_hidden"), "layers": ("--layers", "dec_layers"),
                 "components": ("--components", "objective.n_components"), "std": ("--std", "objective.std"),
                 "layout": ("--layout", "objective.layout"), "lambda_rec": ("--lambda-rec", "lambda_rec"),
                 "feed_rules": ("--feed-rules", "decoder_feed_rules"), "encoder": ("--encoder", "encoder"),
                 "enc_hidden": ("--enc-hidden", "enc_hidden"), "dec_init": ("--dec-init", "dec_init"),
                 "compressed": ("--compressed", "compressed")}


def _check_folder(out: Path, grammar_name: str, resume: bool, force: bool) -> Any:
    """Refuse a folder that a fresh run would overwrite; for --resume, the checkpoint to continue.

    Returns:
        the ``last.pt`` :class:`~molshape.gvae.checkpoint.ModelCheckpoint` with --resume, else None.
    """
    found = leftovers(out)
    if not resume:
        if found and not force:
            raise click.UsageError(f"{out} already holds a run ({', '.join(found[:5])}"
                                   f"{', ...' if len(found) > 5 else ''}); pass --resume to continue it, "
                                   "--force to replace it, or choose another --out")
        return None
    last = out / "last.pt"
    if not last.is_file():
        raise click.UsageError(f"--resume: no checkpoint at {last}; start without --resume")
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.gvae.checkpoint import ModelCheckpoint

    ckpt = ModelCheckpoint.load(last)
    if ckpt.grammar.name != grammar_name:
        raise click.UsageError(f"--resume: {last} was trained on grammar {ckpt.grammar.name!r}, not "
                               f"{grammar_name!r}; pass --grammar {ckpt.grammar.name}")
    if not ckpt.is_training_run:
        raise CheckpointError(last, "is not a training checkpoint (no optimizer state, split or data record); "
                                    "start a new run")
    _check_same_model(ckpt.config, last)
    return ckpt


def _check_same_model(saved: Any, last: Path) -> None:
    """Refuse model options typed on the command line that differ from the checkpoint's ``ModelConfig``."""
    ctx = click.get_current_context()
    for param, (flag, attribute) in MODEL_OPTIONS.items():
        if ctx.get_parameter_source(param) != click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param]
        try:
            had = operator.attrgetter(attribute)(saved)
        except AttributeError:  # a setting of another objective (--components for a vae run)
            continue
        if had != value:
            raise click.UsageError(f"--resume: {last} has {flag.lstrip('-')} {had!r}, not {value!r}; "
                                   f"drop {flag} to continue it, or start a new run in another --out")


def _same_subset(ckpt: Any, train_cfg: Any, out: Path) -> Any:
    """--resume reads the subset the run was trained on: its split holds row numbers of that
    subset, so another --limit would silently mean other molecules."""
    saved = ckpt.train_config
    ctx = click.get_current_context()
    for option in ("limit", "valid_limit"):
        typed = ctx.get_parameter_source(option) == click.core.ParameterSource.COMMANDLINE
        if typed and ctx.params[option] != getattr(saved, option, None):
            raise click.UsageError(f"--resume: {out / 'last.pt'} was trained with --{option.replace('_', '-')} "
                                   f"{getattr(saved, option, None)}, not {ctx.params[option]}; drop the option to "
                                   "continue it")
    return dataclasses.replace(train_cfg, limit=getattr(saved, "limit", None),
                               valid_limit=getattr(saved, "valid_limit", None))


def _check_same_data(ckpt: Any, prepared: Any, out: Path) -> None:
    if ckpt.data.get("sha256") != prepared.source_sha256:
        raise click.UsageError(f"--resume: {out / 'last.pt'} was trained on other data ({ckpt.data.get('source')}),"
                               f" not {prepared.source}; pass the same --data")


def _load_data(grammar_name: str, data: Path | None, limit: int | None, progress: bool) -> Any:
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.data.datasets import load_dataset

    if data is not None and data.is_dir():
        raise click.BadParameter(f"{data} is a directory, not a data file", param_hint="--data")
    if data is not None and data.exists() and not data.is_file():
        raise click.BadParameter(f"{data} is not a regular file (a pipe or device); training reads its data more "
                                 "than once, so save it to a file first", param_hint="--data")
    if data is not None and data.is_file() and data.suffix != ".gz" and not data.read_bytes().strip():
        raise click.ClickException(f"{data}: the data file is empty; it needs one string a line")
    try:
        return load_dataset(grammar_name, data=data, limit=limit, progress=progress)
    except FileNotFoundError as e:
        raise click.ClickException(str(e)) from e
    except UnicodeDecodeError as e:
        raise click.ClickException(f"{data or 'the data file'}: not UTF-8 text ({e.reason} at byte {e.start} "
                                   "of a block); convert it to UTF-8") from None
    except ValueError as e:  # e.g. too few records for the split
        named = isinstance(e, MolshapeError)  # its message names the file already
        raise click.ClickException(str(e) if named else f"{data or 'the standard data set'}: {e}") from None


def _train(model_cfg: Any, train_cfg: Any, prepared: Any, out: Path, resume: bool) -> dict[str, Any]:
    import torch

    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.gvae.training import train_grammar

    if len(prepared.lengths) == 0:
        raise click.ClickException(f"{prepared.source}: no trainable strings in the data file")
    try:
        return train_grammar(model_cfg, train_cfg, prepared, out, resume=resume)
    except (FileNotFoundError, ValueError) as e:  # data mismatch, empty split
        raise click.ClickException(str(e)) from e
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _remove_empty(out: Path) -> None:
    for p in out.iterdir():  # only the lock and temp files are left (see leftovers)
        p.unlink(missing_ok=True)
    out.rmdir()


def _clear_run(out: Path) -> None:
    """--force: delete the earlier run's files (others, such as evaluation folders, stay)."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)


def _human(s: dict[str, Any]) -> str:
    last = s.get("last", {})
    stop = " (stopped by --max-minutes)" if s.get("stopped_by_time_limit") else ""
    lines = [f"trained {s['epochs']} epochs{stop} in {s['wall_s']:.0f} s ({s['items_per_s'] or 0:.0f} items/s) -> {s['out']}",
             f"best valid loss {s['best_valid_loss']:.4g}; last valid: whole-molecule reconstruction (free-running "
             f"argmax) {last.get('valid_recon_acc', float('nan')):.3f}, per-rule accuracy (teacher-forced) "
             f"{last.get('valid_acc_rule', float('nan')):.3f}"]
    if "test_recon_acc" in s:
        lines.append(f"test whole-molecule reconstruction (free-running argmax, best.pt): {s['test_recon_acc']:.3f}")
    return "\n".join(lines)
