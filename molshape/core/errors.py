"""molshape's documented errors: what a caller of the Python API may catch.

Every error molshape raises on purpose for a bad input, option, file or run is a
:class:`MolshapeError` (a :class:`ValueError`), or an :class:`OSError` naming the file the
system refused. Anything else is a bug. The subclasses below and
:class:`~molshape.grammar.cfg.GrammarError`, :class:`~molshape.core.checkpoint.CheckpointError`,
:class:`~molshape.core.config.ConfigError`,
:class:`~molshape.gvae.latent_sources.SourceError` and :class:`~molshape.api.GrammarMismatch`
derive from it; ``docs/failure-behaviour.md`` lists them.
"""

from __future__ import annotations


class MolshapeError(ValueError):
    """Base class of molshape's documented errors; the message is one sentence."""


class InputError(MolshapeError):
    """An API argument of the wrong type, shape or value (a number that is NaN or negative, ...)."""


class LatentError(InputError):
    """Latents that cannot be decoded: not finite, of the wrong dimension, or not floating point."""


class OutputRefused(MolshapeError):
    """An output that would replace what molshape must not replace: a device, FIFO, socket or
    folder, one of the command's inputs, or a file another command or the user wrote.
    The command line reports it as a usage error (exit status 2)."""


class TrainingDiverged(MolshapeError):
    """The training loss became NaN or infinite; the checkpoints of the last good epoch are kept."""


class DroppedFeatureWarning(UserWarning):
    """An input lost something its grammar cannot write (an isotope, a stereo centre, ...) on
    the way in: it is encoded as the molecule without it. One warning per input."""
