"""A failed attempt's rerun (tunecb.storage.stale): one WAITING copy with its parameters,
none of its user attrs, never two copies of one attempt, whichever path queues it (a stale
heartbeat, a dead process); and two workers that bury the same dead trial (issue 24: 200
workers on PostgreSQL repeated parameter sets and crashed at start). Real Optuna studies
(in memory, SQLite); no Keras."""

from __future__ import annotations

import copy
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tunecb.oracle import attempts, attrs, budget, deaths
from tunecb.storage import stale
from tunecb.storage.urls import open_storage


def _failed(study: optuna.Study, **user_attrs) -> optuna.trial.FrozenTrial:
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    for key, value in user_attrs.items():
        trial.set_user_attr(key, value)
    study.tell(trial, state=TrialState.FAIL)
    return study.trials[trial.number]


def test_rerun_keeps_the_parameters_and_none_of_the_claim():
    study = optuna.create_study()
    failed = _failed(study, **{attrs.WORKER: "elsewhere:4242", attrs.STOP_REASON: "pruned"})
    assert stale.queue(study, failed) is not None
    rerun = study.trials[-1]
    assert rerun.state == TrialState.WAITING and rerun.params == failed.params
    assert rerun.user_attrs == {}  # not claimed by the old process, no old stop reason
    assert rerun.system_attrs[attrs.RETRY_HISTORY] == [failed.number]
    assert budget.retried(study.trials) == {failed.number}


def test_an_attempt_is_queued_once_whoever_asks():
    study = optuna.create_study()
    failed = _failed(study)
    first = stale.queue(study, failed)
    assert first is not None
    assert stale.queue(study, failed) == first  # a second path (the dead-process one) asks too
    assert stale.queue(study, failed) == first
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]


def test_a_rerun_of_a_rerun_is_a_new_attempt():
    study = optuna.create_study()
    first = _failed(study)
    stale.queue(study, first)
    second = study.ask()  # pops the copy
    study.tell(second, state=TrialState.FAIL)
    assert stale.queue(study, study.trials[second.number]) is not None
    assert study.trials[-1].system_attrs[attrs.RETRY_HISTORY] == [first.number, second.number]


def test_stale_trials_of_a_database_storage_rerun_the_same_way(tmp_path: Path):
    storage = open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, 5, 10)
    study = optuna.create_study(storage=storage)
    failed = _failed(study, **{attrs.WORKER: "elsewhere:4242"})
    callback = storage.get_heartbeat_stale_trial_callback()
    callback(study, failed)
    callback(study, copy.deepcopy(failed))  # another worker's callback: no second copy
    reruns = [t for t in study.trials if t.state == TrialState.WAITING]
    assert len(reruns) == 1 and reruns[0].user_attrs == {}


class _StaleView:
    """A storage whose ``get_trial`` answers from before another worker finished the trial:
    what a worker sees that reads a dead trial just before another one buries it."""

    def __init__(self, storage, before):
        self._storage, self._before = storage, before

    def __getattr__(self, name):
        return getattr(self._storage, name)

    def get_trial(self, trial_id):
        return self._before


def test_burying_a_trial_another_worker_buried_first_does_nothing():
    study = optuna.create_study()
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    before = copy.deepcopy(study.trials[0])
    attempts.bury(study, trial.number, deaths.Death("its process 1 is gone"))  # worker A
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]
    real = study._storage
    study._storage = _StaleView(real, before)  # worker B read it RUNNING a moment ago
    try:
        assert attempts.bury(study, trial.number, deaths.Death("its process 1 is gone")) is None
    finally:
        study._storage = real
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]


class _Dies:
    """A heartbeat storage that reports ``stale`` trial ids and whose process dies (an
    exception) at the FAIL of ``dies_at``."""

    def __init__(self, storage, stale_ids, dies_at):
        self._storage, self._stale, self._dies_at = storage, stale_ids, dies_at

    def __getattr__(self, name):
        return getattr(self._storage, name)

    def get_heartbeat_interval(self):
        return 5

    def _get_stale_trial_ids(self, study_id):
        return list(self._stale)

    def set_trial_state_values(self, trial_id, state, values=None):
        if trial_id == self._dies_at:
            raise SystemExit("killed")
        return self._storage.set_trial_state_values(trial_id, state, values)


def _running(study: optuna.Study, n: int) -> list[optuna.Trial]:
    trials = [study.ask() for _ in range(n)]
    for trial in trials:
        trial.suggest_float("x", 0.0, 1.0)
    return trials


def test_each_stale_trial_is_queued_again_before_its_fail():
    study = optuna.create_study()
    a, b = _running(study, 2)
    real = study._storage
    study._storage = _Dies(real, [a._trial_id, b._trial_id], dies_at=b._trial_id)
    try:
        with pytest.raises(SystemExit):
            attempts.fail_stale_trials(study)
    finally:
        study._storage = real
    first, second, rerun_a, rerun_b = study.trials
    assert first.state == TrialState.FAIL and rerun_a.params == first.params
    assert second.state == TrialState.RUNNING  # died before its FAIL: still stale, and
    assert rerun_b.state == TrialState.WAITING and rerun_b.params == second.params  # queued
    assert stale.claimed(study, second._trial_id) == rerun_b._trial_id
