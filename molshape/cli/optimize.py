"""``molshape optimize``: Bayesian optimisation of penalized logP or the expression score in latent space."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from molshape.cli.common import (FiniteFloat, cap_workers, check_constraints, check_out_dir, checkpoint_option, constraints_option,
                                      device_option, emit_summary, json_option, load_run_model, threads_option,
                                      write_run_config)
from molshape.bo.config import INITS, KINDS, PROTOCOL_SURROGATE, STRATEGIES, OptimizeConfig, SurrogateConfig
from molshape.core.rundir import RunLock, RunLocked, leftovers, runs_dir
from molshape.scoring.targets import OPTIMIZE_TARGETS, TARGETS, default_target

_OPT, _SUR = OptimizeConfig(), SurrogateConfig()  # the library's defaults are the options' defaults
SMOKE = dict(seeds=1, iterations=1, batch=4, n_init=64, inducing=16, num_restarts=2, raw_samples=32)


@click.command("optimize", epilog="Outputs in --out: proposals.csv (seed, iteration, index, valid, string, "
               "score, reason), summary.json, best_vs_evaluations.png, top_molecules.png (molecules), "
               "state/seed_N.pt (resume), config.json. Re-running the same command resumes a killed run.")
@checkpoint_option
@click.option("--target", type=click.Choice(OPTIMIZE_TARGETS), default=None,
              help="; ".join(f"{t}: {TARGETS[t].help}" for t in OPTIMIZE_TARGETS)
              + " [default: from the model's grammar].")
@click.option("--strategy", type=click.Choice(STRATEGIES), default=_OPT.strategy, show_default=True,
              help="ei: greedy batch qLogEI in the box of the training latents (GVAE); turbo: inside a trust region.")
@click.option("--iterations", default=_OPT.iterations, show_default=True, type=click.IntRange(min=1), help="BO iterations per seed.")
@click.option("--batch", default=_OPT.batch, show_default=True, type=click.IntRange(min=1), help="Proposals per iteration.")
@click.option("--seeds", default=_OPT.seeds, show_default=True, type=click.IntRange(min=1), help="Independent repetitions.")
@click.option("--seed", default=_OPT.seed, show_default=True, type=int, help="First seed (seeds run SEED, SEED+1, ...).")
@click.option("--init", type=click.Choice(INITS), default=INITS[0], show_default=True,
              help="Initial design: the encoded training set with its scores, decoded prior samples, or data "
                   "when found else prior.")
@click.option("--n-init", type=click.IntRange(min=4), default=None,
              help="Initial points: a random subset of the training set [default: all] or prior samples [500].")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The checkpoint's data file [default: the standard data set].")
@click.option("--attempts", default=1, show_default=True, type=click.IntRange(min=1),
              help="Decode each proposal by majority vote over this many sampled decodes (GVAE: 500); "
                   "the argmax decode is reported alongside.")
@click.option("--surrogate", type=click.Choice(KINDS), default=PROTOCOL_SURROGATE, show_default=True,
              help="svgp: sparse variational GP on all points (GVAE); exact: exact GP on the best half + a "
                   "random half of --exact-max points; auto: exact when all points fit.")
@click.option("--inducing", default=_SUR.inducing, show_default=True, type=click.IntRange(min=1), help="SVGP inducing points.")
@click.option("--exact-max", default=_SUR.exact_max, show_default=True, type=click.IntRange(min=2),
              help="Points an exact GP is fitted on.")
@click.option("--floor-quantile", type=FiniteFloat(0, 1, min_open=True, max_open=True),
              default=_SUR.floor_quantile, help="Raise scores below this quantile of the fitted points to it before "
              "fitting the GP (e.g. 0.5: the lower half counts as 'not good', however bad); the incumbent EI "
              "improves on is unchanged [default: off].")
@click.option("--num-restarts", default=_OPT.num_restarts, show_default=True, type=click.IntRange(min=1),
              help="optimize_acqf restarts per proposal.")
@click.option("--raw-samples", default=_OPT.raw_samples, show_default=True, type=click.IntRange(min=1),
              help="optimize_acqf initial candidates per proposal.")
@click.option("--mc-samples", default=_OPT.mc_samples, show_default=True, type=click.IntRange(min=1),
              help="Quasi-MC samples of qLogEI.")
@click.option("--maxiter", default=_OPT.maxiter, show_default=True, type=click.IntRange(min=1),
              help="L-BFGS-B iterations per restart (fewer: faster, coarser proposals on CPU).")
@click.option("--workers", default=1, show_default=True, type=int, callback=cap_workers,
              help="Run the seeds in this many processes (each with --threads torch threads, default 1); "
                   "same results as one process.")
@click.option("--smoke", is_flag=True, help="Tiny run in seconds: " + ", ".join(f"{k}={v}" for k, v in SMOKE.items())
              + " (explicit options win).")
@constraints_option
@threads_option
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder [default: runs/optimize-<target>-<strategy>-<time>]; pass an existing one, with the "
                   "same options (--seeds and --iterations may grow), to resume. Another run's folder is refused "
                   "and left as it was.")
@device_option
@json_option
@click.pass_context
def command(ctx: click.Context, checkpoint: Path | None, grammar: str, target: str | None, strategy: str,
            iterations: int, batch: int, seeds: int, seed: int, init: str, n_init: int | None, data: Path | None,
            attempts: int, surrogate: str, inducing: int, exact_max: int, floor_quantile: float | None, num_restarts: int, raw_samples: int,
            mc_samples: int, maxiter: int, workers: int, smoke: bool, constraints: str, threads: int | None,
            out: Path | None, device: str, as_json: bool) -> None:
    """Bayesian optimisation in the latent space of a trained grammar autoencoder (BoTorch)."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape import api

    params = dict(seeds=seeds, iterations=iterations, batch=batch, n_init=n_init, inducing=inducing,
                  num_restarts=num_restarts, raw_samples=raw_samples)
    if smoke:  # smoke values replace defaults, never options given on the command line
        for k, v in SMOKE.items():
            if ctx.get_parameter_source(k) != click.core.ParameterSource.COMMANDLINE:
                params[k] = v
    checkpoint, dev, model, g, ckpt = load_run_model(checkpoint, grammar, device, threads)
    check_constraints(g, constraints)
    target = target or default_target(g)
    if target is None:
        raise click.UsageError(f"model grammar {g.name!r} has no default target; pass --target")
    if out is None:  # a fresh folder: resuming is always an explicit choice
        out = runs_dir() / f"optimize-{target}-{strategy}-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg = OptimizeConfig(
        iterations=params["iterations"], batch=params["batch"], seeds=params["seeds"], seed=seed, strategy=strategy,
        num_restarts=params["num_restarts"], raw_samples=params["raw_samples"], mc_samples=mc_samples, maxiter=maxiter,
        surrogate=SurrogateConfig(kind=surrogate, inducing=params["inducing"], exact_max=exact_max,
                                  floor_quantile=floor_quantile))
    config = {"checkpoint": checkpoint, "target": target, "init": init, "n_init": params["n_init"], "data": data,
              "attempts": attempts, "constraints": constraints, "device": str(dev), "smoke": smoke, "workers": workers,
              "optimize": cfg.to_dict()}
    check_out_dir(out)
    with _locked(out):
        resuming = _check_resume(out, config)
        if not resuming:  # a fresh run records its config first; a resumed one only once it succeeded
            write_run_config(out, config)
        try:
            summary = api.optimize(api.Model(model, g, ckpt, checkpoint), target, out, config=cfg, init=init,
                                   n_init=params["n_init"], data=data, attempts=attempts, device=dev, progress=True,
                                   workers=workers, worker_threads=threads or 1, constraints=constraints,
                                   manage_folder=False).summary
        except (ValueError, FileNotFoundError) as e:
            raise click.ClickException(str(e)) from e
        if resuming:
            write_run_config(out, config)
    emit_summary({**summary, "out": str(out)}, as_json, _human)


