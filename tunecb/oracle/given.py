"""Configurations given to run first (``--enqueue``): queued once when the study opens,
run first by whichever worker asks, exactly once each, and counted in ``n_trials``.

Each is an Optuna WAITING trial with its parameters fixed and the user attribute
``given`` (``{"from": "--enqueue FILE line N", "params": {...}}``), which the report
shows. Two launchers opening one study at the same moment may both queue a
configuration; the one asked later is discarded when it is asked (:func:`repeated`).

Whether a given value fits the space: :func:`tunecb.oracle.distributions.problem`.
"""

from __future__ import annotations

import json
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
)
from optuna.trial import TrialState

from tunecb.errors import ConfigError
from tunecb.oracle import budget
from tunecb.oracle.attrs import GIVEN
from tunecb.oracle.distributions import problem
from tunecb.study.configurations import Configuration

__all__ = ["enqueue", "repeated"]


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def _holds(trial: Any, again: set[int]) -> bool:
    """Whether ``trial`` has run (or will run) its configuration for the budget."""
    if trial.state in (TrialState.WAITING, TrialState.RUNNING):
        return True
    return budget.counts(trial, again)


def enqueue(
    study: optuna.Study,
    given: list[Configuration],
    earlier: dict[str, BaseDistribution],
) -> list[str]:
    """Queue the configurations the study does not hold yet; the notes to show. Each value
    is checked against the study's earlier distributions first (``earlier``: a continued
    study's): one bad value refuses them all, before anything is queued."""
    for item in given:
        for name, value in item.params.items():
            found = problem(name, value, earlier[name]) if name in earlier else None
            if found:
                raise ConfigError(f"{item.where}: {found}; fix the value or remove the line")
    trials = study.get_trials(deepcopy=False)
    again = budget.retried(trials)
    held = {_key(t.user_attrs[GIVEN]["params"]) for t in trials
            if GIVEN in t.user_attrs and _holds(t, again)}  # fmt: skip
    new = [item for item in given if _key(item.params) not in held]
    for item in new:
        study.enqueue_trial(
            item.params, user_attrs={GIVEN: {"from": item.where, "params": item.params}}
        )
    if not new:
        many = "given configuration is"
        if len(given) > 1:
            many = f"{len(given)} given configurations are"
        return [f"the {many} in the study already: none queued"]
    note = f"{len(new)} given configuration{'s' * (len(new) != 1)} queued to run first"
    if len(new) < len(given):
        note += f" ({len(given) - len(new)} in the study already)"
    return [note]


def repeated(study: optuna.Study, trial: optuna.Trial) -> bool:
    """Whether the just-asked ``trial`` is a given configuration that a trial with a
    smaller number holds already (two launchers queued it): then it is discarded."""
    mine = trial.user_attrs.get(GIVEN)
    if not mine:
        return False
    key = _key(mine["params"])
    trials = study.get_trials(deepcopy=False)
    again = budget.retried(trials)
    return any(
        t.number < trial.number
        and GIVEN in t.user_attrs
        and _key(t.user_attrs[GIVEN]["params"]) == key
        and _holds(t, again)
        for t in trials
    )
