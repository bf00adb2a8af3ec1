"""The ``objectives=`` setting of a multi-objective study: which values a trial is judged by,
and which way each is better.

An objective is a metric Keras logs every epoch (``val_accuracy``, ``val_loss``, ...), or a
property of the built model that tunecb measures once, before the first epoch, under a fixed
name (:data:`PROPERTIES`), or a user function of the built model (``(direction, function)``).
The first-listed metric is the study's ``monitor``: it chooses each trial's result epoch
(its best), its checkpoint and its early stopping, as in a single-objective study; every
other metric is read at that same epoch.

>>> parse_objectives({"val_accuracy": "max", "params": "min"})[1]
Objective(name='params', direction='minimize')
>>> [o.name for o in parse_objectives("val_loss:min, latency_ms:min")]
['val_loss', 'latency_ms']
>>> parse_objectives({"val_accuracy": "up", "params": "min"})
Traceback (most recent call last):
    ...
tunecb.study.checks.Invalid: objective 'val_accuracy': direction 'up' is neither 'max' nor 'min'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tunecb.errors import ConfigError
from tunecb.study.checks import Invalid
from tunecb.study.direction_check import check_direction

# The model properties tunecb measures itself (tunecb.training.objectives measures them).
PROPERTIES = ("params", "size_mb", "latency_ms")
_WAYS = {"max": "maximize", "maximize": "maximize", "min": "minimize", "minimize": "minimize"}
EXAMPLE = (
    "objectives={'val_accuracy': 'max', 'params': 'min'} (--objectives val_accuracy:max,params:min)"
)


@dataclass(frozen=True)
class Objective:
    """One objective: its name, ``maximize`` or ``minimize``, and for a user's property the
    function of the built model that measures it."""

    name: str
    direction: str
    measure: Callable[[Any], float] | None = field(default=None, compare=False, repr=False)

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    @property
    def per_epoch(self) -> bool:
        """Whether Keras logs it every epoch (else it is a property of the built model).

        >>> Objective("val_loss", "minimize").per_epoch, Objective("params", "minimize").per_epoch
        (True, False)
        """
        return self.measure is None and self.name not in PROPERTIES


def parse_objectives(value: Any) -> tuple[Objective, ...] | None:
    """The objectives from ``Study(objectives=...)`` (a dict ``{name: "max" | "min" |
    (direction, function)}``) or ``--objectives`` (``"name:max,name:min"``); ``None`` for
    none. Raises :class:`Invalid` saying what is wrong."""
    if value is None:
        return None
    if isinstance(value, str):
        value = _from_text(value)
    if not isinstance(value, Mapping):
        raise Invalid(f"give a dict of objective names and directions, e.g. {EXAMPLE}")
    found = tuple(_one(str(name), way) for name, way in value.items())
    if len(found) < 2:
        raise Invalid(
            f"name two or more objectives (a single one is monitor= and direction=), e.g. {EXAMPLE}"
        )
    if not any(o.per_epoch for o in found):
        raise Invalid(
            "name at least one metric Keras logs (e.g. 'val_accuracy'): it chooses each "
            "trial's epoch and checkpoint",
        )
    return found


def _from_text(text: str) -> dict[str, Any]:
    pairs: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, way = part.partition(":")
        if not sep or not name.strip():
            raise Invalid(f"write each objective as name:max or name:min, e.g. {EXAMPLE}")
        pairs[name.strip()] = way.strip()
    return pairs


def _one(name: str, way: Any) -> Objective:
    measure = None
    if isinstance(way, tuple | list) and len(way) == 2:
        way, measure = way
        if not callable(measure):
            raise Invalid(
                f"objective {name!r}: {measure!r} is not a function; give "
                f"('min', function of the built model)",
                quote=False,
            )
        if name in PROPERTIES:
            raise Invalid(
                f"objective {name!r} is measured by tunecb; give your function another name",
                quote=False,
            )
    direction = _WAYS.get(str(way).strip().lower()) if isinstance(way, str) else None
    if direction is None:
        raise Invalid(
            f"objective {name!r}: direction {way!r} is neither 'max' nor 'min'", quote=False
        )
    return Objective(name, direction, measure)


def monitor_of(objectives: tuple[Objective, ...]) -> Objective:
    """The first-listed metric: the study's monitor.

    >>> monitor_of(parse_objectives({"params": "min", "val_loss": "min"})).name
    'val_loss'
    """
    return next(o for o in objectives if o.per_epoch)


def text_of(objectives: tuple[Objective, ...] | None) -> str | None:
    """How a study's objectives are written down (in ``study.json`` and the study's attrs).

    >>> text_of(parse_objectives("val_accuracy:max,params:min"))
    'val_accuracy:max,params:min'
    """
    if not objectives:
        return None
    return ",".join(f"{o.name}:{o.direction[:3]}" for o in objectives)


def stable_repr(value: Any) -> str:
    """``repr`` that names a function by its qualified name, not its address (a measure in
    ``objectives=``): a study declared in code gets one fingerprint in every process.

    >>> stable_repr({"depth": ("min", len)}), stable_repr([1, (2,)])
    ("{'depth': ('min', <function builtins.len>)}", '[1, (2,)]')
    """
    if not _holds_function(value):
        return repr(value)  # as before: the fingerprints of existing studies stay
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {stable_repr(v)}" for k, v in value.items()) + "}"
    if isinstance(value, tuple | list):
        return "(" + ", ".join(stable_repr(v) for v in value) + ")"
    if callable(value) and hasattr(value, "__qualname__"):
        return f"<function {getattr(value, '__module__', '?')}.{value.__qualname__}>"
    return repr(value)


def _holds_function(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_holds_function(v) for v in value.values())
    if isinstance(value, tuple | list):
        return any(_holds_function(v) for v in value)
    return callable(value) and hasattr(value, "__qualname__")


def settle(
    objectives: tuple[Objective, ...], values: dict[str, Any], sources: dict[str, str]
) -> dict[str, Any]:
    """A multi-objective study's monitor, direction and pruner: the first-listed metric
    with its direction, and ``pareto`` unless the pruner is ``promotion`` (MOASHA) or
    ``none`` (Optuna's pruners cannot judge a trial on several values)."""
    where = sources.get("objectives", "objectives=")
    for o in objectives:
        if o.per_epoch:
            check_direction(o.name, o.direction, f"{where} (objective {o.name!r}): direction")
    first = monitor_of(objectives)
    for key, wanted in (("monitor", first.name), ("direction", first.direction)):
        given = values.get(key)
        if not sources.get(key, "default").startswith("default") and given not in (wanted, "auto"):
            raise ConfigError(
                f"{sources[key]} {given!r} contradicts {where}: its first metric "
                f"{first.name!r} ({first.direction}) is the monitor; drop {key}="
            )
    pruner = values.get("pruner")
    if sources.get("pruner", "default").startswith("default"):
        pruner = "pareto"
    elif pruner not in ("pareto", "promotion", "none"):
        shown = pruner if isinstance(pruner, str) else type(pruner).__name__
        raise ConfigError(
            f"{sources.get('pruner', 'pruner=')} {shown!r} cannot judge a multi-objective "
            "trial (Optuna's pruners take one value); use 'pareto' (the default with "
            "objectives=), 'promotion' (pauses and resumes by Pareto rank) or 'none'"
        )
    return {"monitor": first.name, "direction": first.direction, "pruner": pruner}