#: config entries a resumed run must share with the folder's run (seeds and iterations may grow)
_RESUME_FREE = ("seeds", "seed", "iterations")


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a config that must match to resume, as plain JSON values."""
    plain = json.loads(json.dumps(config, default=str))
    plain.pop("argv", None)
    plain.pop("command", None)
    for key in ("device", "workers", "smoke"):  # how it runs, not what it computes
        plain.pop(key, None)
    plain["optimize"] = {k: v for k, v in plain.get("optimize", {}).items() if k not in _RESUME_FREE}
    for key in ("checkpoint", "data"):  # the same file, however it was spelled
        if plain.get(key):
            plain[key] = os.path.realpath(plain[key])
    return plain


def _check_resume(out: Path, config: dict[str, Any]) -> bool:
    """Whether ``out`` holds a run to resume; refuse (exit 2) a folder of another run or of other files."""
    found = leftovers(out)
    if not found:
        return False
    previous_path = out / "config.json"
    if not previous_path.is_file():
        raise click.UsageError(f"{out} holds files but no optimize run (no config.json); choose another --out")
    try:
        previous = json.loads(previous_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise click.ClickException(f"{previous_path}: not a readable run config ({e})") from None
    old, new = _comparable(previous), _comparable(config)
    differ = [k for k in sorted(set(old) | set(new)) if k != "optimize" and old.get(k) != new.get(k)]
    differ += [f"optimize.{k}" for k in sorted(set(old["optimize"]) | set(new["optimize"]))
               if old["optimize"].get(k) != new["optimize"].get(k)]
    if differ:
        raise click.UsageError(f"{out} holds a run with other settings ({', '.join(differ[:6])}); pass the same "
                               "options to resume it, or choose another --out")
    return True


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    try:
        lock = RunLock(out).acquire()
    except RunLocked as e:
        raise click.UsageError(str(e)) from None
    try:
        yield
    finally:
        lock.release()


def _pm(d: dict) -> str:
    if not d["n"]:
        return "n/a"
    return f"{d['mean']:.3f} +- {d['se']:.3f}" if d["n"] > 1 else f"{d['mean']:.3f} (one seed)"


def _human(s: dict[str, Any]) -> str:
    lines = [f"latent BO ({s['strategy']}, target {s['target']}) from {s['initial_data']}: "
             f"{s['evaluations']} evaluations over {len(s['seeds'])} seeds",
             f"  valid fraction {_pm(s['fraction_valid'])}, mean valid score {_pm(s['mean_valid_score'])} "
             f"(+- standard error over seeds)",
             f"  GP test RMSE {_pm(s['gp_test_rmse'])}, test log-likelihood {_pm(s['gp_test_loglik'])}"]
    lines += [f"  top {i + 1}: {t['score']:.3f} {t['string']} (seed {t['seed']})" for i, t in enumerate(s["top"])]
    if "argmax_decoding" in s:
        a = s["argmax_decoding"]
        lines.append(f"  argmax decoding of the same proposals: valid {_pm(a['fraction_valid'])}, "
                     f"mean valid score {_pm(a['mean_valid_score'])}")
    for name, rows in (s.get("top_druglike") or {}).items():
        label = {"qed_0.5": "QED >= 0.5", "no_long_chain": "no chain of 8+ CH2"}.get(name, name)
        lines.append(f"  top under {label}: " + ", ".join(f"{t['score']:.2f} {t['string']}" for t in rows))
    if "initial_best" in s:
        lines.append(f"  best of the initial data: {_pm(s['initial_best'])}")
    if "top_molecules_png" in s:
        lines.append(f"  grid of the top molecules: {s['top_molecules_png']}")
    lines.append(f"  outputs in {s['out']}")
    return "\n".join(lines)
