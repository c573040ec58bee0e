"""``molshape optimize``: Bayesian optimisation in latent space: GVAE's protocol (``--protocol``
quick or gvae), or a constrained search from leads / with property constraints / over
several objectives (``--from``, ``--similarity``, ``--constraint``, ``--target a,b``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from molshape.cli.common import (EXIT_ROWS_FAILED, FiniteFloat, cap_workers, check_constraints, check_out_dir, checkpoint_option, constraints_option,
                                      device_option, emit_summary, json_option, load_run_model, threads_option)
from molshape.bo.config import INITS, KINDS, STRATEGIES, OptimizeConfig, SurrogateConfig
from molshape.core.errors import OutputRefused
from molshape.core.rundir import RunLocked, leftovers, runs_dir
from molshape.scoring.targets import TARGETS, default_target

_OPT, _SUR = OptimizeConfig(), SurrogateConfig()  # the library's defaults are the options' defaults
SMOKE = dict(seeds=1, iterations=1, batch=4, n_init=64, inducing=16, num_restarts=2, raw_samples=32)
#: protocol -> option values used unless typed: quick finishes in minutes on 2 cores, keeping
#: to where the prior has mass; gvae is GVAE's protocol (10 seeds x 5 iterations x 50), the
#: library's defaults (``molshape.optimize`` with no settings runs the same protocol)
PROTOCOLS = {
    "quick": dict(seeds=1, iterations=5, batch=10, init="prior", n_init=300, surrogate="exact", strategy="turbo",
                  floor_quantile=0.5, prior_quantile=0.99),
    "gvae": dict(seeds=_OPT.seeds, iterations=_OPT.iterations, batch=_OPT.batch, init="auto", n_init=None,
                 surrogate=_SUR.kind, strategy=_OPT.strategy, floor_quantile=None, prior_quantile=None),
}
#: rough seconds per GP fit + acquisition on a 2-core CPU (guesses to be calibrated; decoding is timed at run time)
_ITERATION_S = {"quick": 8.0, "gvae": 60.0, "search": 4.0, "pool": 10.0}
#: a candidate pool on a shared 2-core CPU (measured with 5,000 prior samples): seconds per molecule
#: for its canonical form, realism flags and fingerprint, and per (pool / 1,000)^2 for its Gram matrix
_POOL_S_PER_MOLECULE, _POOL_S_PER_1000_SQUARED = 0.001, 0.5
#: seconds per refinement step of one lead's latent on one core (a teacher-forced pass and its gradient)
_REFINE_S_PER_STEP = 0.1


def _check_target(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A target name, several joined by commas, or ``module:function``; else a usage error (exit 2)."""
    if value is None:
        return None
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.scoring.targets import resolve_objectives

    try:
        resolve_objectives(value)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--target") from None
    return value


