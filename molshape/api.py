"""molshape's Python API: load a model, encode, decode, sample, evaluate, score and optimise.

Everything here is also reachable as ``molshape.<name>`` (``molshape.load``,
``molshape.score``, ``molshape.evaluate``, ``molshape.optimize``); the CLI commands call
these same functions.

Nothing here writes a file unless given a folder (``out_dir=``); long calls take ``progress=True``.

Stereochemistry: the default SMILES model (Kekulé grammar) strips it on ``encode`` (``@``, ``/``
and ``\\`` are dropped, aromatic rings written with alternating bonds), so stereoisomers share a
latent point and decodes carry none. Decodes keep ZINC's protonation states unless
``neutralise=True`` (RDKit's uncharger).

Example::

    import molshape
    m = molshape.load("zinc")                    # shipped name or checkpoint path
    print(m)                                     # Model(zinc-kekule-gmm-cpu, grammar smiles_kekule, latent 56, ...)
    z = m.encode(["CCO", "c1ccccc1"])            # tensor [2 x d]
    m.decode(z)                                  # 2 SMILES (None where invalid; .reasons says why)
    m.sample(100, seed=0, neutralise=True)       # decoded prior samples, charges neutralised
    m.reconstruct(["CCO"], mode="beam")          # encode, then decode back (argmax, beam or gvae)
    m.evaluate(n=1000)                           # summary dict (m.evaluate("runs/eval", ...) also writes files)
    molshape.score(["CCO"], target="logp")       # Table (a pandas DataFrame that prints in full)
    r = molshape.optimize(m, target="logp", seeds=1, iterations=3, batch=20, progress=True)
    r.top(5)                                     # best distinct proposals, complete SMILES and scores
    s = molshape.screen("zinc", "runs/lib", n=20_000, keep=["qed>=0.6"], targets=["logp", "qed"], workers=2)
    s.top(), s.library()                         # best kept molecules; every kept molecule
    molshape.decode(m, 100_000, "lib.smi", workers=8)          # decode --n in chunks, on Dask; same lines in-process
    molshape.score_to_csv(smiles, "scores.csv", target="qed")  # score --input in chunks (scheduler=... for Dask)
"""

from __future__ import annotations

import dataclasses
import operator
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd
import torch
from torch import Tensor, nn

from molshape import pretrained
from molshape.bo.loop import OptimizeConfig
from molshape.bo.optimize import optimize as run_optimize
from molshape.bo.constrained import SearchConfig
from molshape.bo.lead_optimize import optimize_search
from molshape.bo.leads import SearchSpec, read_leads
from molshape.bo.outcomes import parse_constraint
from molshape.bo.surrogate import SurrogateConfig
from molshape.core.errors import InputError, LatentError, MolshapeError  # noqa: F401 (api.LatentError, api.MolshapeError)
from molshape.core.runtime import resolve_device
from molshape.grammar.cfg import Grammar
from molshape.grammar.representation import is_molecular
from molshape.gvae import generation as gen
from molshape.gvae.beam_decoding import decode_beam
from molshape.gvae.evaluation import evaluate_model, evaluation_data, held_out
from molshape.gvae.latent_quality import (LATENT_N, REFINE_N, SIGMAS, LatentOptions, gvae_samples_for, latent_limit,
                                          refine_steps_for,
                                          latent_quality)
from molshape.gvae.latent_refinement import REFINE_STEPS, Refined, RefineOptions, refine_latents
from molshape.gvae.latent_sources import SourceChunk, decode_source
from molshape.gvae.checkpoint import GrammarMismatch, ModelCheckpoint  # noqa: F401 (GrammarMismatch: api.GrammarMismatch)
from molshape.scoring.targets import TARGETS, Objective, default_target, get_target, resolve_objectives, score_rows
from molshape.screening import decode_stream, score_stream
from molshape.screening.decode_stream import neutralised
from molshape.screening.run import ScreenResult
from molshape.screening.run import screen as run_screen

#: short names accepted by :func:`load` -> the grammar whose shipped default model they mean
#: (``zinc``: the default SMILES model, Kekulé grammar; ``smiles``: GVAE's grammar)
ALIASES = {"zinc": "smiles_kekule", "smiles_kekule": "smiles_kekule", "smiles": "smiles", "expr": "expr"}


class Table(pd.DataFrame):
    """A pandas DataFrame that prints every column and complete strings (SMILES are never cut)."""

    @property
    def _constructor(self) -> type:
        return Table

    def __repr__(self) -> str:
        with pd.option_context("display.max_colwidth", None, "display.max_columns", None,
                               "display.expand_frame_repr", False, "display.max_rows", 200):
            return super().__repr__()

    __str__ = __repr__


