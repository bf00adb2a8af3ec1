"""The pruner's decision at the end of an epoch, the one call the trial makes for it.

Optuna's ``trial.should_prune()`` hands the pruner the study, whose finished trials it reads
every epoch; here the pruner reads them through :class:`~tunecb.storage.finished.FinishedTrials`
(on a database: only the trials that finished since the last epoch are loaded, not every
running trial again). The decision is the same; the cost per epoch no longer grows with the
number of workers.

>>> study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=0))
>>> trial = study.ask()
>>> trial.report(0.5, step=1)
>>> should_prune(trial)
False
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

import optuna
from optuna.trial import TrialState

from tunecb.oracle.attrs import EPOCHS_RUN, WARM_START
from tunecb.storage.finished import FinishedTrials, only_finished

_finished = FinishedTrials()  # one per process: the finished trials it has read
# Pruners that read no more of a finished trial than its state, number and curve (and
# tunecb reads its user attributes: not a warm start's copy): their trials load light.
_LIGHT = (optuna.pruners.MedianPruner, optuna.pruners.PercentilePruner)


def should_prune(trial: optuna.Trial) -> bool:
    """What ``trial.should_prune()`` answers, with finished trials read cheaply."""
    if not isinstance(trial, optuna.Trial):  # a FixedTrial, or a stand-in: its own answer
        return trial.should_prune()
    study = trial.study
    if len(study.directions) > 1:
        raise NotImplementedError("pruning is not supported for multi-objective studies")
    return study.pruner.prune(_FinishedView(study), trial._get_latest_trial())


def finished_epochs(study: optuna.Study) -> list[int]:
    """The epochs each of ``study``'s own finished trials (complete or pruned) trained, read
    cheaply as the pruner reads them (``epochs_run``; not a warm start's copies).

    >>> finished_epochs(optuna.create_study())
    []
    """
    trials = _own_kept(_finished.read(study, (TrialState.COMPLETE, TrialState.PRUNED), True))
    found = (t.user_attrs.get(EPOCHS_RUN) for t in trials)
    return [int(e) for e in found if isinstance(e, int | float) and e > 0]


class _FinishedView:
    """The study as a pruner sees it: reads of finished trials go through the cache."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[Any]:
        if not only_finished(states):
            return _own(self._study.get_trials(deepcopy=deepcopy, states=states))
        light = type(self._study.pruner) in _LIGHT  # reads the finished trials' curves only
        trials = _own_kept(_finished.read(self._study, states, light))  # type: ignore[arg-type]
        return [_copy(t) for t in trials] if deepcopy else trials

    @property
    def trials(self) -> list[Any]:
        return _own(self._study.trials)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


def _own(trials: list[Any]) -> list[Any]:
    """The study's own trials: not the copies of another study's (``--warm-start``), which
    have no epochs to compare and would end a pruner's start-up early."""
    return [t for t in trials if WARM_START not in t.user_attrs]


_OWN: dict[int, tuple[list[Any], list[Any]]] = {}  # id(list read) -> (it, its own trials)


def _own_kept(trials: list[Any]) -> list[Any]:
    """:func:`_own` of a list of finished trials, filtered once: the reader hands the same
    list until a trial finishes, so an epoch with nothing new costs no pass over the study."""
    found = _OWN.get(id(trials))
    if found is not None and found[0] is trials:
        return found[1]
    if len(_OWN) > 8:
        _OWN.clear()
    own = _own(trials)
    _OWN[id(trials)] = (trials, own)
    return own


def _copy(trial: Any) -> Any:
    import copy

    return copy.deepcopy(trial)
