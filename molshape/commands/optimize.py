"""``molshape optimize``: Bayesian optimisation of penalized logP or the expression score in latent space."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from molshape.commands.common import (checkpoint_option, device_option, emit_summary, json_option, load_run_model,
                                      threads_option, write_run_config)

SMOKE = dict(seeds=1, iterations=1, batch=4, n_init=64, inducing=16, num_restarts=2, raw_samples=32)


@click.command("optimize", epilog="Outputs in --out: proposals.csv (seed, iteration, index, valid, string, "
               "score, reason), summary.json, best_vs_evaluations.png, top_molecules.png (molecules), "
               "state/seed_N.pt (resume), config.json. Re-running the same command resumes a killed run.")
@checkpoint_option
@click.option("--target", type=click.Choice(["logp", "expr"]), default=None,
              help="logp: penalized logP (smiles models); expr: expression score [default: from the model's grammar].")
@click.option("--strategy", type=click.Choice(["ei", "turbo"]), default="ei", show_default=True,
              help="ei: greedy batch qLogEI in the box of the training latents (GVAE); turbo: inside a trust region.")
@click.option("--iterations", default=5, show_default=True, type=click.IntRange(min=1), help="BO iterations per seed.")
@click.option("--batch", default=50, show_default=True, type=click.IntRange(min=1), help="Proposals per iteration.")
@click.option("--seeds", default=10, show_default=True, type=click.IntRange(min=1), help="Independent repetitions.")
@click.option("--seed", default=0, show_default=True, type=int, help="First seed (seeds run SEED, SEED+1, ...).")
@click.option("--init", type=click.Choice(["auto", "data", "prior"]), default="auto", show_default=True,
              help="Initial design: the encoded training set with its scores, decoded prior samples, or data "
                   "when found else prior.")
@click.option("--n-init", type=click.IntRange(min=4), default=None,
              help="Initial points: a random subset of the training set [default: all] or prior samples [500].")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The checkpoint's data file [default: the standard data set].")
@click.option("--attempts", default=1, show_default=True, type=click.IntRange(min=1),
              help="Decode each proposal by majority vote over this many sampled decodes (GVAE: 500); "
                   "the argmax decode is reported alongside.")
@click.option("--surrogate", type=click.Choice(["auto", "exact", "svgp"]), default="svgp", show_default=True,
              help="svgp: sparse variational GP on all points (GVAE); exact: exact GP on the best half + a "
                   "random half of --exact-max points; auto: exact when all points fit.")
@click.option("--inducing", default=500, show_default=True, type=click.IntRange(min=1), help="SVGP inducing points.")
@click.option("--exact-max", default=2000, show_default=True, type=click.IntRange(min=2),
              help="Points an exact GP is fitted on.")
@click.option("--num-restarts", default=10, show_default=True, type=click.IntRange(min=1),
              help="optimize_acqf restarts per proposal.")
@click.option("--raw-samples", default=512, show_default=True, type=click.IntRange(min=1),
              help="optimize_acqf initial candidates per proposal.")
@click.option("--mc-samples", default=128, show_default=True, type=click.IntRange(min=1),
              help="Quasi-MC samples of qLogEI.")
@click.option("--maxiter", default=100, show_default=True, type=click.IntRange(min=1),
              help="L-BFGS-B iterations per restart (fewer: faster, coarser proposals on CPU).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Run the seeds in this many processes (each with --threads torch threads, default 1); "
                   "same results as one process.")
@click.option("--smoke", is_flag=True, help="Tiny run in seconds: " + ", ".join(f"{k}={v}" for k, v in SMOKE.items())
              + " (explicit options win).")
@threads_option
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder [default: runs/optimize-<target>-<strategy>-<time>]; pass an existing one to resume.")
@device_option
@json_option
@click.pass_context
def command(ctx: click.Context, checkpoint: Path | None, grammar: str, target: str | None, strategy: str,
            iterations: int, batch: int, seeds: int, seed: int, init: str, n_init: int | None, data: Path | None,
            attempts: int, surrogate: str, inducing: int, exact_max: int, num_restarts: int, raw_samples: int,
            mc_samples: int, maxiter: int, workers: int, smoke: bool, threads: int | None, out: Path | None, device: str, as_json: bool) -> None:
    """Bayesian optimisation in the latent space of a trained grammar autoencoder (BoTorch)."""
    from molshape.optimize import OptimizeConfig, optimize
    from molshape.surrogate import SurrogateConfig

    params = dict(seeds=seeds, iterations=iterations, batch=batch, n_init=n_init, inducing=inducing,
                  num_restarts=num_restarts, raw_samples=raw_samples)
    if smoke:  # smoke values replace defaults, never options given on the command line
        for k, v in SMOKE.items():
            if ctx.get_parameter_source(k) != click.core.ParameterSource.COMMANDLINE:
                params[k] = v
    checkpoint, dev, model, g, ckpt = load_run_model(checkpoint, grammar, device, threads)
    target = target or {"smiles": "logp", "expr": "expr"}.get(g.name)
    if target is None:
        raise click.UsageError(f"model grammar {g.name!r} has no default target; pass --target")
    if out is None:  # a fresh folder: resuming is always an explicit choice
        out = Path("runs") / f"optimize-{target}-{strategy}-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg = OptimizeConfig(
        iterations=params["iterations"], batch=params["batch"], seeds=params["seeds"], seed=seed, strategy=strategy,
        num_restarts=params["num_restarts"], raw_samples=params["raw_samples"], mc_samples=mc_samples, maxiter=maxiter,
        surrogate=SurrogateConfig(kind=surrogate, inducing=params["inducing"], exact_max=exact_max))
    write_run_config(out, {"checkpoint": checkpoint, "target": target, "init": init, "n_init": params["n_init"],
                           "data": data, "attempts": attempts, "device": str(dev), "smoke": smoke, "workers": workers,
                           "optimize": cfg.to_dict()})
    try:
        summary = optimize(model, g, target, cfg, out, checkpoint=ckpt, checkpoint_path=checkpoint, init=init,
                           n_init=params["n_init"], data=data, attempts=attempts, device=dev, progress=True,
                           workers=workers, worker_threads=threads or 1)
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from e
    emit_summary({**summary, "out": str(out)}, as_json, _human)


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
    if "top_molecules_png" in s:
        lines.append(f"  grid of the top molecules: {s['top_molecules_png']}")
    lines.append(f"  outputs in {s['out']}")
    return "\n".join(lines)