def as_strings(value: str | Sequence[str], name: str = "strings") -> list[str]:
    """``value`` as a list of strings: one string is one item (never split into characters).

    Raises:
        InputError: ``value`` is bytes, not a sequence, or holds an item that is not a string.
    """
    if isinstance(value, str):
        return [value]
    if isinstance(value, (bytes, bytearray)):
        raise InputError(f"{name}: got bytes; decode them to str first (e.g. data.decode('utf-8'))")
    try:
        items = list(value)
    except TypeError:
        raise InputError(f"{name}: expected a string or a list of strings, got {type(value).__name__}") from None
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InputError(f"{name}: item {i + 1} is {type(item).__name__}, not a string")
    return items


def _count(n: object, name: str = "n") -> int:
    """``n`` as a non-negative int (bools and floats refused: ``sample(1e3)`` is a mistake to say)."""
    if isinstance(n, (bool, float)):
        raise InputError(f"{name} must be a whole number, got {type(n).__name__} {n!r}")
    try:
        n = operator.index(n)
    except TypeError:
        raise InputError(f"{name} must be a whole number, got {type(n).__name__}") from None
    if n < 0:
        raise InputError(f"{name} must be >= 0, got {n}")
    return n


def resolve_model(name_or_path: str | Path) -> Path:
    """Checkpoint path of a shipped model name (``zinc-gmm-cpu``), an alias (``zinc``,
    ``expr``: the shipped default for that grammar) or a checkpoint file."""
    name = str(name_or_path)
    if name in pretrained.available():
        return pretrained.checkpoint_path(name)
    if name in ALIASES and not Path(name).exists():
        return pretrained.default_checkpoint(ALIASES[name])
    path = Path(name_or_path)
    if path.is_dir():
        raise FileNotFoundError(f"{path} is a directory; give a checkpoint file such as {path / 'best.pt'}")
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint file or shipped model: {name} (shipped: "
                                f"{', '.join(pretrained.available())}; aliases: {', '.join(ALIASES)})")
    return path


def open_model(path: str | Path, device: str | torch.device = "cpu",
               grammar: str | None = None) -> tuple[nn.Module, Grammar, ModelCheckpoint]:
    """Read a checkpoint once, check it (a molshape grammar model, known format, grammar file
    unchanged) and rebuild its model with the saved weights.

    Args:
        grammar: when given, the checkpoint must have been trained on this grammar (``smiles`` is
            GVAE's grammar everywhere, ``smiles_kekule`` the Kekulé grammar).

    Returns:
        ``(model in eval mode, grammar, checkpoint)``.

    Raises:
        CheckpointError: not a usable model checkpoint. GrammarMismatch: another grammar.
    """
    ckpt = ModelCheckpoint.load(path, grammar)
    return ckpt.to_model(device), ckpt.grammar, ckpt


