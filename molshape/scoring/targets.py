"""The target registry: what each score is, which strings it reads, and how to compute it.

It owns the per-grammar dispatch (molecule targets read SMILES through RDKit, ``expr``
reads expressions), so the commands and the BO problem ask it instead of branching on
grammar names. ``molshape score``, :func:`molshape.score` and ``molshape optimize`` all use
the same table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from molshape.core.errors import InputError
from molshape.grammar.cfg import Grammar
from molshape.grammar.representation import is_molecular
from molshape.scoring.expr_score import WORST, score_with_reason
from molshape.scoring.expr_score import score_many as expr_scores


@dataclass(frozen=True)
class Target:
    """One score.

    Attributes:
        name: ``logp``, ``qed`` or ``expr``.
        molecular: reads SMILES (else expressions).
        higher_is_better: the direction BO optimises.
        max_chars: longest input scored (RDKit's penalized logP of a 100 kB SMILES runs for
            minutes; ZINC's longest is about 120 characters; expressions are bounded by their parser).
        optimisable: ``molshape optimize`` offers it.
        help: one line for ``--help``.
    """

    name: str
    molecular: bool
    higher_is_better: bool
    max_chars: int
    optimisable: bool
    help: str


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("logp", True, True, 1000, True, "GVAE standardised penalized logP (higher is better)"),
    Target("qed", True, True, 1000, True, "QED drug-likeness (higher is better)"),
    Target("sa", True, False, 1000, True, "synthetic accessibility, 1 easy .. 10 hard (lower is better)"),
    Target("clogp", True, True, 1000, True, "Crippen logP (higher is better)"),
    Target("plogp", True, True, 1000, True, "unstandardised penalized logP, logP - SA - ring penalty: the "
           "graph2graph's score (higher is better)"),
    Target("logp_sa", True, True, 1000, True, "Crippen logP - SA: the score of the lead-optimisation file "
           "(higher is better)"),
    Target("expr", False, False, 10_000, True, "GVAE expression score (lower is better)"),
)}
#: targets whose score rows also carry the logP / SA / ring-penalty terms
_WITH_TERMS = ("logp", "plogp", "logp_sa", "clogp", "sa")
#: targets ``molshape optimize`` can optimise
OPTIMIZE_TARGETS = tuple(name for name, t in TARGETS.items() if t.optimisable)


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise InputError(f"unknown target {name!r}; choose from {sorted(TARGETS)}")
    return TARGETS[name]


def default_target(grammar: Grammar) -> str | None:
    """The target optimised by default for a model's grammar (None when there is none)."""
    if is_molecular(grammar):
        return "logp"
    return "expr" if grammar.name == "expr" else None


def fits(target: str, grammar: Grammar) -> bool:
    """Whether a model of ``grammar`` generates the strings ``target`` scores."""
    t = get_target(target)
    return is_molecular(grammar) if t.molecular else grammar.name == target


def too_long(target: str, s: str) -> str | None:
    """The reason a row is not scored because of its length, or None."""
    cap = get_target(target).max_chars
    if len(s) > cap:
        return f"input of {len(s):,} characters is longer than the {cap:,} that --target {target} scores"
    return None


def score_values(target: str, strings: Sequence[str | None], progress: bool = False,
                 workers: int | None = 1) -> np.ndarray:
    """Scores ``[N]`` of decoded strings (``nan`` for invalid molecules; the worst score for expressions)."""
    if get_target(target).molecular:
        from molshape.scoring.chem import score_many  # RDKit is heavy: loaded only when molecules are involved

        return score_many(strings, target, workers=workers, progress=progress)
    return expr_scores(strings)


def score_rows(target: str, strings: list[str], workers: int | None, progress: bool,
               neutralise: bool = False) -> list[dict[str, Any]]:
    """One row per input: input, valid, score (+ logP components for ``logp``), reason.

    Inputs longer than the target's ``max_chars`` are not scored; their row says why.
    ``neutralise`` (molecule targets): score the neutralised molecule (RDKit's uncharger),
    given in a ``smiles`` column after ``input``.
    """
    capped = {i: why for i, s in enumerate(strings) if (why := too_long(target, s)) is not None}
    kept = [s for i, s in enumerate(strings) if i not in capped]
    if neutralise and get_target(target).molecular:
        from molshape.scoring.chem import neutralise as uncharge  # RDKit is heavy: loaded only for molecules

        scored = iter({"input": s, "smiles": r["input"], **{k: v for k, v in r.items() if k != "input"}}
                      for s, r in zip(kept, _score(target, [uncharge(s) or s for s in kept], workers, progress)))
        rows = [_invalid_row(target, s, capped[i]) if i in capped else next(scored) for i, s in enumerate(strings)]
        return [{"input": r["input"], "smiles": r.get("smiles", ""), **r} for r in rows]
    scored = iter(_score(target, kept, workers, progress))
    return [_invalid_row(target, s, capped[i]) if i in capped else next(scored) for i, s in enumerate(strings)]


def _invalid_row(target: str, s: str, reason: str) -> dict[str, Any]:
    if target == "expr":
        return {"input": s, "valid": False, "score": WORST, "reason": reason}
    row: dict[str, Any] = {"input": s, "valid": False, "score": float("nan")}
    if target in _WITH_TERMS:
        row.update(logp=float("nan"), sa=float("nan"), cycle=float("nan"))
    row["reason"] = reason
    return row


def _score(target: str, strings: list[str], workers: int | None, progress: bool) -> list[dict[str, Any]]:
    if not strings:
        return []
    if not get_target(target).molecular:
        rows = []
        for s in strings:
            value, reason = score_with_reason(s)
            rows.append({"input": s, "valid": reason is None, "score": value, "reason": reason or ""})
        return rows
    from molshape.scoring.chem import FIELDS, score_table  # RDKit is heavy: loaded only when molecules are involved

    rows = []
    for r in score_table(strings, workers=workers, progress=progress, with_qed=target == "qed"):
        row = {"input": r.smiles, "valid": r.valid, "score": getattr(r, FIELDS[target])}
        if target in _WITH_TERMS:
            row.update(logp=r.logp, sa=r.sa, cycle=r.cycle)
        row["reason"] = r.reason or ""
        rows.append(row)
    return rows


# -- targets a user brings: a Python callable, or ``module:function`` on the command line --------------------------
@dataclass(frozen=True)
class Objective:
    """A score to optimise: a registered target (``fn`` None) or a user's function.

    ``fn`` maps a list of valid strings to one float per string (``nan`` where it cannot
    score); invalid strings score ``nan`` without it. It is called in-process, never
    through ``eval``.
    """

    name: str
    higher_is_better: bool = True
    fn: Any = None

    def values(self, strings: Sequence[str | None]) -> np.ndarray:
        """Scores ``[N]`` (``nan`` for invalid strings)."""
        if self.fn is None:
            v = score_values(self.name, strings)
            return np.where([s is None for s in strings], np.nan, v)
        keep = [i for i, s in enumerate(strings) if s is not None]  # the function sees valid strings only
        got = np.asarray(self.fn([strings[i] for i in keep]) if keep else [], dtype=np.float64).reshape(-1)
        if got.shape[0] != len(keep):
            raise ValueError(f"target {self.name}: returned {got.shape[0]} scores for {len(keep)} strings")
        out = np.full(len(strings), np.nan)
        out[keep] = got
        return out


def load_callable(spec: str):
    """The function named by ``package.module:function`` (imported, never evaluated).

    Raises:
        ValueError: not of that form, the module does not import, or the name is not callable.
    """
    import importlib
    import re

    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", spec):
        raise ValueError(f"target {spec!r} is neither a known target ({', '.join(TARGETS)}) nor "
                         "'module:function'")
    module, name = spec.split(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"target {spec!r}: cannot import it ({e})") from None
    if not callable(fn):
        raise ValueError(f"target {spec!r} is not callable")
    return fn


def resolve_objectives(target: Any) -> list[Objective]:
    """Objectives of a target spec: a name, ``"logp,qed"``, ``module:function``, a callable
    (higher is better), or a list of these.

    Raises:
        ValueError: an unknown name or a malformed spec.
    """
    if callable(target):
        return [Objective(getattr(target, "__name__", "custom"), True, target)]
    if isinstance(target, (list, tuple)):
        return [o for t in target for o in resolve_objectives(t)]
    if not isinstance(target, str) or not target.strip():
        raise ValueError(f"target must be a name, 'module:function' or a callable, got {target!r}")
    parts = [p.strip() for p in target.split(",")]
    if len(parts) > 1:
        return [o for p in parts for o in resolve_objectives(p)]
    name = parts[0]
    if name in TARGETS:
        return [Objective(name, TARGETS[name].higher_is_better)]
    return [Objective(name, True, load_callable(name))]
