"""Generation and reconstruction metrics of a grammar autoencoder.

Conventions (MOSES / GuacaMol, GVAE):

- validity: fraction of samples that are valid (RDKit parses and sanitises the SMILES;
  an expression is a complete derivation that evaluates to a finite function);
- uniqueness: distinct valid results (canonical SMILES) / valid;
- novelty: unique valid results not in the training set / unique valid;
- FCD: Frechet ChemNet Distance of valid samples to a reference set (``fcd_torch``,
  its bundled ChemNet weights, offline); SMILES only;
- KS: Kolmogorov-Smirnov distance of each latent dimension's empirical CDF (encoded
  test latents) to the prior's marginal CDF, mean and max over dimensions;
- reconstruction: ``encode`` then argmax ``decode`` of held-out molecules. *Sequence*
  accuracy = the whole production sequence exact; *canonical* accuracy = same
  canonical SMILES; *free-running per-rule* accuracy = the fraction of steps (of the true
  length) whose decoded rule, chosen after the model's own previous rules, equals the true
  rule, a much more forgiving number that GVAE users often mistook for the first. Training's
  ``acc_rule`` is the *teacher-forced* per-rule accuracy (each rule predicted after the
  true previous rules), higher still.
- MOSES metrics (IntDiv1/2, SNN, Frag, Scaf): :mod:`molshape.scoring.moses`.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from molshape.grammar.decoding import make_decoder
from molshape.gvae.generation import canonical_key, encode_rules, expand_results, invalid_reason, model_device
from molshape.grammar.cfg import Grammar
from molshape.grammar.parser import get_parser
from molshape.grammar.representation import is_molecular
from molshape.latent.regularizer import GMMPrior, ks_distance
from molshape.core.runtime import cache_dir
from molshape.core.cache import load_entry, save_entry

log = logging.getLogger(__name__)


def canonical_forms(grammar: Grammar, strings: Sequence[str | None]) -> list[str | None]:
    """Canonical identity of each valid string (None for invalid / missing ones)."""
    key = canonical_key(grammar)
    out: list[str | None] = []
    for s in strings:
        out.append(None if s is None or invalid_reason(grammar, s) is not None else key(s))
    return out


def sample_metrics(grammar: Grammar, samples: Sequence[str | None], reference: set[str] | None = None) -> dict[str, Any]:
    """Validity, uniqueness and (with ``reference``, canonical training strings) novelty.

    Args:
        samples: decoded strings, ``None`` for failed decodes (they count as invalid).
        reference: canonical forms of the training set.
    """
    n = len(samples)
    canon = [c for c in canonical_forms(grammar, samples) if c is not None]
    unique = set(canon)
    out: dict[str, Any] = {
        "n_samples": n,
        "n_valid": len(canon),
        "n_unique": len(unique),
        "validity": len(canon) / n if n else float("nan"),
        "uniqueness": len(unique) / len(canon) if canon else float("nan"),
    }
    if reference is not None:
        novel = unique - reference
        out["n_novel"] = len(novel)
        out["novelty"] = len(novel) / len(unique) if unique else float("nan")
    return out


def reference_set(grammar: Grammar, strings: Sequence[str], key: str | None = None,
                  progress: bool = False) -> set[str]:
    """Canonical forms of a training set, cached under ``cache_dir()/canonical`` by ``key``.

    Canonicalising ZINC's 220,000 training SMILES with RDKit takes about a minute of one
    core (spread over all cores); the cache makes it a one-time cost per data set and split.
    """
    if key is None:
        key = hashlib.sha256("\n".join(strings).encode()).hexdigest()[:24]
    path = cache_dir() / "canonical" / f"{grammar.name}-{key}.txt"
    if path.is_file():
        return set(path.read_text().split("\n")) - {""}
    canon = canonical_key(grammar)
    if is_molecular(grammar):
        from molshape.scoring.chem import canonicalise_many  # RDKit is heavy: loaded only when molecules are involved

        forms = set(canonicalise_many(strings, progress=progress)) - {None}
    else:
        forms = {canon(s) for s in strings}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(sorted(forms)))
    tmp.replace(path)
    return forms


def fcd(generated: Sequence[str], reference: Sequence[str], device: str | torch.device = "cpu",
        reference_key: str | None = None, reference_stats: dict[str, np.ndarray] | None = None) -> float:
    """Frechet ChemNet Distance between valid ``generated`` and ``reference`` SMILES.

    The reference statistics (mean and covariance of ChemNet activations) are cached
    under ``cache_dir()/fcd`` by ``reference_key`` when given; ``reference_stats``
    (``{"mu", "sigma"}``, e.g. the shipped ones) stand in for ``reference``.

    Raises:
        ValueError: fewer than 2 molecules on either side.
    """
    if len(generated) < 2 or (reference_stats is None and len(reference) < 2):
        raise ValueError(f"FCD needs >= 2 molecules on each side (got {len(generated)} and {len(reference)})")
    scorer = _fcd_scorer(str(device))
    pref = reference_stats
    if pref is None and reference_key is not None:
        path = cache_dir() / "fcd" / f"{reference_key}.pt"
        cached = load_entry(path, ("mu", "sigma"))
        if cached is not None:
            pref = {k: v.numpy() for k, v in cached.items()}
        else:
            pref = scorer.precalc(list(reference))
            save_entry({k: torch.as_tensor(v) for k, v in pref.items()}, path)
    # scipy's sqrtm of the 512 x 512 covariance product runs ~25x faster on one BLAS thread
    # than with BLAS threads contending for a shared machine (0.5 s against 12 s measured)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        if pref is None:
            return float(scorer(ref=list(reference), gen=list(generated)))
        return float(scorer(pref=pref, gen=list(generated)))


@lru_cache(maxsize=2)
def _fcd_scorer(device: str):
    import warnings

    from fcd_torch import FCD

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return FCD(device=device, n_jobs=1)


def ks_statistics(z: Tensor, prior: GMMPrior) -> dict[str, float]:
    """KS distance of each dimension of ``z [N x d]`` to the prior marginal: mean and max."""
    d = ks_distance(z.to(prior.centers.device, prior.centers.dtype), prior)
    return {"ks_mean": float(d.mean()), "ks_max": float(d.max())}


@torch.no_grad()
def reconstruction(model: nn.Module, grammar: Grammar, rules: Tensor, lengths: Tensor,
                   batch_size: int = 1000, progress: bool = False,
                   constraints: str = "auto") -> tuple[dict[str, float], Tensor]:
    """Encode ``rules [N x T]`` and argmax-decode them back.

    Returns:
        ``(metrics, z [N x d])``: ``recon_sequence`` (whole sequence exact),
        ``recon_canonical`` (same canonical string; equals sequence accuracy for
        expressions up to ambiguity), ``recon_per_rule`` (free-running per-step accuracy over
        the true length), ``recon_complete`` (decodes that finished).
    """
    from tqdm.auto import tqdm

    decoder = make_decoder(grammar, constraints)
    z = encode_rules(model, rules, batch_size)
    device = model_device(model)
    parser = get_parser(grammar)
    key = canonical_key(grammar)
    exact = same = steps_right = complete = 0
    for i in tqdm(range(0, len(rules), batch_size), desc="reconstruct", disable=not progress, leave=False):
        true = rules[i:i + batch_size]
        n = lengths[i:i + batch_size]
        out = decoder.decode(model, z[i:i + batch_size].to(device)).cpu()
        exact += int((out.rules == true).all(dim=1).sum())
        complete += int(out.complete.sum())
        on_true = torch.arange(true.shape[1]) < n.unsqueeze(1)
        steps_right += int(((out.rules == true) & on_true).sum())
        for t, m, d in zip(true, n, expand_results(grammar, out)):
            if d is None:
                continue
            truth = parser.expand(t[: int(m)].tolist())
            if d == truth or (invalid_reason(grammar, d) is None and key(d) == key(truth)):
                same += 1
    total = len(rules)
    return {
        "recon_sequence": exact / total,
        "recon_canonical": same / total,
        "recon_per_rule": steps_right / max(int(lengths.sum()), 1),
        "recon_complete": complete / total,
        "n_recon": total,
    }, z


def pca_axes(z: Tensor) -> tuple[Tensor, Tensor]:
    """Mean ``[d]`` and two leading principal axes ``[2 x d]`` of ``z [N x d]`` (float64)."""
    mean = z.double().mean(dim=0)
    _, _, v = torch.linalg.svd(z.double() - mean, full_matrices=False)
    return mean, v[:2]


def plot_latents(z: Tensor, labels: Tensor, path: str | Path, title: str, centers: Tensor | None = None) -> Path:
    """PNG scatter of the 2-D PCA projection of ``z [N x d]`` coloured by ``labels [N]``."""
    import matplotlib
    from matplotlib.figure import Figure

    mean, axes = pca_axes(z)
    xy = ((z.double() - mean) @ axes.T).numpy()
    fig = Figure(figsize=(6, 5.5))
    ax = fig.subplots()
    k = int(centers.shape[0]) if centers is not None else int(labels.max()) + 1
    cmap = matplotlib.colormaps["tab10" if k <= 10 else "tab20"].resampled(k)
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=labels.numpy(), cmap=cmap, vmin=-0.5, vmax=k - 0.5, s=4, alpha=0.6)
    if centers is not None:
        c = ((centers.double().cpu() - mean) @ axes.T).numpy()
        ax.scatter(c[:, 0], c[:, 1], marker="x", c="black", s=60, label="prior centres")
        ax.legend(loc="best")
    fig.colorbar(sc, ax=ax, label="assigned component", ticks=range(k) if k <= 20 else None)
    ax.set(title=title, xlabel="PC 1", ylabel="PC 2")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def append_csv(path: str | Path, row: dict[str, Any]) -> Path:
    """Append ``row`` (plus a UTC timestamp) to a CSV; new columns widen the header."""
    path = Path(path)
    row = {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), **row}
    rows: list[dict[str, Any]] = []
    fields: list[str] = []
    if path.is_file():
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            fields = list(reader.fieldnames or [])
            rows = list(reader)
    fields += [k for k in row if k not in fields]
    rows.append(row)
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


def flat_numbers(summary: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The scalar entries of a nested summary, keys joined with ``.``, for CSV rows."""
    out: dict[str, Any] = {}
    for k, v in summary.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_numbers(v, name + "."))
        elif isinstance(v, (int, float, str, bool)) or v is None or isinstance(v, np.generic):
            out[name] = v
    return out
