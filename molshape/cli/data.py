"""``molshape data``: download, locate, describe and prepare data sets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from molshape.core.atomic import save_figure, write_json
from molshape.cli.common import cap_workers, emit_summary, json_option, seed_option
from molshape.data.registry import DATASETS, get_spec
from molshape.data.download import ChecksumError, DownloadError, download, locate, verify_file

#: registry data set -> the grammar whose standard data it is
_GRAMMAR_OF = {name: spec.grammar for name, spec in DATASETS.items() if spec.grammar}
_data_option = click.option("--data", type=click.Path(path_type=Path),
                            help="A local copy (file or folder) instead of the cache / $MOLSHAPE_DATA_DIR.")


@click.group("data", context_settings={"help_option_names": ["-h", "--help"]})
def command() -> None:
    """Download, locate, describe and prepare data sets.

    Data is looked up in --data, then $MOLSHAPE_DATA_DIR, then the download cache.
    """


def _spec_name(ctx: click.Context, param: click.Parameter, name: str | None) -> str | None:
    if name is not None:
        try:
            get_spec(name)
        except KeyError as e:
            raise click.BadParameter(e.args[0]) from e
    return name


@command.command("download")
@click.argument("name", callback=_spec_name)
@click.option("--url", help="Fetch from here instead (also $MOLSHAPE_DOWNLOAD_URL_<NAME>); "
                            "a base URL for multi-file sets. file:// works.")
@click.option("--dest", type=click.Path(path_type=Path), help="Target folder (default: the download cache).")
@json_option
def download_command(name: str, url: str | None, dest: Path | None, as_json: bool) -> None:
    """Fetch data set NAME, verify its checksum and cache it (no request if already cached).

    NAME is one of: zinc250k, expr, mnist, fashion-mnist, svhn, celeba.
    """
    spec = get_spec(name)
    if spec.generated and url is None and not any(s.url for s in spec.sources()):
        # nothing to fetch, and nothing is missing: molshape builds this set itself
        emit_summary({"name": name, "path": None, "generated": True, "note": spec.note}, as_json)
        return
    try:
        path = download(name, url=url, dest=dest)
    except (DownloadError, ChecksumError) as e:
        raise click.ClickException(str(e)) from e
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    emit_summary({"name": name, "path": str(path), "files": [str(p) for p in files]}, as_json)


def _part_info(name: str, part: str, data: Path | None) -> dict[str, Any]:
    found = locate(name, part, data)
    if found is None:
        return {"part": part, "found": False}
    path, source, where = found
    info: dict[str, Any] = {"part": part, "found": True, "path": str(path), "where": where,
                            "bytes": path.stat().st_size}
    if source is None:
        info["verified"] = "unverified (not a registered file name)"
    else:
        # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
        from molshape.data.download import _count_rows

        try:
            info["verified"] = verify_file(path, source, _count_rows)
        except ChecksumError as e:
            info["verified"] = f"MISMATCH: {e}"
    return info


def _dataset_info(name: str, data: Path | None, seed: int) -> dict[str, Any]:
    spec = get_spec(name)
    info: dict[str, Any] = {"name": name, "description": spec.description,
                            "parts": [_part_info(name, p, data) for p in spec.parts]}
    grammar = _GRAMMAR_OF.get(name)
    if grammar:
        # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
        from molshape.data.records import read_records

        first = info["parts"][0]
        if first["found"]:
            info["rows"] = len(read_records(first["path"], "join" if grammar == "expr" else "first"))
        elif spec.generated:
            info["source"] = "generated (molshape generates the set itself)"
        info["prepared"] = _prepared_info(grammar, data, seed)
    return info


def _prepared_info(grammar: str, data: Path | None, seed: int) -> dict[str, Any] | None:
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.data.datasets import load_cached

    try:
        prepared = load_cached(grammar, data, seed)
    except FileNotFoundError:
        return None
    if prepared is None:
        return {"cached": False, "hint": f"run `molshape data prepare --grammar {grammar}`"}
    return {"cached": True, **prepared.summary()}


@command.command("info")
@click.argument("name", required=False, callback=_spec_name)
@_data_option
@seed_option
@click.option("--plot", type=click.Path(path_type=Path), help="PNG histogram of derivation lengths (prepared sets).")
@json_option
def info_command(name: str | None, data: Path | None, seed: int, plot: Path | None, as_json: bool) -> None:
    """Where each data set is found, its checksum status, rows and parse cache status.

    NAME (default: all) is one of: zinc250k, expr, mnist, fashion-mnist, svhn, celeba.
    """
    names = [name] if name else list(DATASETS)
    infos = [_dataset_info(n, data if name else None, seed) for n in names]
    if plot:
        _plot_lengths({i["name"]: i for i in infos}, data if name else None, seed, plot)
    emit_summary({"datasets": infos, "plot": str(plot) if plot else None}, as_json, _human_info)


def _human_info(summary: dict[str, Any]) -> str:
    lines = []
    for d in summary["datasets"]:
        lines.append(f"{d['name']}: {d['description']}")
        for p in d["parts"]:
            where = f"{p['path']} [{p['where']}, {p['verified']}]" if p["found"] else "not found"
            lines.append(f"  {p['part']}: {where}")
        if "rows" in d:
            lines.append(f"  rows: {d['rows']:,}")
        if "source" in d:
            lines.append(f"  {d['source']}")
        prep = d.get("prepared")
        if prep and prep.get("cached"):
            lines.append(f"  parse cache: {prep['cache']}\n  split: {prep['split']}, failed: {prep['failed']}, "
                         f"length: {prep['length']}")
        elif prep:
            lines.append(f"  parse cache: none ({prep['hint']})")
    if summary.get("plot"):
        lines.append(f"plot: {summary['plot']}")
    return "\n".join(lines)


def _plot_lengths(infos: dict[str, dict], data: Path | None, seed: int, out: Path) -> None:
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.data.datasets import load_cached

    sets = [(name, load_cached(grammar, data, seed)) for name, grammar in _GRAMMAR_OF.items()
            if name in infos and (infos[name].get("prepared") or {}).get("cached")]
    if not sets:
        raise click.ClickException("nothing to plot: no prepared data set (run `molshape data prepare` first)")
    _save_histograms(sets, out)


def _save_histograms(sets: list[tuple[str, Any]], out: Path) -> None:
    """One histogram of derivation lengths per (name, PreparedData)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5 * len(sets), 3.5))
    axes = fig.subplots(1, len(sets), squeeze=False)
    for ax, (name, d) in zip(axes[0], sets):
        lengths = d.lengths.numpy()
        ax.hist(lengths, bins=range(int(lengths.min()), int(lengths.max()) + 2), color="tab:blue")
        ax.set(title=f"{name}: {len(d):,} rows, {len(d.failed):,} failed", xlabel="derivation length (rules)",
               ylabel="count")
    save_figure(fig, out, close=True, dpi=120)


