"""A worker killed between asking for a trial and claiming it leaves a RUNNING trial with no
owner: no pid check, owner or heartbeat would ever free it (benchmarks/scale.py found one in
50 workers with 10 kills: the study ended a trial short). Before it stops, the loop waits for
such a trial to be claimed, and fails and queues it again once it is unclaimed too long."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState
from test_loop import FakeRunner, RecordingSink

from tunecb.execution import loop
from tunecb.execution._base import STOP_BUDGET, Limits
from tunecb.oracle import attempts, attrs, budget

optuna.logging.set_verbosity(optuna.logging.WARNING)


def orphan_study() -> optuna.Study:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    study.ask()  # trial 0: asked by a worker that died before claiming it
    return study


def test_an_unclaimed_trial_is_queued_again_and_the_budget_is_met(monkeypatch):
    monkeypatch.setattr(attempts, "UNCLAIMED_S", 0.0)
    monkeypatch.setattr(loop.time, "sleep", lambda s: None)
    study = orphan_study()
    reason = loop.run_trials(study, FakeRunner(), Limits(n_trials=2), RecordingSink(study, []), 0)
    assert reason == STOP_BUDGET
    orphan = study.trials[0]
    assert orphan.state == TrialState.FAIL
    assert orphan.user_attrs[attrs.STOP_REASON] == attrs.WORKER_DIED
    assert budget.finished(study.get_trials(deepcopy=False)) == 2
    assert study.trials[2].system_attrs[attrs.FAILED_TRIAL] == 0  # its copy ran


def test_a_young_unclaimed_trial_is_waited_for_not_taken(monkeypatch):
    study = orphan_study()
    slept = []

    def sleep(seconds: float) -> None:  # meanwhile its worker claims and finishes it
        slept.append(seconds)
        trial = study.trials[0]
        study._storage.set_trial_user_attr(trial._trial_id, attrs.WORKER, "h:1")
        study.tell(trial.number, 1.0)

    monkeypatch.setattr(loop.time, "sleep", sleep)
    reason = loop.run_trials(study, FakeRunner(), Limits(n_trials=2), RecordingSink(study, []), 0)
    assert reason == STOP_BUDGET and slept == [1.0]
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
