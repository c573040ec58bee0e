"""``molshape screen``: a library of decoded prior samples, deduplicated, scored, filtered and ranked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from molshape.cli.cluster import check_engine, chunk_size_option, dask_workers_option, engine_failures, \
    scheduler_option
from molshape.cli.common import checkpoint_option, check_constraints, constraints_option, emit_summary, \
    json_option, load_run_model, seed_option, threads_option
from molshape.grammar.decoding import MODES
from molshape.scoring.targets import TARGETS


@click.command("screen", epilog="Output folder (--out): library/part-*.parquet (the unique molecules that pass "
               "every --keep, in draw order, one file per hash partition), top.csv (the best --top by --by), "
               "summary.json (counts, throughput), screen.json (the run's settings), chunks/ and shards/ "
               "(first-stage files, which --resume reuses). Every file is written atomically; a chunk counts "
               "as done once all its files are on disk, so a killed run or worker loses at most the chunks in "
               "flight and writes no molecule twice. Score columns: penalized_logp, logp (Crippen), sa, cycle "
               "(target logp), qed (target qed), expr (target expr). The rows do not depend on --workers or "
               "--scheduler. Exit status: 0 ok, 2 usage error (bad --keep, unknown target, unreachable "
               "scheduler, --out holding another run), 1 error.")
@checkpoint_option
@click.option("--n", "n", default=10_000, show_default=True, type=click.IntRange(min=1), help="Latents to draw.")
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), required=True, help="Run folder.")
@click.option("--source", type=click.Choice(["prior", "component"]), default="prior", show_default=True,
              help="Draw latents from the prior or from one mixture component (--component K).")
@click.option("--component", type=int, default=None, help="Mixture component K for --source component.")
@click.option("--target", "targets", multiple=True, type=click.Choice(list(TARGETS)),
              help="Target to score (repeatable) [default: the model's; --keep and --by add what they need].")
@click.option("--keep", multiple=True, metavar="COLUMN OP NUMBER",
              help="Keep molecules with e.g. 'qed>=0.6', 'sa<=3', 'logp>1' (repeatable; all must hold).")
@click.option("--top", default=1000, show_default=True, type=click.IntRange(min=0),
              help="Best kept molecules written to top.csv.")
@click.option("--by", type=click.Choice(list(TARGETS)), default=None,
              help="Target ranking top.csv [default: the first scored].")
@chunk_size_option(5000, "Latents per task (about 2 min on one core).")
@click.option("--partitions", type=click.IntRange(min=1), default=None,
              help="Hash partitions for deduplication [default: one per 1,000,000 latents].")
@click.option("--mode", type=click.Choice(MODES), default=None,
              help="Rule choice [default: argmax; sample when --attempts > 1].")
@click.option("--attempts", default=1, show_default=True, type=click.IntRange(min=1),
              help="Sampled decodes per latent; the most frequent valid result is kept.")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Sequences decoded per model call.")
@scheduler_option
@dask_workers_option
@click.option("--resume", is_flag=True, help="Continue the run in --out (finished chunks are skipped).")
@click.option("--force", is_flag=True, help="Delete the screen run in --out and start over.")
@constraints_option
@seed_option
@threads_option
@json_option
def command(checkpoint: Path | None, grammar: str, n: int, out: Path, source: str, component: int | None,
            targets: tuple[str, ...], keep: tuple[str, ...], top: int, by: str | None, chunk_size: int,
            partitions: int | None, mode: str | None, attempts: int, batch_size: int, scheduler: str | None,
            workers: int | None, resume: bool, force: bool, constraints: str, seed: int, threads: int | None,
            as_json: bool) -> None:
    """Generate N molecules, keep the unique ones passing --keep, score and rank them, in chunks."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.api import Model
    from molshape.screening.run import screen

    if resume and force:
        raise click.UsageError("--resume and --force exclude each other")
    check_engine(scheduler, workers)
    mode = mode or ("sample" if attempts > 1 else "argmax")
    if attempts > 1 and mode != "sample":
        raise click.BadParameter("--attempts > 1 needs --mode sample", param_hint="--mode")
    path, _, net, g, ckpt = load_run_model(checkpoint, grammar, "cpu", threads or 1)
    check_constraints(g, constraints)
    with engine_failures(str(out)):
        result = screen(Model(net, g, ckpt, path), out, n, seed=seed, keep=keep, targets=targets or None, top=top,
                        by=by, chunk_size=chunk_size, partitions=partitions, source=source, component=component,
                        mode=mode, attempts=attempts, constraints=constraints, batch_size=batch_size,
                        scheduler=scheduler, workers=workers, threads=threads or 1, resume=resume, force=force,
                        progress=True, announce=lambda line: click.echo(line, err=True))
    emit_summary(result.summary, as_json, _human)


def _human(s: dict[str, Any]) -> str:
    lines = [f"screened {s['n']:,} ({s['engine']}): {s['valid']:,} valid, {s['unique']:,} unique, "
             f"{s['kept']:,} kept" + (f" ({', '.join(s['keep'])})" if s["keep"] else "")
             + f" in {s['generate_s'] + s['dedup_s']:.1f} s"
             + (f" ({s['molecules_per_s']:.1f} molecules/s)" if s["molecules_per_s"] else "")]
    if s["best"]:
        column = next(k for k in s["best"][0] if k != "smiles")
        lines.append(f"best by {s['by']}: " + ", ".join(f"{r['smiles']} ({r[column]:.3f})" for r in s["best"][:3]))
    lines.append(f"library: {s['out']}/library/ ({s['partitions']} part(s)); top {s['top']}: {s['out']}/top.csv")
    return "\n".join(lines)
