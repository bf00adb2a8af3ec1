"""The pruner's decision each epoch (tunecb.oracle.pruning) is Optuna's, while a database
study's finished trials are read once each (tunecb.storage.finished), not every running trial
again at every epoch (what made a report's p99 grow with the workers in benchmarks/scale.py)."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from tunecb.oracle.pruning import should_prune
from tunecb.storage.finished import FinishedTrials
from tunecb.storage.urls import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def study(tmp_path) -> optuna.Study:
    storage = open_storage(f"sqlite:///{tmp_path}/s.db", tmp_path)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    study = optuna.create_study(storage=storage, direction="maximize", pruner=pruner)
    for number, top in enumerate([0.2, 0.4, 0.6, 0.8]):
        trial = study.ask()
        for step in range(1, 4):
            trial.report(top * step / 3, step=step)
        study.tell(
            trial, top if number != 3 else None, state=None if number != 3 else TrialState.PRUNED
        )
    return study


def test_decisions_are_optunas_on_a_database_study(study):
    for value in (0.1, 0.3, 0.5):  # below, at and above the median
        trial = study.ask()
        trial.report(value, step=2)
        assert should_prune(trial) == trial.should_prune()
        study.tell(trial, state=TrialState.FAIL)


def test_only_trials_finished_since_the_last_read_are_loaded(study, monkeypatch):
    backend = study._storage._backend
    loaded: list[set[int]] = []
    real = type(backend)._get_trials

    def counting(self, study_id, states, included_trial_ids, trial_id_greater_than):
        loaded.append(set(included_trial_ids))
        return real(self, study_id, states, included_trial_ids, trial_id_greater_than)

    running = [study.ask() for _ in range(5)]  # other workers' trials, running
    monkeypatch.setattr(type(backend), "_get_trials", counting)
    finished = FinishedTrials()
    complete = (TrialState.COMPLETE,)
    assert [t.number for t in finished.read(study, complete)] == [0, 1, 2]
    assert len(loaded) == 1 and len(loaded[0]) == 4  # the finished ones, none running
    assert [t.number for t in finished.read(study, complete)] == [0, 1, 2]
    assert len(loaded) == 1  # nothing new: no trial loaded
    monkeypatch.setattr(type(backend), "_get_trials", real)
    study.tell(running[0], 0.9)
    monkeypatch.setattr(type(backend), "_get_trials", counting)
    assert [t.number for t in finished.read(study, complete)] == [0, 1, 2, 4]
    assert loaded[1] == {running[0]._trial_id}
    assert [t.number for t in finished.read(study, (TrialState.PRUNED,))] == [3]


def test_other_storages_are_read_as_they_are():
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(FinishedTrials().read(study, (TrialState.COMPLETE,))) == 2


def test_two_databases_in_one_process_are_never_mixed(tmp_path):
    # Trial ids start at 1 in every database: a cache keyed by id alone answered the second
    # database's pruner with the first one's trials (seen when tests shared a process).
    reader = FinishedTrials()
    for name, value in (("a", 0.25), ("b", 0.75)):
        storage = open_storage(f"sqlite:///{tmp_path}/{name}.db", tmp_path)
        study = optuna.create_study(storage=storage)
        study.optimize(lambda t, v=value: v + 0 * t.suggest_float("x", 0, 1), n_trials=2)
        assert [t.value for t in reader.read(study, (TrialState.COMPLETE,))] == [value, value]