@command.command("prepare")
@click.option("--grammar", default="smiles_kekule", show_default=True,
              help="smiles_kekule (the default SMILES grammar), smiles (GVAE's grammar), expr, or a .cfg file.")
@_data_option
@seed_option
@click.option("--limit", type=int, help="Smoke run: first N training records of the split (not cached).")
@click.option("--workers", type=int, callback=cap_workers, help="Processes for parsing and the semantic check (default: all cores).")
@click.option("--plot", type=click.Path(path_type=Path), help="PNG histogram of derivation lengths.")
@json_option
def prepare_command(grammar: str, data: Path | None, seed: int, limit: int | None, workers: int | None,
                    plot: Path | None, as_json: bool) -> None:
    """Parse a grammar's data set into the cache (a progress bar; seconds once cached)."""
    # imported when the command runs, not at the top: keeps the CLI's start-up and --help fast
    from molshape.data.datasets import load_dataset

    try:
        prepared = load_dataset(grammar, data, limit=limit, seed=seed, workers=workers, progress=not as_json)
    except FileNotFoundError as e:
        raise click.ClickException(str(e)) from e
    summary = prepared.summary()
    if prepared.cache_path:
        # the run's parameters and result, next to the cache file it describes
        record = Path(prepared.cache_path).with_suffix(".json")
        write_json(record, {"grammar": grammar, "data": str(data) if data else None, "seed": seed,
                            "limit": limit, **summary})
    if plot:
        _save_histograms([(prepared.grammar, prepared)], plot)
        summary["plot"] = str(plot)
    emit_summary(summary, as_json)
