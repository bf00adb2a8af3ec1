"""A trial failed as stale by another worker while it still ran here (its heartbeat came late
on a busy machine or storage: benchmarks/scale.py found it with 20 workers on PostgreSQL) is
not this worker's to tell any more: the loop logs it and goes on with the next trial (the
other worker queued its parameters again), instead of dying on "Cannot tell a FAIL trial"."""

from __future__ import annotations

import logging

import optuna
import pytest
from optuna.trial import TrialState
from test_loop import FakeRunner, RecordingSink

from tunecb.execution._base import STOP_BUDGET, Limits
from tunecb.execution.loop import run_trials
from tunecb.oracle import attempts, budget
from tunecb.storage import stale as reruns

optuna.logging.set_verbosity(optuna.logging.WARNING)


def stale(study: optuna.Study, trial: optuna.Trial) -> None:
    """What another worker's stale-trial check does: FAIL, and a WAITING copy."""
    study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    reruns.queue(study, study._storage.get_trial(trial._trial_id))


class TakenRunner(FakeRunner):
    """Trial 1 is failed as stale mid-run: before its next report (``when="report"``), or
    after its last one, before the loop tells it (``when="tell"``)."""

    def __init__(self, study: optuna.Study, when: str) -> None:
        super().__init__()
        self.study, self.when = study, when

    def run(self, trial: optuna.Trial):
        result = super().run(trial)
        if trial.number == 1:
            stale(self.study, trial)
            if self.when == "report":
                trial.report(0.1, step=1)  # raises: the trial is finished
        return result


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.text = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.text += record.getMessage() + "\n"


@pytest.fixture
def caplog():
    """tunecb's log (another test may have stopped it from propagating to pytest's)."""
    lines, logger = Lines(), logging.getLogger("tunecb")
    logger.addHandler(lines)
    yield lines
    logger.removeHandler(lines)


def run_with(when: str, caplog):
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    runner = TakenRunner(study, when)
    reason = run_trials(study, runner, Limits(n_trials=3), RecordingSink(study, []), seed=0)
    return study, runner, reason


def test_a_trial_taken_before_a_report_is_left_and_its_copy_runs(caplog):
    study, runner, reason = run_with("report", caplog)
    assert reason == STOP_BUDGET
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, *[TrialState.COMPLETE] * 2]
    assert study.trials[2].params == study.trials[1].params  # the copy ran
    assert budget.finished(study.get_trials(deepcopy=False)) == 3
    assert "trial 1 was failed by another worker" in caplog.text


def test_a_trial_taken_before_its_tell_is_left_and_its_copy_runs(caplog):
    study, runner, reason = run_with("tell", caplog)
    assert reason == STOP_BUDGET
    assert [t.state for t in study.trials][1] == TrialState.FAIL
    assert study.trials[2].params == study.trials[1].params
    assert budget.finished(study.get_trials(deepcopy=False)) == 3


def test_only_a_finished_trial_counts_as_taken():
    finished = optuna.exceptions.UpdateFinishedTrialError("Trial#1 has already finished")
    assert attempts.taken(finished, 1)
    assert attempts.taken(ValueError("Cannot tell a FAIL trial."), 1)
    assert not attempts.taken(ValueError("The number of the values 1 did not match"), 1)
    assert not attempts.taken(RuntimeError("Cannot tell a FAIL trial."), 1)


def test_two_workers_recovering_one_dead_trial_do_not_crash_the_second():
    """The second finds it RUNNING, then failed by the first before it writes: it leaves it
    (benchmarks/scale.py: two replacements of killed workers starting together)."""
    study = optuna.create_study()
    trial = study.ask()
    running = study._storage.get_trial(trial._trial_id)  # what the second saw
    assert attempts.fail_and_requeue(study, trial.number, "worker_died", "gone")  # the first
    study._storage.get_trial = lambda trial_id: running
    assert attempts.fail_and_requeue(study, trial.number, "worker_died", "gone") is False
    assert len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) == 1
