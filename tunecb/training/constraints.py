"""The study's constraints on a built model (``max_params=``, ``constraint=``), judged after
the build and before ``fit``: an infeasible model never trains.

A judgement is a violation number in Optuna's convention (> 0: infeasible, <= 0: feasible),
which the runner records on the trial for the sampler (``constraints_func``), and a line
saying why. ``max_params`` gives the relative excess, so that a model twice too big counts
more than one a little too big; a user function gives ``True``/``False`` (0 or 1) or its
own number. With both, the violations add (the feasible margin is the smaller one).

>>> judge(120, max_params=100, constraint=None, where="s.py")
Verdict(value=0.2, why='120 parameters, over max_params=100')
>>> judge(80, max_params=100, constraint=lambda model: -0.5, where="s.py").value
-0.2
>>> judge(80, max_params=100, constraint=lambda model: False, where="s.py").why
'the constraint <lambda>() returned False'
>>> judge(80, max_params=None, constraint=None, where="s.py") is None
True
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tunecb.errors import ConfigError


@dataclass(frozen=True)
class Verdict:
    """A model's constraint violation (> 0: infeasible) and, when infeasible, why."""

    value: float
    why: str

    @property
    def feasible(self) -> bool:
        return self.value <= 0


def judge(
    model: Any, *, max_params: int | None, constraint: Callable[[Any], Any] | None, where: str
) -> Verdict | None:
    """Judge ``model`` (a Keras model, or its parameter count) by the study's constraints;
    ``None`` when it states none.

    ``constraint(model)`` raising fails the trial as any user code does; returning anything
    but a bool or a finite number raises :class:`ConfigError` (every trial would: the study
    stops), naming the function and ``where`` (the study file)."""
    if max_params is None and constraint is None:
        return None
    values: list[tuple[float, str]] = []
    if max_params is not None:
        n = int(model.count_params()) if hasattr(model, "count_params") else int(model)
        values.append(
            ((n - max_params) / max_params, f"{n:,} parameters, over max_params={max_params:,}")
        )
    if constraint is not None:
        name = getattr(constraint, "__name__", "constraint")
        result = constraint(model)
        result = bool(result) if isinstance(result, np.bool_) else result  # numpy's too
        values.append(
            (_number(result, name, where), f"the constraint {name}() returned {result!r}")
        )
    broken = [(v, why) for v, why in values if v > 0]
    if broken:
        return Verdict(round(sum(v for v, _ in broken), 6), "; ".join(why for _, why in broken))
    return Verdict(round(max(v for v, _ in values), 6), "")


def _number(result: Any, name: str, where: str) -> float:
    """A constraint function's answer as a violation: ``True`` 0 (feasible), ``False`` 1."""
    if isinstance(result, bool):
        return 0.0 if result else 1.0
    if isinstance(result, numbers.Real) and math.isfinite(float(result)):
        return float(result)
    raise ConfigError(
        f"the constraint {name}() in {where} returned {result!r}; return True (the model "
        "may train), False (it may not) or a violation number (> 0: infeasible)"
    )
