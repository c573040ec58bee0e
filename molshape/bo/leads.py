"""Searches a person asks for by what they want, not by protocol: from each lead (a
trust region around its latent, Tanimoto similarity to it as a modelled constraint), or
from the prior; with property constraints and one or several objectives.

Each lead is one :func:`~molshape.bo.constrained.run_search` of ``budget`` oracle calls
(decoded, scored molecules; the lead's own latent is the first). Its result row holds the
best feasible molecule (similarity ``>= delta``, every constraint met, not the lead
itself), its similarity, the improvement of the first objective over the lead's own
score (0 when none is feasible, as in the benchmark), and the calls spent. Leads run in
``workers`` spawned processes, each loading the model once.

Example:
    >>> spec = SearchSpec([Objective("plogp")], [], similarity=0.4, cfg=SearchConfig(budget=40))  # doctest: +SKIP
    >>> rows = run_leads(model, grammar, [(1, "CCOc1ccccc1")], spec, checkpoint_path=path)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from molshape.bo.constrained import Region, SearchConfig, run_search
from molshape.bo.outcomes import Constraint
from molshape.gvae.generation import decode_latents, encode_rules, parse_strings, prior_latents
from molshape.gvae.latent_refinement import RefineOptions, refine_latents
from molshape.scoring.targets import Objective

log = logging.getLogger(__name__)


@dataclass
class SearchSpec:
    """What every search of a run optimises (plain, picklable values for worker processes)."""

    objectives: list[Objective]
    constraints: list[Constraint] = field(default_factory=list)
    similarity: float | None = None      # Tanimoto to the lead >= this (lead searches only)
    cfg: SearchConfig = field(default_factory=SearchConfig)
    decode_constraints: str = "auto"

    def outcome_names(self, with_lead: bool) -> list[str]:
        names = [o.name for o in self.objectives] + [str(c) for c in self.constraints]
        if with_lead and self.similarity is not None:
            names.append(f"similarity>={self.similarity:g}")
        return names


def read_leads(source: str | Path | Sequence[str]) -> list[tuple[int, str]]:
    """``(line, SMILES)`` pairs: a file (first field of each non-blank, non-``#`` line), one SMILES,
    a sequence of SMILES (numbered from 1) or of ``(line, SMILES)`` pairs."""
    if isinstance(source, (list, tuple)):
        return [(int(s[0]), str(s[1]).strip()) if isinstance(s, tuple) else (i + 1, str(s).strip())
                for i, s in enumerate(source)]
    path = Path(str(source))
    if path.is_file():
        out = []
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                fields = line.split()
                if fields and not fields[0].startswith("#"):
                    out.append((i, fields[0]))
        return out
    text = str(source).strip()
    return [(1, text)] if text else []


Score = Callable[[list], tuple[list[dict], np.ndarray]]


def make_evaluate(model, grammar, spec: SearchSpec, lead: str | None) -> Callable[[Tensor], tuple[list[dict], np.ndarray]]:
    """``evaluate(z [q x d]) -> (records, outcomes [q x (m + k)])``: decode, then :func:`make_scorer`."""
    score = make_scorer(spec, lead)

    def evaluate(z: Tensor) -> tuple[list[dict], np.ndarray]:
        return score(list(decode_latents(model, grammar, z.float(), mode="argmax", constraints=spec.decode_constraints)))

    return evaluate


def make_scorer(spec: SearchSpec, lead: str | None) -> Score:
    """``score(strings [q]) -> (records, outcomes [q x (m + k)])``: one oracle call per string:
    the objectives (to maximise), the constraint slacks, the similarity to the lead."""
    from molshape.scoring.similarity import tanimoto  # RDKit is heavy: loaded only when molecules are involved

    def score(strings: list) -> tuple[list[dict], np.ndarray]:
        values = {o.name: o.values(strings) for o in spec.objectives}
        for c in spec.constraints:
            if c.name not in values:
                values[c.name] = Objective(c.name).values(strings)
        cols = [values[o.name] * (1.0 if o.higher_is_better else -1.0) for o in spec.objectives]
        cols += [c.slack(values[c.name]) for c in spec.constraints]
        sim = None
        if lead is not None and spec.similarity is not None:
            sim = tanimoto(strings, lead)
            cols.append(spec.similarity - sim)
        Y = np.stack(cols, 1)
        valid = np.isfinite(Y).all(1) & np.array([s is not None for s in strings])
        feasible = valid & (Y[:, len(spec.objectives):] <= 0).all(1)
        records = []
        for i, s in enumerate(strings):
            r = {"string": s, "valid": bool(valid[i]), "feasible": bool(feasible[i]),
                 "score": _plain(values[spec.objectives[0].name][i])}
            r.update({name: _plain(v[i]) for name, v in values.items()})
            if sim is not None:
                r["similarity"] = _plain(sim[i])
            records.append(r)
        return records, Y

    return score


def _plain(v: float) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v


def prior_of(model) -> tuple[Tensor, float]:
    """Centres ``[K x d]`` and standard deviation of the model's prior."""
    prior = model.objective.prior
    return prior.centers.detach().cpu().double(), float(prior.std)


def optimise_lead(model, grammar, line: int, lead: str, spec: SearchSpec) -> dict:
    """One lead's search; returns ``{"row": ..., "records": [...]}`` (an unusable lead: its row says why)."""
    from molshape.scoring.chem import canonicalise  # RDKit is heavy: loaded only when molecules are involved

    row: dict = {"line": line, "lead": lead}
    canonical = canonicalise(lead)
    if canonical is None:
        return {"row": {**row, "status": "invalid", "reason": _lead_reason(lead)}, "records": []}
    try:
        rules = parse_strings(grammar, [lead])
    except ValueError as e:
        return {"row": {**row, "status": "invalid", "reason": f"the grammar cannot encode it: {e}"}, "records": []}
    z0 = encode_rules(model, rules)
    if spec.cfg.refine_lead:  # start from a latent the decoder maps back to the lead, inside the region searched
        options = RefineOptions(steps=spec.cfg.refine_lead, prior_quantile=spec.cfg.prior_quantile)
        z0 = refine_latents(model, grammar, rules, options, z=z0, constraints=spec.decode_constraints).z
    first = spec.objectives[0]
    sign = 1.0 if first.higher_is_better else -1.0
    lead_score = float(first.values([lead])[0])
    centers, std = prior_of(model)
    region = Region.around(centers, std, z0[0], spec.cfg.radius, spec.cfg.prior_quantile)
    result = run_search(make_evaluate(model, grammar, spec, lead), region, len(spec.objectives), spec.cfg,
                        start=z0.double())
    records = result["records"]
    for k, r in enumerate(records):
        r.update(line=line, call=k + 1)
    best = None
    for r in records:
        if r["feasible"] and canonicalise(r["string"]) != canonical and r.get(first.name) is not None:
            if best is None or sign * r[first.name] > sign * best[first.name]:
                best = r
    gain = 0.0 if best is None else max(0.0, sign * (best[first.name] - lead_score))
    row.update(status="ok", reason="", lead_score=lead_score, best=best["string"] if best else "",
               best_score=best[first.name] if best else None,
               similarity=best.get("similarity") if best else None, improvement=gain,
               success=bool(best is not None and gain > 0), oracle_calls=len(records),
               best_call=best["call"] if best else None,
               feasible_share=float(np.mean([r["feasible"] for r in records])),
               lead_decodes_to=records[0]["string"] or "")
    return {"row": row, "records": records, "ref_point": result["ref_point"]}


def _lead_reason(lead: str) -> str:
    from molshape.scoring.chem import invalid_reason  # RDKit is heavy: loaded only when molecules are involved

    return invalid_reason(lead) or "not a molecule"


def optimise_prior(model, grammar, spec: SearchSpec) -> dict:
    """A search from prior samples (no lead), plus random prior sampling at the same budget."""
    cfg = spec.cfg
    centers, std = prior_of(model)
    region = Region.around(centers, std, None, quantile=cfg.prior_quantile)
    z = prior_latents(model, cfg.budget, torch.Generator().manual_seed(cfg.seed)).double()
    evaluate = make_evaluate(model, grammar, spec, None)
    result = run_search(evaluate, region, len(spec.objectives), cfg, start=z[: cfg.n_init])
    # the baseline shares the initial design, then draws fresh prior samples
    base, base_y = evaluate(z)
    for k, r in enumerate(base):
        r.update(call=k + 1)
    for k, r in enumerate(result["records"]):
        r.update(call=k + 1)
    return {**result, "random": base, "random_Y": base_y,
            "baseline": f"the search's {cfg.n_init} initial prior samples, then fresh prior samples"}


# -- many leads --------------------------------------------------------------------------------------------------
_WORKER: dict = {}


def _init_worker(checkpoint_path: str, threads: int) -> None:
    from molshape.gvae.checkpoint import load_model  # loaded in the worker only: the parent has its model

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING)
    model, grammar, _ = load_model(checkpoint_path, "cpu")
    _WORKER.update(model=model, grammar=grammar)