def _check_constraint(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.bo.outcomes import parse_constraint

    known = tuple(n for n, t in TARGETS.items() if t.molecular)
    for text in value:
        try:
            parse_constraint(text, known)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--constraint") from None
    return value


@click.command("optimize", epilog="Outputs in --out: proposals.csv (seed, iteration, index, valid, string, "
               "score, reason), summary.json, best_vs_evaluations.png, top_molecules.png (molecules), "
               "state/seed_N.pt (resume), config.json. Re-running the same command resumes a killed run.")
@checkpoint_option
@click.option("--target", default=None, callback=_check_target,
              help="; ".join(f"{t}: {TARGETS[t].help}" for t in TARGETS) + "; several joined by commas "
              "(logp,qed: a Pareto front by qNEHVI); or module:function (a function of a list of SMILES returning "
              "scores, higher is better) [default: from the model's grammar].")
@click.option("--protocol", type=click.Choice(list(PROTOCOLS)), default="quick", show_default=True,
              help="quick: 1 seed x 5 iterations x 10 from 300 prior samples, TuRBO, exact GP, kept where the prior "
                   "has mass (minutes on 2 cores); gvae: GVAE's 10 seeds x 5 x 50 from the training set, sparse GP "
                   "(an hour or more on a CPU). Options typed on the command line win.")
@click.option("--from", "from_", default=None, metavar="SMILES|FILE",
              help="Optimise from this lead (a SMILES) or from each lead in FILE (first field of each line): a "
                   "trust region around its latent, --budget oracle calls per lead; writes leads.csv and leads.png.")
@click.option("--similarity", type=FiniteFloat(0, 1), default=None,
              help="With --from: Tanimoto similarity (Morgan radius 2) to the lead must be at least this; modelled as "
                   "a constraint of the acquisition.")
@click.option("--constraint", "outcome_constraints", multiple=True, callback=_check_constraint,
              metavar="NAME>=X|NAME<=X",
              help="A property constraint such as 'qed>=0.5' or 'sa<=4' (any molecule target), modelled as a "
                   "BoTorch outcome constraint; repeat for several.")
@click.option("--budget", type=click.IntRange(min=1), default=None,
              help="Constrained search: oracle calls (decoded, scored molecules) per lead or run [default: 60].")
@click.option("--radius", type=FiniteFloat(min=0, min_open=True), default=1.0, show_default=True,
              help="Constrained search: trust-region half-width around a lead, in prior standard deviations.")
@click.option("--refine-lead", type=click.IntRange(min=0), default=300, show_default=True, metavar="STEPS",
              help="With --from: refine each lead's latent for up to STEPS gradient steps on the decoder's likelihood "
                   "of the lead, and search around that latent, whose neighbours are more like the lead (10-30 s a "
                   "lead on one core; 0: the encoder's latent).")
@click.option("--prior-quantile", type=FiniteFloat(0, 1, max_open=True), default=None,
              help="Keep proposals inside the ball holding this share of the mass of the nearest prior component "
                   "(0: off) [default: 0.99; --protocol gvae: off].")
@click.option("--mo-method", type=click.Choice(["qnehvi", "qnparego"]), default="qnehvi", show_default=True,
              help="Acquisition for several objectives (qnparego: cheaper for 3 or more).")
@click.option("--space", type=click.Choice(["auto", "pool", "latent"]), default="auto", show_default=True,
              help="Constrained search from the prior: pool: decode --pool-size prior samples, then choose among "
                   "them with a GP over Morgan count fingerprints (Tanimoto kernel); latent: the GP and acquisition "
                   "work in the latent box; auto: pool for several objectives, latent otherwise. Leads (--from) "
                   "always search the latent trust region.")
@click.option("--pool-size", type=click.IntRange(min=1), default=5000, show_default=True,
              help="--space pool: prior samples decoded into the candidate pool (decoding is not an oracle call; "
                   "repeats and molecules with a ring of more than 8 atoms, a triple bond in a ring or a "
                   "3-membered aromatic ring are dropped).")
@click.option("--strategy", type=click.Choice(STRATEGIES), default=_OPT.strategy,
              help="ei: greedy batch qLogEI in the box of the training latents (GVAE); turbo: inside a trust region "
                   "[default: from --protocol].")
@click.option("--iterations", default=_OPT.iterations, type=click.IntRange(min=1), help="BO iterations per seed "
              "[default: from --protocol].")
@click.option("--batch", default=_OPT.batch, type=click.IntRange(min=1), help="Proposals per iteration "
              "[default: from --protocol; constrained search: 10].")
@click.option("--seeds", default=_OPT.seeds, type=click.IntRange(min=1), help="Independent repetitions "
              "[default: from --protocol].")
@click.option("--seed", default=_OPT.seed, show_default=True, type=int, help="First seed (seeds run SEED, SEED+1, ...).")
@click.option("--init", type=click.Choice(INITS), default=INITS[0],
              help="Initial design: the encoded training set with its scores, decoded prior samples, or data "
                   "when found else prior [default: from --protocol].")
@click.option("--n-init", type=click.IntRange(min=4), default=None,
              help="Initial points: a random subset of the training set [default: all] or prior samples [500].")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The checkpoint's data file [default: the standard data set].")
@click.option("--attempts", default=1, show_default=True, type=click.IntRange(min=1),
              help="Decode each proposal by majority vote over this many sampled decodes (GVAE: 500); "
                   "the argmax decode is reported alongside.")
@click.option("--surrogate", type=click.Choice(KINDS), default=_SUR.kind,
              help="svgp: sparse variational GP on all points (GVAE); exact: exact GP on the best half + a "
                   "random half of --exact-max points; auto: exact when all points fit [default: from --protocol].")
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
              help="Run the seeds (with --from: the leads) in this many processes (each with --threads torch "
                   "threads, default 1); same results as one process.")
