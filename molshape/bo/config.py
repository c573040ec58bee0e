"""The BO protocol's settings as plain dataclasses (no torch, no BoTorch): the library's
defaults, which ``molshape optimize`` reads for its own."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: surrogate kinds
KINDS = ("auto", "exact", "svgp")
STRATEGIES = ("ei", "turbo")
#: initial designs (see molshape.bo.problem.build_problem)
INITS = ("auto", "data", "prior")


@dataclass
class SurrogateConfig:
    """The GP fitted at each iteration; the default is GVAE's sparse variational GP on every
    point (``molshape optimize --protocol gvae``); ``auto`` picks ``exact`` when all points
    fit in ``exact_max``."""

    kind: str = "svgp"          # svgp | exact | auto
    inducing: int = 500         # svgp inducing points (GVAE: 500)
    exact_max: int = 2000       # exact GP: at most this many points (best half + random half)
    full_batch_max: int = 20_000  # svgp: full-batch Adam steps on the ELBO up to here, else minibatches
    steps: int = 300            # svgp full-batch Adam steps
    epochs: int = 20            # svgp minibatch Adam: passes over the data
    lr: float = 0.02            # svgp Adam learning rate
    #: scores below this quantile of the fitted points are raised to it before fitting (None:
    #: as they are); prior samples' long lower tail otherwise dominates the GP's fit of the top
    floor_quantile: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown surrogate {self.kind!r}; choose from {KINDS}")
        if self.floor_quantile is not None and not 0 < self.floor_quantile < 1:
            raise ValueError(f"floor_quantile must be in (0, 1), got {self.floor_quantile}")

    def to_dict(self) -> dict:
        return asdict(self)



@dataclass
class OptimizeConfig:
    """Protocol knobs; defaults are GVAE's (5 iterations x 50 proposals x 10 seeds)."""

    iterations: int = 5
    batch: int = 50
    seeds: int = 10
    seed: int = 0                 # seeds run seed, seed + 1, ..., seed + seeds - 1
    strategy: str = "ei"          # ei (GVAE: greedy batch EI in the box) | turbo
    test_fraction: float = 0.1    # held out per seed for GP test RMSE / log-likelihood
    num_restarts: int = 10        # optimize_acqf restarts per proposal
    raw_samples: int = 512        # optimize_acqf initial candidates per proposal
    mc_samples: int = 128         # quasi-MC samples of qLogEI
    maxiter: int = 100            # L-BFGS-B iterations per restart
    surrogate: SurrogateConfig = field(default_factory=SurrogateConfig)

    def __post_init__(self) -> None:
        if isinstance(self.surrogate, dict):
            self.surrogate = SurrogateConfig(**self.surrogate)
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose from {STRATEGIES}")
        for name in ("iterations", "batch", "seeds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")

    def to_dict(self) -> dict:
        return asdict(self)
