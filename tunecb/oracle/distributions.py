"""Optuna distributions in words, and why a value does not fit one: shared by the space
checks of a continued study (:mod:`.space`), the configurations given to run first
(:mod:`.given`) and the warm start's queued trials (:mod:`.warm`).

>>> problem("units", 64, IntDistribution(8, 32))
'units=64 is outside int 8..32'
>>> problem("act", "elu", CategoricalDistribution(["relu"])) is not None
True
"""

from __future__ import annotations

import numbers
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

__all__ = ["describe", "problem", "range_text"]


def describe(dist: BaseDistribution) -> str:
    """A distribution in a few words.

    >>> describe(FloatDistribution(0.001, 0.1, log=True))
    'float 0.001..0.1 (log)'
    >>> describe(IntDistribution(8, 64, step=8))
    'int 8..64 step 8'
    >>> describe(CategoricalDistribution(["relu", "tanh"]))
    "one of ['relu', 'tanh']"
    """
    if isinstance(dist, CategoricalDistribution):
        return f"one of {list(dist.choices)}"
    if isinstance(dist, (FloatDistribution, IntDistribution)):
        kind = "int" if isinstance(dist, IntDistribution) else "float"
        return f"{kind} {range_text(dist)}"
    return repr(dist)


def range_text(dist: FloatDistribution | IntDistribution) -> str:
    """A numeric distribution's range: ``0.001..0.1 (log)``, ``8..64 step 8``."""
    text = f"{dist.low:g}..{dist.high:g}"
    if dist.log:
        text += " (log)"
    if dist.step is not None and not (isinstance(dist, IntDistribution) and dist.step == 1):
        text += f" step {dist.step:g}"
    return text


def problem(name: str, value: Any, dist: BaseDistribution) -> str | None:
    """Why ``value`` cannot be ``name``'s value under ``dist`` (``None``: it can)."""
    if isinstance(dist, CategoricalDistribution):
        same = any(value == c and type(value) is type(c) for c in dist.choices)
        return None if same else f"{name}={value!r} is not {describe(dist)}"
    if isinstance(dist, (FloatDistribution, IntDistribution)):
        number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not number or (isinstance(dist, IntDistribution) and float(value) % 1):
            kind = "a whole number" if isinstance(dist, IntDistribution) else "a number"
            return f"{name}={value!r} is not {kind} ({describe(dist)})"
        if not dist._contains(dist.to_internal_repr(value)):
            return f"{name}={value!r} is outside {describe(dist)}"
    return None