@click.option("--allow-unrealistic", is_flag=True,
              help="Latent BO protocol: score every decoded molecule. By default one with a ring of more than 8 "
                   "atoms, a triple bond in a ring or a 3-membered aromatic ring is rejected before scoring and "
                   "enters the GP as an invalid decode does. (The constrained, lead and pool searches do not "
                   "use this gate.)")
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
def command(ctx: click.Context, checkpoint: Path | None, grammar: str, target: str | None, protocol: str,
            from_: str | None, similarity: float | None, outcome_constraints: tuple[str, ...], budget: int | None,
            radius: float, refine_lead: int, prior_quantile: float | None, mo_method: str, space: str, pool_size: int, strategy: str,
            iterations: int, batch: int, seeds: int, seed: int, init: str, n_init: int | None, data: Path | None,
            attempts: int, surrogate: str, inducing: int, exact_max: int, floor_quantile: float | None, num_restarts: int, raw_samples: int,
            mc_samples: int, maxiter: int, workers: int, allow_unrealistic: bool, smoke: bool, constraints: str, threads: int | None,
            out: Path | None, device: str, as_json: bool) -> None:
    """Bayesian optimisation in the latent space of a trained grammar autoencoder (BoTorch)."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape import api

    if similarity is not None and from_ is None:
        raise click.UsageError("--similarity needs --from (the leads to stay similar to)")
    if from_ is None and ctx.get_parameter_source("refine_lead") == click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--refine-lead needs --from (the leads whose latents it refines)")
    leads = _read_leads(from_) if from_ is not None else None
    params = dict(seeds=seeds, iterations=iterations, batch=batch, n_init=n_init, inducing=inducing,
                  num_restarts=num_restarts, raw_samples=raw_samples, init=init, surrogate=surrogate,
                  strategy=strategy, floor_quantile=floor_quantile, prior_quantile=prior_quantile)
    typed = {k for k in params if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE}
    if smoke and ctx.get_parameter_source("protocol") != click.core.ParameterSource.COMMANDLINE:
        protocol = "gvae"  # a smoke run is a tiny GVAE protocol, as it always was
    for k, v in {**PROTOCOLS[protocol], **(SMOKE if smoke else {})}.items():
        if k not in typed:  # protocol and smoke values replace defaults, never options typed
            params[k] = v
    if params["prior_quantile"] == 0:
        params["prior_quantile"] = None
    typed_space = any(ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE
                      for k in ("space", "pool_size"))
    searching = (from_ is not None or bool(outcome_constraints) or budget is not None or typed_space
                 or (target is not None and ("," in target or ":" in target)))
    checkpoint, dev, model, g, ckpt = load_run_model(checkpoint, grammar, device, threads)
    check_constraints(g, constraints)
    target = target or default_target(g)
    if target is None:
        raise click.UsageError(f"model grammar {g.name!r} has no default target; pass --target")
    if searching:
        _search(api_model=(model, g, ckpt, checkpoint), target=target, leads=leads, similarity=similarity,
                outcome_constraints=outcome_constraints, budget=budget, radius=radius, refine_lead=refine_lead,
                params=params, typed=typed,
                mo_method=mo_method, space=space, pool_size=pool_size, seed=seed, constraints=constraints,
                workers=workers, threads=threads, out=out, as_json=as_json)
        return
    _print_estimate(model, g, protocol, params)
    strategy = params["strategy"]
    if out is None:  # a fresh folder: resuming is always an explicit choice
        out = runs_dir() / f"optimize-{target}-{strategy}-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg = OptimizeConfig(
        iterations=params["iterations"], batch=params["batch"], seeds=params["seeds"], seed=seed, strategy=strategy,
        num_restarts=params["num_restarts"], raw_samples=params["raw_samples"], mc_samples=mc_samples, maxiter=maxiter,
        surrogate=SurrogateConfig(kind=params["surrogate"], inducing=params["inducing"], exact_max=exact_max,
                                  floor_quantile=params["floor_quantile"]))
    check_out_dir(out)
    with _cli_errors():
        summary = api.optimize(api.Model(model, g, ckpt, checkpoint), target, out, config=cfg, init=params["init"],
                               n_init=params["n_init"], data=data, attempts=attempts, device=dev, progress=True,
                               workers=workers, worker_threads=threads or 1, constraints=constraints,
                               prior_quantile=params["prior_quantile"], realism_gate=not allow_unrealistic,
                               record={"argv": sys.argv, "command": ctx.command.name, "smoke": smoke}).summary
    emit_summary({**summary, "out": str(out)}, as_json, _human)


def _read_leads(source: str) -> list[tuple[int, str]]:
    """The leads of ``--from`` (a SMILES or a file); none is a usage error (exit 2), before any folder."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.bo.leads import read_leads

    path = Path(source)
    if path.is_dir():
        raise click.BadParameter(f"{path} is a directory, not a file of leads", param_hint="--from")
    try:
        leads = read_leads(source)
    except UnicodeDecodeError as e:
        raise click.BadParameter(f"{source}: not UTF-8 text ({e.reason} at byte {e.start})", param_hint="--from")
    if not leads:
        raise click.BadParameter(f"{source!r}: no lead (an empty file or an empty SMILES)", param_hint="--from")
    return leads


