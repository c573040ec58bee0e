"""One BO seed's state (:class:`SeedState`) and its file, ``state/seed_<s>.pt``.

A state holds everything the next iteration needs: the training data in the unit cube of
the box ``[lo, hi]``, the held-out test points, the trust region (TuRBO) and what was
recorded so far. :func:`molshape.bo.loop.step` maps one state to the next; this module
only turns states into files and back. The file is the plain dict of
:meth:`SeedState.to_dict` (tensors, numbers, strings), loaded with ``weights_only=True``.

Example:
    >>> save_state(state, out_dir / "state" / "seed_0.pt")  # doctest: +SKIP
    >>> state = load_state(out_dir / "state" / "seed_0.pt", fingerprint)   # None when absent  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from molshape.bo.trust_region import TrustRegion
from molshape.core.checkpoint import load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)


@dataclass
class SeedState:
    """Where one seed's optimisation stands after ``iteration`` finished iterations.

    Attributes:
        fingerprint: hash of the problem and settings (:func:`~molshape.bo.loop.problem_fingerprint`).
        seed: the seed; iteration ``it`` draws from ``seed * BO_STRIDE + it``.
        iteration: finished iterations.
        lo, hi: ``[d]`` box (latent units) that maps to the unit cube.
        X, Y: ``n x d`` training inputs (unit cube, float64) and ``n x 1`` objectives (maximised;
            invalid proposals carry the worst objective seen before them).
        X_test, Y_test: the held-out points that measure the GP's fit.
        initial_best: best objective of the initial training data.
        turbo: the trust region (``strategy="turbo"``), else ``None``.
        records: one plain dict per proposal (``seed``, ``iteration``, ``index``, ``valid``,
            ``string``, ``score``, ...; ``None`` for a missing score).
        metrics: one dict per iteration (GP test ``rmse`` / ``loglik``, timings, ``n_train``, ``pid``).
    """

    fingerprint: str
    seed: int
    iteration: int
    lo: Tensor
    hi: Tensor
    X: Tensor
    Y: Tensor
    X_test: Tensor
    Y_test: Tensor
    initial_best: float
    turbo: TrustRegion | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The file's dict: the fields as they are, the trust region as a plain dict."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["turbo"] = None if self.turbo is None else self.turbo.to_dict()
        d["records"] = [dict(r) for r in self.records]
        d["metrics"] = [dict(m) for m in self.metrics]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SeedState:
        """The inverse of :meth:`to_dict`.

        Raises:
            ValueError: a key is missing or unknown (a state file of another format), naming them.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        unknown, missing = sorted(set(d) - set(names)), [n for n in names if n not in d]
        if unknown or missing:
            parts = ([f"unknown keys {unknown}"] if unknown else []) + ([f"missing keys {missing}"] if missing else [])
            raise ValueError(f"not a BO seed state of this molshape version ({'; '.join(parts)})")
        values = dict(d)
        values["turbo"] = None if d["turbo"] is None else TrustRegion.from_dict(d["turbo"])
        values["records"] = [dict(r) for r in d["records"]]
        values["metrics"] = [dict(m) for m in d["metrics"]]
        return cls(**values)


def state_path(out_dir: str | Path, seed: int) -> Path:
    """Where seed ``seed``'s state lives in a run folder."""
    return Path(out_dir) / "state" / f"seed_{seed}.pt"


def save_state(state: SeedState, path: str | Path) -> Path:
    """Write ``state`` atomically (a killed write leaves the previous state)."""
    return save_checkpoint(state.to_dict(), path)


def load_state(path: str | Path, fingerprint: str) -> SeedState | None:
    """The state saved at ``path`` (``None`` when there is none).

    Raises:
        ValueError: the file belongs to another run (other problem or settings) or is not a
            seed state of this version; the sentence names the file and what to do.
    """
    path = Path(path)
    if not path.exists():
        return None
    raw = load_checkpoint(path)
    if raw.get("fingerprint") != fingerprint:
        raise ValueError(f"{path}: state of a different run (other checkpoint, data or settings); "
                         "use a new output folder or delete the state folder to start over")
    try:
        state = SeedState.from_dict(raw)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: {e}; use a new output folder or delete the state folder to start over") from None
    log.info("seed %d: resuming after iteration %d", state.seed, state.iteration)
    return state
