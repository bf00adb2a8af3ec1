"""Pick one model from a multi-objective study's Pareto front: the best on one objective
among the front members within limits on the others ("the most accurate model with at most
20,000 parameters"). The best such model is always on the front: a model that dominated it
would be within the limits too, and as good on the chosen objective.

>>> records = [
...     {"trial": 4, "front": True, "val_accuracy": 0.95, "params": 30000.0},
...     {"trial": 1, "front": True, "val_accuracy": 0.91, "params": 9000.0},
...     {"trial": 2, "front": False, "val_accuracy": 0.90, "params": 12000.0},
... ]
>>> from tunecb.study.objectives import parse_objectives
>>> objectives = parse_objectives("val_accuracy:max,params:min")
>>> choose(records, objectives, "val_accuracy", {"params": 20000}, "r")["trial"]
1
>>> choose(records, objectives, None, None, "r")["trial"]
4
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from tunecb.errors import ConfigError, ResultsError
from tunecb.study.objectives import Objective, monitor_of


def parse_within(items: Sequence[str] | Mapping[str, Any] | None) -> dict[str, float]:
    """Limits from ``within={"params": 20000}`` or ``--within params=20000`` (repeatable).

    >>> parse_within(["params=2e4", "latency_ms=1.5"])
    {'params': 20000.0, 'latency_ms': 1.5}
    """
    if not items:
        return {}
    pairs = items.items() if isinstance(items, Mapping) else [_pair(text) for text in items]
    limits = {}
    for name, limit in pairs:
        try:
            value = float(limit)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            raise ConfigError(f"within {name}={limit!r}: the limit must be a finite number")
        limits[str(name)] = value
    return limits


def _pair(text: str) -> tuple[str, str]:
    name, sep, limit = str(text).partition("=")
    if not sep or not name.strip():
        raise ConfigError(f"--within {text!r}: write NAME=LIMIT, e.g. --within params=20000")
    return name.strip(), limit.strip()


def choose(
    records: list[dict[str, Any]],
    objectives: tuple[Objective, ...] | None,
    best_on: str | None,
    within: Mapping[str, Any] | Sequence[str] | None,
    where: str,
) -> dict[str, Any]:
    """The record of the front member best on ``best_on`` (default: the monitor) among those
    within every limit (at most the limit for a minimised objective, at least it for a
    maximised one); ties go to the higher-ranked. Raises :class:`ConfigError` for a name
    that is not an objective, :class:`ResultsError` when no front member is within limits."""
    if not objectives:
        raise ConfigError(
            f"{where} holds a single-objective study: best_on= and within= choose from a "
            "multi-objective study's front; use rank= or trial="
        )
    by_name = {o.name: o for o in objectives}
    limits = parse_within(within)
    for name in [best_on, *limits] if best_on else list(limits):
        if name not in by_name:
            raise ConfigError(f"{name!r} is not an objective of {where}; it has {list(by_name)}")
    target = by_name[best_on] if best_on else monitor_of(objectives)
    front = [r for r in records if r.get("front")]
    fits = [r for r in front if all(_within(r, by_name[n], lim) for n, lim in limits.items())]
    if not fits:
        raise ResultsError(_nothing_within(front, by_name, limits, where))
    sign = 1.0 if target.maximize else -1.0
    return max(fits, key=lambda r: sign * r[target.name])  # the first of equal ones


def _within(record: dict[str, Any], objective: Objective, limit: float) -> bool:
    value = record.get(objective.name)
    if value is None:
        return False
    return value >= limit if objective.maximize else value <= limit


def _nothing_within(
    front: list[dict[str, Any]], by_name: dict[str, Objective], limits: dict, where: str
) -> str:
    if not front:
        return f"{where} has no COMPLETE trial on its Pareto front yet"
    name, limit = next(iter(limits.items()))
    o = by_name[name]
    best = (max if o.maximize else min)(r[name] for r in front if r.get(name) is not None)
    way = ">=" if o.maximize else "<="
    return (
        f"no model on the Pareto front of {where} has {name} {way} {limit:g} (the front's "
        f"{'highest' if o.maximize else 'lowest'} is {best:g}); relax within="
    )
