"""A trial this process claimed and left RUNNING when its search ended (a full disk, a lost
storage) is recovered by the next search in the same process (a notebook kernel): its pid
is alive, but no search of it runs the trial any more."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from tunecb.oracle import attempts, attrs


def _left_running(tmp_path) -> optuna.Study:
    from tunecb.storage.urls import open_storage

    study = optuna.create_study(study_name="own", storage=open_storage(None, tmp_path))
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    attempts.claim(trial, attrs.worker_id())  # this process, as a search's loop claims
    return study


def test_a_trial_this_process_left_running_is_recovered_by_its_next_search(tmp_path):
    study = _left_running(tmp_path)
    with attempts.running_here(study, 0):  # its search still runs it: alive
        assert attempts.recover_dead_trials(study) == []
    assert study.trials[0].state == TrialState.RUNNING
    assert attempts.recover_dead_trials(study) == [0]  # that search ended: dead, run again
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [TrialState.FAIL, TrialState.WAITING]