def _one(args: tuple[int, str, SearchSpec]) -> dict:
    line, lead, spec = args
    return optimise_lead(_WORKER["model"], _WORKER["grammar"], line, lead, spec)


def run_leads(model, grammar, leads: list[tuple[int, str]], spec: SearchSpec, *, checkpoint_path: str | Path,
              workers: int = 1, threads: int = 1, progress: bool = False) -> list[dict]:
    """:func:`optimise_lead` for every lead, in order; ``workers > 1``: in spawned processes.

    Raises:
        ValueError: ``workers > 1`` with a target function that cannot be sent to a process
            (a lambda or a local function: define it at a module's top level).
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=len(leads), desc="leads", unit="lead", disable=not progress)
    out: list[dict] = []
    if workers <= 1 or len(leads) <= 1:
        for line, lead in leads:
            out.append(optimise_lead(model, grammar, line, lead, spec))
            bar.update(1)
        bar.close()
        return out
    try:
        pickle.dumps(spec)
    except (pickle.PicklingError, AttributeError, TypeError) as e:
        raise ValueError(f"workers > 1 needs a target function defined at a module's top level ({e})") from None
    ctx = multiprocessing.get_context("spawn")  # the parent holds torch threads, which fork can deadlock
    with ProcessPoolExecutor(max_workers=min(workers, len(leads)), mp_context=ctx, initializer=_init_worker,
                             initargs=(str(checkpoint_path), threads)) as pool:
        for result in pool.map(_one, [(line, lead, spec) for line, lead in leads]):
            out.append(result)
            bar.update(1)
    bar.close()
    return out
