"""The Pareto front of a multi-objective study, read from its trials; and the one "best"
trial every study has (the monitor's best: a single-objective study's best trial).

The front is made of the COMPLETE trials that no other COMPLETE trial dominates on the
values they recorded (``objectives`` user attr: the values at their best epoch). A pruned
trial is judged at the epoch it was stopped at, so it is never on the front.

>>> from optuna.trial import create_trial
>>> trials = [create_trial(values=[v, p], user_attrs={"objectives": {"acc": v, "params": p}})
...           for v, p in ((0.9, 100.0), (0.8, 10.0), (0.7, 50.0))]
>>> for number, trial in enumerate(trials):
...     trial.number = number
>>> sorted(front_numbers(trials, objectives_of("acc:max,params:min")))
[0, 1]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna.trial import TrialState

from tunecb.oracle import attrs as keys
from tunecb.oracle import pareto
from tunecb.study.objectives import Objective, monitor_of, parse_objectives


def objectives_of(text: Any) -> tuple[Objective, ...] | None:
    """A stored study's objectives (its ``objectives`` attr, ``"acc:max,params:min"``), or
    ``None`` for a single-objective study."""
    return parse_objectives(text) if isinstance(text, str) and text else None


def study_objectives(study: Any) -> tuple[Objective, ...] | None:
    """The objectives of an Optuna study tunecb created (``None``: single-objective)."""
    return objectives_of(study.user_attrs.get(keys.STUDY_OBJECTIVES))


def values_of(trial: Any, objectives: Sequence[Objective]) -> list[float] | None:
    """A trial's recorded values in the study's order, ``None`` unless all are finite."""
    found = trial.user_attrs.get(keys.OBJECTIVES) or {}
    values = [found.get(o.name) for o in objectives]
    return values if pareto.finite(values) else None  # type: ignore[return-value]


def front_numbers(trials: Sequence[Any], objectives: Sequence[Objective]) -> set[int]:
    """The numbers of the COMPLETE trials on the Pareto front."""
    done = [(t.number, values_of(t, objectives)) for t in trials if t.state == TrialState.COMPLETE]
    done = [(n, v) for n, v in done if v is not None]
    on = pareto.front([v for _, v in done], [o.maximize for o in objectives])
    return {n for (n, _), o in zip(done, on, strict=True) if o}


def best_trial(study: Any) -> Any:
    """The study's best COMPLETE trial of its own on its monitor (Optuna's value for a
    single-objective study; a multi-objective one's first metric), ``None`` before one.
    Trials copied from an earlier study (``--warm-start``) are never this study's best."""
    objectives = study_objectives(study)
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if keys.WARM_START not in t.user_attrs
    ]
    if objectives is None:
        scored = [(t.value, t) for t in done]
        maximize = study.direction.name == "MAXIMIZE"
    else:
        scored = [(t.user_attrs.get(keys.BEST_VALUE), t) for t in done]
        maximize = monitor_of(objectives).maximize
    scored = [(v, t) for v, t in scored if pareto.finite([v])]
    if not scored:
        return None
    pick = max if maximize else min
    return pick(scored, key=lambda pair: pair[0])[1]


def monitor_value(trial: Any) -> float | None:
    """A trial's value on the monitor: Optuna's value, or a multi-objective trial's best
    monitored value (its first metric's)."""
    if trial.values is not None and len(trial.values) > 1:
        return trial.user_attrs.get(keys.BEST_VALUE)
    return trial.value
