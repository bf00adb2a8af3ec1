"""The ask-run-tell loop (:mod:`tunecb.execution.loop`) with a fake runner: no Keras, no fit,
a real in-memory Optuna study. Each test runs in milliseconds, so a change to how trials are
scheduled is tested here first."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

from tunecb.errors import DiskFull
from tunecb.execution import loop
from tunecb.execution._base import (
    RECYCLE_MEMORY,
    RECYCLE_TRIALS,
    STOP_BUDGET,
    STOP_REQUESTED,
    STOP_TIMEOUT,
    Limits,
)
from tunecb.execution.loop import run_trials
from tunecb.oracle import attempts, attrs, budget
from tunecb.oracle.outcome import COMPLETE, FAIL, PRUNED, TrialOutcome

optuna.logging.set_verbosity(optuna.logging.WARNING)


def outcome(number: int, state: str = COMPLETE, value: float | None = 0.5) -> TrialOutcome:
    return TrialOutcome(
        number=number, state=state, value=value if state == COMPLETE else None, best_epoch=1,
        epochs_run=1, stop_reason="completed" if state == COMPLETE else state.lower(),
        error="boom" if state == FAIL else None, checkpoint=None, duration_s=0.0, n_params=1,
        seed=0, lr_schedule="none",
    )  # fmt: skip


class FakeRunner:
    """Draws ``x`` as a model would, and returns what ``plan(number)`` says (an outcome
    state, or an exception to raise); records the order of calls in ``log``."""

    def __init__(
        self, log: list[str] | None = None, plan: Callable[[int], object] | None = None
    ) -> None:
        self.log = [] if log is None else log
        self.plan = plan or (lambda number: COMPLETE)
        self.params: dict[int, float] = {}

    def run(self, trial: optuna.Trial) -> TrialOutcome:
        self.params[trial.number] = trial.suggest_float("x", 0.0, 1.0)
        self.log.append(f"run {trial.number}")
        what = self.plan(trial.number)
        if isinstance(what, BaseException):
            raise what
        return outcome(trial.number, what, value=self.params[trial.number])


class RecordingSink:
    """A :class:`tunecb.execution._base.Sink` that records what the loop reports, and the
    state the storage had for a trial when it was reported finished."""

    def __init__(self, study: optuna.Study, log: list[str]) -> None:
        self.study, self.log = study, log
        self.told: dict[int, TrialState] = {}

    def started(self, number: int) -> None:
        self.log.append(f"started {number}")

    def epoch(self, number: int, epoch: int, value: float | None) -> None:
        self.log.append(f"epoch {number}")

    def finished(self, result: TrialOutcome) -> None:
        self.log.append(f"finished {result.number}")
        self.told[result.number] = self.study.get_trials(deepcopy=False)[result.number].state


@pytest.fixture
def study() -> optuna.Study:
    return optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))


def run(study, limits, plan=None, seed=0, **kwargs):
    log: list[str] = []
    runner, sink = FakeRunner(log, plan), RecordingSink(study, log)
    reason = run_trials(study, runner, limits, sink, seed, **kwargs)
    return reason, runner, sink, log


def states(study: optuna.Study) -> list[str]:
    return [t.state.name for t in study.get_trials(deepcopy=False)]


def test_asks_until_the_budget_is_spent_and_tells_each_outcome(study):
    reason, runner, sink, log = run(study, Limits(n_trials=3))
    assert reason == STOP_BUDGET
    assert states(study) == ["COMPLETE"] * 3
    assert [t.value for t in study.trials] == [runner.params[n] for n in range(3)]
    assert {t.user_attrs[attrs.WORKER] for t in study.trials} == {attrs.worker_id()}
    # started before the runner, finished after the trial was told
    assert log == ["started 0", "run 0", "finished 0", "started 1", "run 1", "finished 1",
                   "started 2", "run 2", "finished 2"]  # fmt: skip
    assert set(sink.told.values()) == {TrialState.COMPLETE}


def test_trials_already_in_the_study_count_against_the_budget(study):
    run(study, Limits(n_trials=2))
    reason, runner, _, _ = run(study, Limits(n_trials=3))
    assert reason == STOP_BUDGET
    assert list(runner.params) == [2]
    reason, runner, _, _ = run(study, Limits(n_trials=3))
    assert (reason, runner.params) == (STOP_BUDGET, {})


def test_pruned_and_failed_outcomes_are_told_with_their_state_and_count(study):
    plan = {0: COMPLETE, 1: PRUNED, 2: FAIL}.__getitem__
    reason, _, sink, _ = run(study, Limits(n_trials=3), plan)
    assert reason == STOP_BUDGET
    assert states(study) == ["COMPLETE", "PRUNED", "FAIL"]
    assert sink.told == {0: TrialState.COMPLETE, 1: TrialState.PRUNED, 2: TrialState.FAIL}


def test_no_trial_starts_after_the_deadline(study, monkeypatch):
    now = [100.0]
    monkeypatch.setattr(loop, "time", SimpleNamespace(time=lambda: now[0], sleep=lambda s: None))

    def plan(number: int) -> str:
        now[0] += 10.0  # each trial takes 10 s
        return COMPLETE

    reason, runner, _, _ = run(study, Limits(n_trials=10, deadline=125.0), plan)
    assert reason == STOP_TIMEOUT
    assert list(runner.params) == [0, 1, 2]  # started at 100, 110, 120; not at 130
    reason, runner, _, _ = run(study, Limits(n_trials=10, deadline=125.0), plan)
    assert (reason, runner.params) == (STOP_TIMEOUT, {})


def test_a_worker_is_recycled_after_its_trial_limit(study):
    reason, runner, _, _ = run(study, Limits(n_trials=None, max_trials=2))
    assert reason == RECYCLE_TRIALS
    assert list(runner.params) == [0, 1]


def test_a_worker_is_recycled_above_its_memory_limit(study):
    assert loop.rss_mb() > 1
    reason, runner, _, _ = run(study, Limits(n_trials=5, max_rss_mb=1.0))
    assert reason == RECYCLE_MEMORY
    assert list(runner.params) == [0]


def test_should_stop_is_asked_before_each_trial(study):
    asked = []

    def should_stop() -> bool:
        asked.append(len(study.trials))
        return len(study.trials) >= 2

    reason, runner, _, _ = run(study, Limits(n_trials=5), should_stop=should_stop)
    assert reason == STOP_REQUESTED
    assert list(runner.params) == [0, 1]
    assert asked == [0, 1, 2]


def test_after_tell_runs_after_each_told_trial(study):
    seen = []
    after = lambda s: seen.append(states(s)[-1])  # noqa: E731
    run(study, Limits(n_trials=2), after_tell=after)
    assert seen == ["COMPLETE", "COMPLETE"]


def test_an_exception_from_the_runner_fails_its_trial_and_goes_on(study):
    plan = {0: COMPLETE, 1: ValueError("a bug")}.__getitem__
    with pytest.raises(ValueError, match="a bug"):
        run(study, Limits(n_trials=5), plan)
    assert states(study) == ["COMPLETE", "FAIL"]


def test_ctrl_c_in_a_trial_fails_it_queues_it_again_and_stops(study):
    plan = {0: COMPLETE, 1: KeyboardInterrupt()}.__getitem__
    with pytest.raises(KeyboardInterrupt):
        run(study, Limits(n_trials=3), plan)
    interrupted = study.trials[1]
    assert interrupted.state == TrialState.FAIL
    assert interrupted.user_attrs[attrs.STOP_REASON] == attrs.INTERRUPTED
    assert states(study) == ["COMPLETE", "FAIL", "WAITING"]
    # The next run takes the queued copy first (same parameters) and the budget counts the
    # interrupted trial once.
    reason, runner, _, _ = run(study, Limits(n_trials=3))
    assert reason == STOP_BUDGET
    assert list(runner.params) == [2, 3]
    assert study.trials[2].params == interrupted.params
    assert budget.finished(study.get_trials(deepcopy=False)) == 3


def test_a_ctrl_c_the_fit_swallowed_stops_the_loop_before_the_next_trial(study):
    def plan(number: int) -> str:
        try:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, lost inside the "fit"
            time.sleep(1.0)  # the handler raises here
        except KeyboardInterrupt:
            pass
        return COMPLETE

    with pytest.raises(KeyboardInterrupt, match="lost inside the fit"):
        run(study, Limits(n_trials=3), plan)
    assert states(study) == ["COMPLETE"]


def test_a_full_disk_in_a_trial_queues_it_again_and_stops(study):
    plan = {0: DiskFull("r/s/trials/0/best.keras", 100, 0, fix="free some space")}.__getitem__
    with pytest.raises(DiskFull):
        run(study, Limits(n_trials=3), plan)
    assert states(study) == ["FAIL", "WAITING"]
    assert study.trials[0].user_attrs[attrs.STOP_REASON] == attrs.INTERRUPTED


def test_a_trial_asked_past_the_budget_in_a_race_is_discarded_not_run(study, monkeypatch):
    run(study, Limits(n_trials=2))
    real, calls = budget.may_ask, []

    def may_ask_once_too_often(trials, n_trials):  # another worker asked meanwhile
        calls.append(n_trials)
        return True if len(calls) == 1 else real(trials, n_trials)

    monkeypatch.setattr(budget, "may_ask", may_ask_once_too_often)
    monkeypatch.setattr(budget, "only_waiting", lambda trials, n_trials: False)  # the same read
    reason, runner, _, log = run(study, Limits(n_trials=2))
    assert (reason, runner.params, log) == (STOP_BUDGET, {}, [])
    assert study.trials[2].user_attrs[attrs.STOP_REASON] == attrs.DISCARDED
    assert budget.finished(study.get_trials(deepcopy=False)) == 2


def test_with_the_budget_spent_but_for_a_queued_trial_no_new_trial_is_asked(study, monkeypatch):
    # At the end of a search every idle worker saw the queued rerun, asked, and all but
    # the one that popped it created a new trial past the budget, discarded (98 at 100
    # workers, benchmarks/scale.py): now they pop the queued trial or wait.
    run(study, Limits(n_trials=2))
    study.enqueue_trial({"x": 0.5})  # counts: the budget is spent but for it
    seen = attempts.light_trials(study)  # this worker sees it WAITING ...
    study._storage.set_trial_state_values(seen[-1]._trial_id, TrialState.RUNNING)  # ... lost
    with monkeypatch.context() as patched:
        patched.setattr(attempts, "light_trials", lambda study: seen)
        assert loop._next_trial(study, Limits(n_trials=3), 0, "me", None) is None
    assert len(study.trials) == 3  # no trial created
    study.enqueue_trial({"x": 0.25})
    trial = loop._next_trial(study, Limits(n_trials=4), 0, "me", None)
    assert (trial.number, len(study.trials)) == (3, 4)  # popped, nothing created
    assert study.trials[3].state == TrialState.RUNNING


def test_a_young_unclaimed_trial_does_not_hold_back_a_dead_workers_trial(study, monkeypatch):
    # With the budget spent, a trial asked but not claimed yet (waited for up to a minute)
    # made the loop skip the dead-trial scan at every turn until it was claimed or aged.
    run(study, Limits(n_trials=2))
    monkeypatch.setattr(loop, "time", SimpleNamespace(time=time.time, sleep=lambda s: None))
    monkeypatch.setattr(attempts, "recover_unclaimed", lambda study, trials: True)  # young
    scans = []
    monkeypatch.setattr(attempts, "recover_dead_trials", lambda study: scans.append(1) or [])
    assert loop._next_trial(study, Limits(n_trials=2), 0, "me", None) is None  # looks again
    assert scans == [1]


def test_stale_trials_are_looked_for_at_most_twice_a_heartbeat_interval(study, monkeypatch):
    # Each look is a query (10 ms of CPU at 100 workers); it ran at every turn of the loop,
    # also after each trial discarded or lost to another worker.
    looks = []
    monkeypatch.setattr(attempts, "heartbeat_interval", lambda study: 60)
    monkeypatch.setattr(attempts, "fail_stale_trials", lambda study: looks.append(1))
    assert run(study, Limits(n_trials=4))[0] == STOP_BUDGET
    assert len(looks) == 1


def test_each_trial_draws_from_the_seed_and_its_number_alone():
    drawn = []
    for _ in range(2):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler())
        _, runner, _, _ = run(study, Limits(n_trials=3), seed=7)
        drawn.append(runner.params)
    assert drawn[0] == drawn[1]
    assert len(set(drawn[0].values())) == 3