def _print_estimate(model, grammar, protocol: str, params: dict[str, Any], leads: int = 0,
                    budget: int = 0, batch: int = 1, n_init: int = 0, pool: int = 0, refine: int = 0) -> float:
    """Time a few decodes and print the expected wall time on stderr; returns it (seconds)."""
    import torch

    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.gvae.generation import decode_latents, prior_latents

    # a pool decodes in big batches, several times cheaper per molecule than the few of a BO batch
    n_probe = 256 if pool else 8
    z = prior_latents(model, n_probe, torch.Generator().manual_seed(0))
    decode_latents(model, grammar, z[:1])  # the first decode pays one-off set-up costs
    t0 = time.perf_counter()
    decode_latents(model, grammar, z)
    per_decode = (time.perf_counter() - t0) / n_probe
    if leads:
        iterations = max(0, -(-(budget - n_init) // batch))
        seconds = leads * (budget * per_decode + iterations * _ITERATION_S["search"])
        what = f"{leads} lead(s) x {budget} oracle calls"
        if refine:
            seconds += leads * refine * _REFINE_S_PER_STEP
            what += f", each lead's latent refined for up to {refine} steps"
        if pool:  # decoding the pool, its fingerprints and Gram matrix, then a discrete acquisition
            seconds = (pool * (per_decode + _POOL_S_PER_MOLECULE) + _POOL_S_PER_1000_SQUARED * (pool / 1000) ** 2
                       + iterations * _ITERATION_S["pool"])
            what = f"a pool of {pool} decoded prior samples, {budget} oracle calls"
    else:
        n = params["seeds"] * params["iterations"] * params["batch"] + (params["n_init"] or 0)
        seconds = n * per_decode + params["seeds"] * params["iterations"] * _ITERATION_S.get(protocol, 8.0)
        what = (f"{params['seeds']} seed(s) x {params['iterations']} x {params['batch']} proposals"
                + (f" from {params['n_init']} prior samples" if params["init"] == "prior" else ""))
    click.echo(f"expected time: about {_duration(seconds)} ({what}; decoding {per_decode * 1000:.0f} ms per "
               "molecule here; the training-set encoding of --init data is not counted)", err=True)
    return seconds


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _search(*, api_model, target: str, leads, similarity, outcome_constraints, budget, radius, refine_lead, params, typed,
            mo_method, space, pool_size, seed, constraints, workers, threads, out, as_json) -> None:
    """The constrained search: from leads, with constraints, or over several objectives."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape import api
    from molshape.bo.constrained import SearchConfig
    from molshape.grammar.representation import is_molecular

    model, g, ckpt, checkpoint = api_model
    base = SearchConfig()
    cfg = SearchConfig(budget=budget or base.budget, n_init=params["n_init"] if "n_init" in typed else base.n_init,
                       batch=params["batch"] if "batch" in typed else base.batch, radius=radius,
                       prior_quantile=params["prior_quantile"], mo_method=mo_method, space=space,
                       pool_size=pool_size, seed=seed, refine_lead=refine_lead)
    objectives = api.resolve_objectives(target)
    try:
        api.search_spec(objectives, similarity, list(outcome_constraints), cfg, constraints,
                        with_leads=leads is not None, molecular=is_molecular(g))
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    pooled = cfg.search_space(len(objectives), leads is not None, is_molecular(g)) == "pool"
    if out is None:
        name = target.replace(",", "-").replace(":", ".")
        out = runs_dir() / f"optimize-{name}-{'leads' if leads else 'search'}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_out_dir(out)
    if leftovers(out):  # refused before the time estimate; the library checks again under its lock
        raise click.UsageError(f"{out} is not empty; a constrained search writes a fresh folder: choose another --out")
    _print_estimate(model, g, "search", params, leads=len(leads) if leads else 1, budget=cfg.budget,
                    batch=cfg.batch, n_init=cfg.n_init, pool=cfg.pool_size if pooled else 0, refine=cfg.refine_lead)
    record = {"argv": sys.argv, "command": "optimize"}
    with _cli_errors():
        summary = api.optimize(api.Model(model, g, ckpt, checkpoint), target, out, from_=leads, similarity=similarity,
                               constraint=list(outcome_constraints), search=cfg, constraints=constraints,
                               workers=workers, worker_threads=threads or 1, progress=True, record=record).summary
    emit_summary({k: v for k, v in summary.items() if k != "rows"}, as_json, _human_search)
    if summary.get("failed_leads"):
        sys.exit(EXIT_ROWS_FAILED)


def _human_search(s: dict[str, Any]) -> str:
    name = s["target"][0]
    lines = [f"constrained search of {', '.join(s['target'])}"
             + (f" with {', '.join(s['constraints'])}" if s["constraints"] else "")]
    if "leads" in s:
        imp = s["improvement"]
        lines.append(f"  {s['usable_leads']} of {s['leads']} leads searched, {s['oracle_calls']['mean']:.0f} oracle "
                     f"calls each" + (f", similarity >= {s['similarity']:g}" if s["similarity"] is not None else ""))
        lines.append(f"  improvement in {name}: {imp['mean']:.2f} +- {imp['sd']:.2f} (sd), success rate "
                     f"{s['success_rate']:.0%}, feasible share of proposals {s['feasible_share']:.0%}")
        for f in s["failed_leads"]:
            lines.append(f"  line {f['line']}: {f['lead']!r} not searched: {f['reason']}")
    else:
        b, rb = s["best"], s["random_best"]
        if "pool" in s:
            p = s["pool"]
            lines.append(f"  candidate pool: {p['size']} molecules from {p['drawn']} prior samples ({p['invalid']} "
                         f"invalid, {p['duplicates']} repeats, {p['unrealistic']} with a realism flag dropped)")
        lines.append(f"  {s['oracle_calls']} oracle calls; feasible share {s['feasible_share']:.0%}; best "
                     + (f"{b[name]:.3f} {b['string']}" if b else "none feasible")
                     + (f" (random prior samples: {rb[name]:.3f})" if rb else ""))
        if "hypervolume" in s:
            hv = s["hypervolume"]
            lines.append(f"  hypervolume after {hv['oracle_calls'][-1]} calls: BO {hv['bo'][-1]:.3f}, random prior "
                         f"samples {hv['random_prior'][-1]:.3f} ({s['baseline']})")
    r = s["realism"]
    lines.append(f"  realism of valid proposals: rings > 8 atoms {r['ring_over_8']:.1%}, triple bonds in rings "
                 f"{r['triple_bond_in_ring']:.1%}, 3-membered aromatic rings {r['aromatic_3_ring']:.1%}")
    lines.append(f"  wall time {s['wall_s']:.0f} s; outputs in {s['out']}")
    return "\n".join(lines)


@contextmanager
def _cli_errors() -> Iterator[None]:
    """A held folder is a usage error (exit 2), as is a refused one; another bad value fails (exit 1)."""
    try:
        yield
    except RunLocked as e:
        raise click.UsageError(str(e)) from None
    except OutputRefused:
        raise  # the command group reports it as a usage error
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from e


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
    if "realism_gate" in s:
        lines += _realism_lines(s)
    if "top_molecules_png" in s:
        lines.append(f"  grid of the top molecules: {s['top_molecules_png']}")
    lines.append(f"  outputs in {s['out']}")
    return "\n".join(lines)


def _realism_lines(s: dict[str, Any]) -> list[str]:
    """The realism gate's count and the realism shares of the scored proposals."""
    g, r = s["realism_gate"], s["realism"]
    shares = (f"rings > 8 atoms {r['ring_over_8']:.1%}, triple bonds in rings {r['triple_bond_in_ring']:.1%}, "
              f"3-membered aromatic rings {r['aromatic_3_ring']:.1%}") if r["n_valid"] else "none scored"
    gate = (f"{g['rejected']} of {s['evaluations']} proposals rejected unscored" if g["enabled"]
            else "off (--allow-unrealistic): every decode scored")
    return [f"  realism gate: {gate}", f"  realism of the {r['n_valid']} scored proposals: {shares}"]
