"""Settings dataclasses read back from plain dicts (checkpoints, ``config.json``): one rule.

Every config that molshape saves (model, objective and training settings) is rebuilt with
:func:`config_from_dict`, which refuses a key the dataclass does not have, naming it. Such a
key means the file was written by a newer molshape (or edited by hand): guessing what an
unknown setting meant could rebuild a different model silently, so it is an error, and the
message says to upgrade. Keys that older molshape versions wrote are translated by the
config's own ``from_dict`` before this rule applies, so old files keep loading.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from molshape.core.errors import MolshapeError

T = TypeVar("T")


class ConfigError(MolshapeError):
    """Saved settings that do not describe a config this molshape knows (an unknown key or a bad value)."""


def config_from_dict(cls: type[T], d: dict[str, Any], base: T | None = None) -> T:
    """``cls`` with the settings of ``d``; settings ``d`` lacks come from ``base`` (default: ``cls``'s defaults).

    Raises:
        ConfigError: ``d`` is not a dict, or holds a key ``cls`` has no field for.
    """
    if not isinstance(d, dict):
        raise ConfigError(f"{cls.__name__}: expected a dict of settings, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown setting {', '.join(map(repr, unknown))} (written by a newer "
                          "molshape? upgrade molshape to read it)")
    try:
        return dataclasses.replace(base, **d) if base is not None else cls(**d)
    except TypeError as e:  # e.g. a required field missing
        raise ConfigError(f"{cls.__name__}: {e}") from None
