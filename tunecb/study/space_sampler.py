"""tunecb's default sampler: Optuna's TPE, learning only from the trials inside the space
asked now.

A continued study whose range moved or narrowed holds finished trials outside the new
range. Optuna's TPE keeps them: each becomes a kernel truncated to the new range, so a good
trial outside pulls every new draw towards the nearest edge (measured in
``tests/unit/test_space_sampler.py``: draws at the edge instead of near the best inside).
:class:`InSpaceTPESampler` hands TPE only the trials whose values lie inside the
distributions it samples:

- one parameter sampled alone: the trials whose value of it lies outside its range now are
  left out (their other parameters still count for theirs);
- parameters sampled jointly (multivariate, a group): a trial with any of them outside is
  left out of that joint model, which samples in each parameter's latest range (the one
  the study's latest trial asked), not in the first one Optuna saw;
- a trial that has no value for a parameter is treated as TPE treats it (left out of that
  parameter's model); the start-up count (``n_startup_trials``) counts the trials inside.

>>> from optuna.distributions import FloatDistribution
>>> t = optuna.trial.create_trial(params={"x": 8.0}, distributions={"x": FloatDistribution(0, 10)},
...                               value=1.0)
>>> inside(t, {"x": FloatDistribution(0, 5)}), inside(t, {"x": FloatDistribution(0, 10)})
(False, True)
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

__all__ = ["InSpaceTPESampler", "inside"]


def inside(trial: FrozenTrial, space: dict[str, BaseDistribution]) -> bool:
    """Whether every value ``trial`` holds for a parameter of ``space`` lies inside it."""
    for name, dist in space.items():
        if name not in trial.params:
            continue
        try:
            if not dist._contains(dist.to_internal_repr(trial.params[name])):
                return False
        except (ValueError, TypeError):
            return False
    return True


class _Inside:
    """A study seen through ``space``: its trials outside it are not listed; everything
    else is the study's."""

    def __init__(self, study: optuna.Study, space: dict[str, BaseDistribution]) -> None:
        self._study = study
        self._space = space

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, *args: Any, **kwargs: Any) -> list[FrozenTrial]:
        found = self._study._get_trials(*args, **kwargs)
        return [t for t in found if inside(t, self._space)]

    def get_trials(self, *args: Any, **kwargs: Any) -> list[FrozenTrial]:
        found = self._study.get_trials(*args, **kwargs)
        return [t for t in found if inside(t, self._space)]


_LATEST = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def latest(study: optuna.Study, names: Container[str], but: int) -> dict[str, Any]:
    """Each of ``names``' distribution in the latest trial that asked it (not trial ``but``)."""
    found: dict[str, BaseDistribution] = {}
    trials = study._get_trials(deepcopy=False, states=_LATEST, use_cache=True)
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.number != but:
            found.update((k, v) for k, v in trial.distributions.items() if k in names)
    return found


class InSpaceTPESampler(optuna.samplers.TPESampler):
    """:class:`optuna.samplers.TPESampler` that learns only from the trials inside the
    distributions it samples (see the module's text); the same arguments."""

    def _sample_relative(
        self, study: Any, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        space = {**search_space, **latest(study, search_space, trial.number)}
        return super()._sample_relative(_Inside(study, space), trial, space)

    def sample_independent(
        self, study: Any, trial: FrozenTrial, param_name: str, param_distribution: Any
    ) -> Any:
        view = _Inside(study, {param_name: param_distribution})
        return super().sample_independent(view, trial, param_name, param_distribution)