@dataclass
class Model:
    """A trained grammar autoencoder with its grammar and checkpoint (see :func:`load`).

    Attributes:
        net: the torch module (eval mode). grammar: its :class:`~molshape.grammar.cfg.Grammar`.
        checkpoint: the :class:`~molshape.gvae.checkpoint.ModelCheckpoint` (configs, split,
        history). path: the checkpoint file.
    """

    net: nn.Module
    grammar: Grammar
    checkpoint: ModelCheckpoint
    path: Path

    @property
    def latent_dim(self) -> int:
        return int(self.net.config.latent_dim)

    @property
    def name(self) -> str:
        """The shipped model's name, or the checkpoint path."""
        return self.path.stem if self.path.parent == pretrained.pretrained_dir() else str(self.path)

    def __repr__(self) -> str:
        params = sum(p.numel() for p in self.net.parameters())
        return (f"Model({self.name}, grammar {self.grammar.name}, latent {self.latent_dim}, "
                f"{params:,} parameters, {self.net.config.objective.name})")

    @property
    def device(self) -> torch.device:
        return gen.model_device(self.net)

    def encode(self, strings: Sequence[str], batch_size: int = 1000, refine: int = 0) -> Tensor:
        """Latents ``z [N x d]`` (CPU, float32) of ``strings`` (SMILES or expressions); one
        string is one input (``encode("CCO")`` is ``[1 x d]``).

        ``refine=k`` refines each encoder latent for up to k steps until it decodes back to its
        input (:meth:`refine`); 0 is the encoder's latent.

        Raises:
            GrammarError: an input does not parse (the message names its position).
            InputError: ``strings`` is not a string or a list of strings.
        """
        if refine:
            return self.refine(strings, refine).z
        return gen.encode_strings(self.net, self.grammar, as_strings(strings), batch_size)

    def refine(self, strings: Sequence[str], steps: int = REFINE_STEPS, lr: float = RefineOptions.lr,
               prior_quantile: float | None = None, progress: bool = False) -> Refined:
        """Latents that decode back to ``strings``: the encoder's, refined by gradient steps on the
        decoder's likelihood of each input until its argmax decode is the input (checked every
        ``RefineOptions.check_every`` steps) or ``steps`` run out. ``prior_quantile=0.99`` keeps each
        latent inside the ball holding 99 % of its nearest prior component's mass (where the
        searches propose), at some cost in exact decodes.

        Returns:
            :class:`Refined`: ``z [N x d]``, ``exact [N]`` (decodes back), ``steps``, NLL and norm before / after.

        Raises:
            GrammarError: an input does not parse (the message names its position).

        Example:
            >>> r = molshape.load("zinc").refine(["CC(=O)Oc1ccccc1C(=O)O"])  # doctest: +SKIP
            >>> bool(r.exact[0]), molshape.load("zinc").decode(r.z)[0]  # doctest: +SKIP
        """
        rules = gen.parse_strings(self.grammar, as_strings(strings))
        options = RefineOptions(steps=_count(steps, "steps"), lr=lr, prior_quantile=prior_quantile)
        return refine_latents(self.net, self.grammar, rules, options, progress=progress)

    def encode_many(self, strings: Sequence[str], batch_size: int = 1000, progress: bool = False,
                    refine: int = 0) -> gen.EncodedInputs:
        """Latents of the ``strings`` that parse, skipping the others: ``(z [N_ok x d], index, failed,
        exact)`` with ``index`` the input position of each row of ``z``, ``failed`` ``(position, string,
        reason)`` per skipped input and, with ``refine=k`` (see :meth:`refine`), ``exact`` whether each
        latent decodes back to its input (what ``molshape encode`` writes)."""
        if not refine:
            return gen.encode_inputs(self.net, self.grammar, list(strings), batch_size, progress)
        parsed = gen.parse_inputs(self.grammar, list(strings), progress)
        if not parsed.index:
            return gen.EncodedInputs(torch.zeros(0, self.latent_dim), [], parsed.failed, torch.zeros(0, dtype=torch.bool))
        out = refine_latents(self.net, self.grammar, parsed.rules, RefineOptions(steps=_count(refine, "refine")),
                             progress=progress)
        return gen.EncodedInputs(out.z, parsed.index, parsed.failed, out.exact)

    def decode(self, z: Tensor, mode: str = "argmax", attempts: int = 1, seed: int | None = None,
               constraints: str = "auto", batch_size: int = 2000, neutralise: bool = False,
               progress: bool = False) -> gen.Decoded:
        """Strings of latents ``z [N x d]``: a list of N strings, ``None`` where invalid or
        incomplete, with ``.reasons`` (why each failed) and ``.raw`` (the decoded form).

        ``mode="sample"`` with ``attempts=k`` keeps the most frequent valid of k sampled decodes;
        ``neutralise=True`` neutralises charged molecules (RDKit's uncharger).

        Raises:
            LatentError: ``z`` is not ``N x d`` floating point, or holds NaN or infinity.
        """
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        decoded = gen.decode_latents(self.net, self.grammar, z, mode=mode, attempts=attempts, generator=generator,
                                     batch_size=batch_size, constraints=constraints, progress=progress)
        return neutralised(decoded) if neutralise else decoded

    def reconstruct(self, strings: Sequence[str], mode: str = "argmax", beam_width: int = 5, samples: int = 10,
                    seed: int = 0, constraints: str = "auto", batch_size: int = 1000) -> gen.Decoded:
        """Encode ``strings`` and decode them back: one result per input, ``None`` where the decode
        failed (``.reasons`` says why).

        Args:
            mode: ``argmax`` (the most likely rule at each step), ``beam`` (the most likely complete
                derivation a beam of ``beam_width`` finds; never less likely than argmax's) or
                ``gvae`` (the most frequent valid result of ``samples`` sampled decodes, seeded by ``seed``).

        Raises:
            GrammarError: an input does not parse (the message names its position).

        Example:
            >>> molshape.load("expr").reconstruct(["x*sin(x)", "1+x"], mode="beam", beam_width=3)  # doctest: +SKIP
        """
        z = self.encode(strings, batch_size)
        if mode == "beam":
            return decode_beam(self.net, self.grammar, z, beam_width, max(1, batch_size // max(beam_width, 1)),
                                   constraints=constraints).decoded
        if mode == "gvae":
            return self.decode(z, "sample", samples, seed, constraints, batch_size)
        if mode != "argmax":
            raise ValueError(f"mode must be 'argmax', 'beam' or 'gvae', got {mode!r}")
        return self.decode(z, "argmax", 1, None, constraints, batch_size)

    def latents(self, n: int, component: int | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        """``n x d`` draws from the prior, or from its mixture component ``component``."""
        n = _count(n)
        if component is None:
            return gen.prior_latents(self.net, n, generator)
        component = _count(component, "component")
        try:
            return gen.component_latents(self.net, component, n, generator)
        except (ValueError, AttributeError) as e:  # out of range, or a prior without components
            raise InputError(f"component: {e}") from None

    def sample(self, n: int, component: int | None = None, seed: int = 0, **decode: Any) -> gen.Decoded:
        """Decoded prior samples (``component``: from one mixture component); see :meth:`decode`."""
        z = self.latents(n, component, torch.Generator().manual_seed(seed))
        return self.decode(z, **decode)

    def decode_source(self, source: str = "prior", n: int = 1000, *, component: int | None = None,
                      between: tuple[str, str] | None = None, steps: int = 10, inputs: Sequence[str] | None = None,
                      data: str | Path | None = None, mode: str = "argmax", attempts: int = 1,
                      batch_size: int = 1000, constraints: str = "auto", generator: torch.Generator | None = None,
                      neutralise: bool = False, progress: bool = False, refine: int = 0) -> Iterator[SourceChunk]:
        """Decoded latents of ``source``, chunk by chunk (what ``molshape decode`` writes).

        Args:
            source: ``prior``, ``component`` (mixture ``component``), ``expost`` (the ex-post
                GMM of the training latents; ``data``: the training file) draw ``n`` latents,
                decoded 50,000 at a time; ``interpolate`` decodes ``steps`` latents on the line
                ``between`` two strings; ``input`` reconstructs ``inputs``.
            refine: ``interpolate`` / ``input``: refine the encoded latents for up to this many steps
                first (:meth:`refine`: the ends or inputs then decode back where the decoder can).
            generator: seeds both the latents drawn and the sampling noise.
            neutralise: neutralise charged molecules (RDKit's uncharger).

        Returns:
            an iterator of :class:`~molshape.gvae.latent_sources.SourceChunk` (``lines``: the string
            or ``# <reason>`` per result, ``reasons``, ``decoded``), lazily: nothing is
            computed before the first chunk is asked for.

        Raises:
            SourceError: a source without what it needs (``component`` without a component, ...).

        Example:
            >>> m = molshape.load("expr")  # doctest: +SKIP
            >>> [line for c in m.decode_source("interpolate", between=("x", "sin(x)"), steps=5) for line in c.lines]  # doctest: +SKIP
        """
        if between is not None:
            between = tuple(as_strings(between, "between"))
            if len(between) != 2:
                raise InputError(f"between: expected two strings, got {len(between)}")
        chunks = decode_source(self.net, self.grammar, self.checkpoint, self.path, source, n, component=component,
                               ends=between, steps=steps,
                               inputs=None if inputs is None else as_strings(inputs, "inputs"), data=data,
                               mode=mode, attempts=attempts, batch_size=batch_size, generator=generator,
                               constraints=constraints, progress=progress, refine=_count(refine, "refine"))
        return (_neutralised_chunk(c) for c in chunks) if neutralise else chunks

    def latent_metrics(self, out_dir: str | Path | None = None, *, split: str = "test", limit: int = LATENT_N,
                       data: str | Path | None = None, beam_width: int = 5, gvae_samples: int = 10,
                       sigmas: Sequence[float] = SIGMAS, nll: bool = True, refine_steps: int = REFINE_STEPS,
                       refine_limit: int = REFINE_N, constraints: str = "auto", seed: int = 0,
                       batch_size: int = 1000, progress: bool = False) -> dict[str, Any]:
        """The latent metrics alone (``summary["latent"]`` of :func:`evaluate`) on the first ``limit``
        molecules of the checkpoint's ``split`` (without the data set, of a shipped model's shipped
        test slice); the PNGs go to ``out_dir`` when given.

        Example:
            >>> molshape.load("expr").latent_metrics(limit=200)["recon"]["argmax"]  # doctest: +SKIP
        """
        prepared = evaluation_data(self.checkpoint, self.grammar, data)
        rules, lengths, _ = held_out(self.checkpoint, self.grammar, prepared, split, limit)
        options = LatentOptions(limit=limit, beam_width=beam_width, gvae_samples=gvae_samples, nll=nll,
                                sigmas=tuple(sigmas), pictures=out_dir is not None, seed=seed,
                                refine_steps=refine_steps, refine_limit=refine_limit)
        return latent_quality(self.net, self.grammar, rules, lengths, options,
                              out_dir=None if out_dir is None else Path(out_dir), batch_size=batch_size,
                              constraints=constraints, progress=progress)

    def evaluate(self, out_dir: str | Path | None = None, **options: Any) -> dict[str, Any]:
        """Reconstruction, prior-sample quality and latent shape of this model (``options``: see :func:`evaluate`).

        Example:
            >>> molshape.load("zinc").evaluate(n=200)["samples"]["moses"]["intdiv1"]  # doctest: +SKIP
        """
        return evaluate(self, out_dir, **options)


def _neutralised_chunk(chunk: SourceChunk) -> SourceChunk:
    decoded = neutralised(chunk.decoded)
    fixed = iter(s for s in decoded if s is not None)
    lines = [line if why is not None else next(fixed) for line, why in zip(chunk.lines, chunk.reasons)]
    return SourceChunk(lines, chunk.reasons, decoded)


def load(name_or_path: str | Path = "zinc", device: str = "cpu") -> Model:
    """Load a shipped model or a checkpoint.

    Args:
        name_or_path: ``zinc`` (the default SMILES model, ``zinc-kekule-gmm-cpu``), ``expr``, a
            grammar name (``smiles_kekule``, ``smiles``: GVAE's grammar, ``zinc-gmm-cpu``), a shipped
            name (``zinc-gmm-cpu``, ``expr-gmm-cpu``, ...) or a ``best.pt`` / ``last.pt`` path.
        device: ``cpu``, ``cuda``, ``cuda:1`` or ``auto``.

    Example:
        >>> m = molshape.load("expr")  # doctest: +SKIP
        >>> z = m.encode(["x*sin(x)", "1+x"])     # [2 x 25]  # doctest: +SKIP
        >>> m.decode(z)                            # 2 expressions (None where a decode fails)  # doctest: +SKIP
    """
    path = resolve_model(name_or_path)
    net, grammar, ckpt = open_model(path, resolve_device(device))
    return Model(net, grammar, ckpt, path)


def score(strings: Sequence[str], target: str = "logp", workers: int | None = None, neutralise: bool = False,
          progress: bool = False) -> Table:
    """Scores of molecules (``logp``: GVAE penalized logP with its logp / sa / cycle terms;
    ``qed``) or expressions (``expr``: GVAE expression score, lower is better).

    Args:
        neutralise: neutralise charged molecules first (RDKit's uncharger); ``input`` keeps
            the string given, ``smiles`` the neutralised one that was scored.

    Returns:
        One row per input (one string is one input): ``input, [smiles,] valid, score, [logp, sa,
        cycle,] reason``, as a :class:`Table` (prints complete SMILES).

    Raises:
        InputError: ``strings`` is not a string or a list of strings. ValueError: an unknown target.
    """
    get_target(target)
    return Table(score_rows(target, as_strings(strings), workers, progress=progress, neutralise=neutralise))


def evaluate(model: Model, out_dir: str | Path | None = None, *, split: str = "test", n: int = 10_000,
             limit: int | None = None, data: str | Path | None = None, with_fcd: bool = True, batch_size: int = 1000,
             mode: str = "argmax", constraints: str = "auto", seed: int = 0, progress: bool = False,
             latent: bool = True, beam_width: int = 5, gvae_samples: int | None = None,
             sigmas: Sequence[float] = SIGMAS, refine_steps: int | None = None,
             refine_limit: int = REFINE_N) -> dict[str, Any]:
    """What ``molshape evaluate`` measures: reconstruction of the held-out ``split`` (its first
    ``limit`` rows), the latent metrics (``summary["latent"]``, see
    :mod:`molshape.gvae.latent_quality`), validity / uniqueness / novelty of ``n`` decoded prior
    samples, the latents' KS statistics against the prior and, for molecules, failure
    categories, realism, FCD and the MOSES metrics (IntDiv1/2, SNN, Frag, Scaf).

    Without the data set, a shipped model is evaluated on the statistics shipped with molshape
    and a shipped slice of its test split (``summary["reconstruction"]["held_out"]`` says so).

    Args:
        out_dir: where ``samples.txt``, ``latents.png``, ``summary.json`` (and for molecules
            ``properties.png``, ``samples.png``) go; default: nothing is written.
        data: the checkpoint's training data file (default: the standard data set, when found),
            also the ZINC file for the molecule reference.
        with_fcd: compute the Frechet ChemNet Distance (molecules).
        seed: seeds the samples (through a generator of its own: the global generators are left alone).
        latent: compute the latent metrics, on the first ``limit`` held-out rows (default: as many
            as prior samples ``n``, at most 2,000, so that a small ``n`` stays quick):
            exact reconstruction by argmax, by a beam of ``beam_width`` (0 skips it) and by the
            GVAE protocol with ``gvae_samples`` sampled decodes (0 skips it; default 10, or 0
            when ``n`` is under 2,000), round-trip
            similarity, teacher-forced NLL with own / shuffled / zero latents, the
            neighbourhood curve at latent noise ``sigmas``, and refined encodings of the first
            ``refine_limit`` molecules, ``refine_steps`` steps at most (0 skips them; default 300,
            or 0 when ``n`` is under 2,000).

    Returns:
        the summary (``summary["samples"]["validity"]``, ``summary["reconstruction"]``, ...).

    Raises:
        ValueError: the data found is not the data the checkpoint was trained on.

    Example:
        >>> s = molshape.load("zinc").evaluate(n=200)  # doctest: +SKIP
        >>> s["samples"]["validity"], s["reconstruction"]["recon_sequence"], s["samples"]["moses"]["snn"]  # doctest: +SKIP
    """
    generator = torch.Generator().manual_seed(seed)
    prepared = evaluation_data(model.checkpoint, model.grammar, data)
    options = (LatentOptions(limit=latent_limit(n, limit), beam_width=beam_width,
                             gvae_samples=gvae_samples_for(n, gvae_samples), sigmas=tuple(sigmas), seed=seed,
                             refine_steps=refine_steps_for(n, refine_steps), refine_limit=refine_limit)
               if latent else None)

    def run(out: Path) -> dict[str, Any]:
        return evaluate_model(model.net, model.grammar, model.checkpoint, prepared, out, checkpoint_path=model.path,
                              device=str(model.device), split=split, n=n, limit=limit, data=data, with_fcd=with_fcd,
                              batch_size=batch_size, mode=mode, constraints=constraints, seed=seed,
                              generator=generator, progress=progress, latent=options)

    if out_dir is not None:
        return run(Path(out_dir))
    with tempfile.TemporaryDirectory(prefix="molshape-evaluate-") as tmp:
        summary = run(Path(tmp))
    summary.pop("files", None)
    return summary


@dataclass
class OptimizeResult:
    """What :func:`optimize` returns: the summary, every proposal, and the run folder (None
    when nothing was written)."""

    summary: dict[str, Any]
    proposals: pd.DataFrame
    out_dir: Path | None = None
    higher_is_better: bool = field(default=True)

    def __repr__(self) -> str:
        s = self.summary
        where = f", in {self.out_dir}" if self.out_dir is not None else ""
        return (f"OptimizeResult(target {s.get('target')}, {len(self.proposals)} proposals, best "
                f"{s['top'][0]['score']:.3f} {s['top'][0]['string']}{where})" if s.get("top")
                else f"OptimizeResult(target {s.get('target')}, {len(self.proposals)} proposals, none valid{where})")

    def leads(self) -> Table:
        """One row per lead (``leads.csv``) of a run ``from_`` leads (needs ``out_dir``)."""
        if self.out_dir is None:
            raise ValueError("leads(): this run wrote no folder; pass out_dir= to keep leads.csv")
        return Table(pd.read_csv(self.out_dir / "leads.csv"))

    def to_frame(self) -> Table:
        """Every proposal (``proposals.csv``): seed, iteration, index, valid, string, score, ..."""
        return Table(self.proposals)

    def top(self, k: int = 10) -> Table:
        """The ``k`` best distinct valid proposals: rank, string (complete SMILES), score, QED
        for molecules, seed and iteration."""
        df = self.proposals
        df = df[df["valid"].astype(bool)].sort_values("score", ascending=not self.higher_is_better, kind="stable")
        df = df.drop_duplicates("string").head(k).reset_index(drop=True)
        cols = ["string", "score"] + [c for c in ("qed",) if c in df.columns] + ["seed", "iteration"]
        if "qed" not in df.columns and self.summary.get("target") in ("logp", "qed") and len(df):
            # RDKit is heavy: loaded only when molecules are involved
            from molshape.scoring.chem import qed

            df = df.assign(qed=[round(qed(s), 3) for s in df["string"]])
            cols.insert(2, "qed")
        out = Table(df[cols])
        out.insert(0, "rank", range(1, len(out) + 1))
        return out


def optimize(model: Model, target: Any = None, out_dir: str | Path | None = None, *,
             config: OptimizeConfig | None = None, init: str = "auto", n_init: int | None = None,
             data: str | Path | None = None, attempts: int = 1, constraints: str = "auto",
             device: str | torch.device = "cpu", workers: int = 1, worker_threads: int = 1,
             progress: bool = False, from_: str | Path | Sequence[str] | None = None,
             similarity: float | None = None, constraint: Sequence[str] | str | None = None,
             search: SearchConfig | None = None, prior_quantile: float | None = None,
             realism_gate: bool = True, record: dict[str, Any] | None = None, **options: Any) -> OptimizeResult:
    """Latent Bayesian optimisation of ``target`` (default: ``logp`` for SMILES models,
    ``expr`` for expressions) with a loaded model.

    ``target`` is a name that :func:`score` knows, several joined by commas (``"logp,qed"``:
    a Pareto front by qNEHVI), ``"module:function"`` or a Python callable (list of strings ->
    scores, higher is better). With ``from_`` (a SMILES, a file of them, or a list),
    ``similarity`` (Tanimoto to the lead ``>=`` it, modelled as a constraint), ``constraint``
    (``"qed>=0.5"``, several allowed), several objectives or a callable, the search is the
    constrained one of :mod:`molshape.bo.leads` sized by ``search``
    (:class:`~molshape.bo.constrained.SearchConfig`: ``budget`` oracle calls per lead, ...).
    Several objectives from the prior search a pool of ``pool_size`` decoded prior samples
    with a Tanimoto GP (``space="pool"``, :mod:`molshape.bo.pool`) unless ``space="latent"``.

    Example:
        >>> r = molshape.optimize(m, "plogp", from_="CCOc1ccccc1", similarity=0.4, search=SearchConfig(budget=40))  # doctest: +SKIP
        >>> r.leads()[["lead", "best", "similarity", "improvement"]]  # doctest: +SKIP

    Args:
        config: the protocol (:class:`~molshape.bo.loop.OptimizeConfig`); or give its fields
            as keyword ``options`` (``seeds=1, iterations=3, batch=20``, ``surrogate=
            SurrogateConfig(...)`` or a dict).
        out_dir: run folder, written as ``molshape optimize --out`` writes it (``config.json``,
            ``proposals.csv``, ``summary.json``, pictures, resume state), locked for the run; a
            folder holding the same run resumes it, another non-empty folder is refused.
            Default: nothing is written (a temporary folder, removed after).
        init / n_init / data / attempts / constraints / prior_quantile: see
            :func:`molshape.bo.problem.build_problem`.
        realism_gate: latent BO of a molecule target rejects, unscored, every decoded molecule
            with a ring of more than 8 atoms, a triple bond in a ring or a 3-membered aromatic
            ring (:mod:`molshape.bo.realism_gate`); ``False`` scores every decode. The
            constrained, lead and pool searches do not use it.
        record: entries of ``config.json`` that say how the run was started (default:
            ``{"api": "molshape.optimize"}``; ``molshape optimize`` records its command line).

    The defaults are those of ``molshape optimize --protocol gvae``: GVAE's protocol
    (:class:`~molshape.bo.loop.OptimizeConfig`, a sparse variational GP).

    Returns:
        :class:`OptimizeResult` (``.summary``, ``.top(k)``, ``.to_frame()``).

    Raises:
        RunLocked: another run is writing to ``out_dir``.
        OutputRefused: ``out_dir`` holds other files, or a run with other settings.
    """
    target = target or default_target(model.grammar)
    if target is None:
        raise ValueError(f"model grammar {model.grammar.name!r} has no default target; pass target=")
    objectives = resolve_objectives(target)
    if (from_ is not None or similarity is not None or constraint or search is not None or len(objectives) > 1
            or objectives[0].fn is not None):
        return _optimize_search(model, objectives, out_dir, from_=from_, similarity=similarity, constraint=constraint,
                                search=search, constraints=constraints, workers=workers, threads=worker_threads,
                                progress=progress, record=record)
    if config is None:
        if isinstance(options.get("surrogate"), dict):
            options["surrogate"] = SurrogateConfig(**options["surrogate"])
        config = OptimizeConfig(**options)
    elif options:
        config = dataclasses.replace(config, **options)
    higher = get_target(target).higher_is_better

    def run(out: Path) -> dict[str, Any]:
        return run_optimize(model.net, model.grammar, target, config, out, checkpoint=model.checkpoint,
                            checkpoint_path=model.path, init=init, n_init=n_init, data=data, attempts=attempts,
                            device=device, progress=progress, workers=workers, worker_threads=worker_threads,
                            constraints=constraints, prior_quantile=prior_quantile, realism_gate=realism_gate,
                            record={"api": "molshape.optimize"} if record is None else record)

    if out_dir is None:
        with tempfile.TemporaryDirectory(prefix="molshape-optimize-") as tmp:
            summary = run(Path(tmp))
            proposals = pd.read_csv(Path(tmp) / "proposals.csv")
        for key in [k for k, v in summary.items() if isinstance(v, str) and v.startswith(tmp)]:
            summary.pop(key)  # files of the temporary folder, gone now
        return OptimizeResult(summary, proposals, None, higher)
    out = Path(out_dir)
    summary = run(out)
    return OptimizeResult(summary, pd.read_csv(out / "proposals.csv"), out, higher)


def screen(model: Model | str | Path = "zinc", out: str | Path = "runs/screen", n: int = 10_000,
           **options: Any) -> ScreenResult:
    """What ``molshape screen`` does: ``n`` prior (or component) samples decoded, deduplicated
    by canonical SMILES, scored, filtered and ranked, in chunks, written as partitioned Parquet.

    Args:
        model: a loaded :class:`Model`, a shipped name or a checkpoint path (loaded on CPU).
        out: the run folder (``library/part-*.parquet``, ``top.csv``, ``summary.json``, ...).
        options: see :func:`molshape.screening.run.screen`: ``seed``, ``keep=["qed>=0.6", "sa<=3"]``,
            ``targets``, ``top``, ``by``, ``chunk_size``, ``partitions``, ``source``, ``component``,
            ``mode``, ``attempts``, ``constraints``, ``scheduler="tcp://host:8786"`` or ``workers=N``
            (Dask; the rows are the same as in-process), ``resume``, ``force``, ``progress``.

    Returns:
        :class:`~molshape.screening.run.ScreenResult` (``.summary``, ``.top()``, ``.library()``).

    Example:
        >>> r = molshape.screen("zinc", "runs/lib", n=2000, keep=["qed>=0.6"], by="qed", top=10)  # doctest: +SKIP
        >>> r.summary["kept"], r.top().smiles[0]  # doctest: +SKIP
    """
    m = model if isinstance(model, Model) else load(model, "cpu")
    return run_screen(m, out, n, **options)


def decode(model: Model | str | Path = "zinc", n: int = 1000, output: str | Path | None = None,
           **options: Any) -> dict[str, Any]:
    """What ``molshape decode --n`` does: ``n`` latents of the prior (a component, the ex-post
    GMM) decoded in chunks, in this process or on Dask, one line per draw in draw order.

    Chunk 0 is drawn with ``seed`` itself and chunk ``i`` with a seed derived from ``seed`` and
    ``i``, so the lines are the same on any engine and with any number of workers, and a run of
    at most ``chunk_size`` (5,000) latents is ``Model.sample(n, seed=seed)`` (argmax).

    Args:
        model: a loaded :class:`Model`, a shipped name or a checkpoint path (loaded on CPU).
        output: the file (written through ``<output>.partial``, which ``resume=True`` continues);
            None: the lines are in the summary's ``results``.
        options: see :func:`molshape.screening.decode_stream.decode`: ``seed``, ``source``,
            ``component``, ``data``, ``mode``, ``attempts``, ``constraints``, ``batch_size``,
            ``neutralise``, ``chunk_size``, ``workers=N`` or ``scheduler="tcp://host:8786"`` (Dask;
            the lines are the same as in-process), ``threads``, ``resume``, ``progress``.

    Returns:
        the summary (``n, valid, unique, incomplete, invalid``, engine, chunks, times).

    Example:
        >>> molshape.decode("zinc", 100_000, "lib.smi", seed=0, workers=8)["valid"]  # doctest: +SKIP
    """
    m = model if isinstance(model, Model) else load(model, "cpu")
    return decode_stream.decode(m, _count(n), output, **options)


def score_to_csv(strings: Sequence[str], output: str | Path | None, target: str = "logp",
                 **options: Any) -> dict[str, Any]:
    """What ``molshape score --input FILE -o OUTPUT`` does with FILE's strings: the CSV of
    :func:`score`, written chunk by chunk in input order, in this process or on Dask.

    Args:
        output: the CSV file (written through ``<output>.partial``, which ``resume=True``
            continues); None: the rows are in the summary's ``rows``.
        options: see :func:`molshape.screening.score_stream.score`: ``names``, ``neutralise``,
            ``workers`` (processes per chunk here), ``scheduler="tcp://host:8786"`` (Dask),
            ``chunk_size``, ``resume``, ``progress``.

    Returns:
        the summary (``n, valid, invalid, mean_valid_score, best, invalid_rows``, engine, times).

    Example:
        >>> molshape.score_to_csv(smiles, "scores.csv", target="qed", scheduler="tcp://head:8786")  # doctest: +SKIP
    """
    return score_stream.score(as_strings(strings), output, target=target, **options)


def search_spec(objectives: list[Objective], similarity: float | None, constraint: Sequence[str] | str | None,
                search: SearchConfig | None, constraints: str = "auto", with_leads: bool = False,
                molecular: bool = True) -> SearchSpec:
    """Check a constrained search's settings (before anything is created) and bundle them.

    Raises:
        ValueError: similarity outside [0, 1] or without leads, a malformed constraint or an unknown
            property, a candidate pool with leads or for a model that writes no molecules.
    """
    (search or SearchConfig()).search_space(len(objectives), with_leads, molecular)
    if similarity is not None:
        if not 0.0 <= float(similarity) <= 1.0:
            raise ValueError(f"similarity must be in [0, 1], got {similarity}")
        if not with_leads:
            raise ValueError("similarity needs leads to compare with (from_=...)")
    texts = [constraint] if isinstance(constraint, str) else list(constraint or [])
    known = tuple(n for n, t in TARGETS.items() if t.molecular)
    parsed = [parse_constraint(c, known) for c in texts]
    return SearchSpec(objectives, parsed, None if similarity is None else float(similarity),
                      search or SearchConfig(), constraints)


def _optimize_search(model: Model, objectives: list[Objective], out_dir: str | Path | None, *, from_, similarity,
                     constraint, search, constraints: str, workers: int, threads: int,
                     progress: bool, record: dict[str, Any] | None = None) -> OptimizeResult:
    spec = search_spec(objectives, similarity, constraint, search, constraints, with_leads=from_ is not None,
                       molecular=is_molecular(model.grammar))
    leads = None if from_ is None else read_leads(from_)
    if leads is not None and not leads:
        raise ValueError(f"no lead in {from_!r}")
    higher = objectives[0].higher_is_better

    def run(out: Path) -> dict[str, Any]:
        return optimize_search(model.net, model.grammar, spec, out, checkpoint_path=model.path, leads=leads,
                               workers=workers, threads=threads, progress=progress,
                               record={"api": "molshape.optimize"} if record is None else record)

    if out_dir is None:  # nothing is written unless asked: the run's folder is a temporary one
        with tempfile.TemporaryDirectory(prefix="molshape-optimize-") as tmp:
            summary = run(Path(tmp))
            proposals = pd.read_csv(Path(tmp) / "proposals.csv")
        return OptimizeResult(summary, proposals, None, higher)
    out = Path(out_dir)
    summary = run(out)
    return OptimizeResult(summary, pd.read_csv(out / "proposals.csv"), out, higher)
