"""The ask-run-tell loop (:mod:`tunecb.execution.loop`) with a fake runner: no Keras, no fit,
a real in-memory Optuna study. Each test runs in milliseconds, so a change to how trials are
scheduled is tested here first."""

from __future__ import annotations

import math
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
from tunecb.oracle import attempts, attrs, budget, promotions
from tunecb.oracle.outcome import COMPLETE, FAIL, PRUNED, TrialOutcome
from tunecb.storage import scan_turns

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


# -- the end of a search: idle workers (issue 24: 200 PostgreSQL workers polled ~0.7 of a core)


class FakeFleet:
    """A fake clock and the fleet's turn to look for stale trials (what
    :mod:`tunecb.storage.scan_turns` keeps in the database), for the loop's idle waits."""

    def __init__(self, study: optuna.Study, interval: float) -> None:
        self.study, self.interval = study, interval
        self.now, self.last_look = 0.0, -math.inf
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        assert self.now < 1000, "an idle worker waited for ever"

    def take(self, study: optuna.Study, every_s: float) -> bool:
        if self.now - self.last_look < every_s:
            return False
        self.last_look = self.now
        return True

    def status(self, study: optuna.Study, every_s: float) -> scan_turns.Status:
        trials = study.get_trials(deepcopy=False)
        return scan_turns.Status(
            running=sum(t.state == TrialState.RUNNING for t in trials),
            waiting=sum(t.state == TrialState.WAITING for t in trials),
            due=self.now - self.last_look >= every_s,
        )

    def install(self, monkeypatch, grace: float) -> None:
        clock = SimpleNamespace(time=lambda: self.now, monotonic=lambda: self.now, sleep=self.sleep)
        monkeypatch.setattr(loop, "time", clock)
        monkeypatch.setattr(attempts, "heartbeat_interval", lambda study: self.interval)
        monkeypatch.setattr(attempts, "grace_period", lambda study: grace)
        monkeypatch.setattr(scan_turns, "take", self.take)
        monkeypatch.setattr(scan_turns, "status", self.status)


def test_idle_waits_double_up_to_the_grace_period_jittered_and_start_again_after_a_trial(
    monkeypatch,
):
    waits = loop.IdleWaits()
    monkeypatch.setattr(loop.random, "uniform", lambda low, high: high)
    assert [waits.next(2.0, 8.0) for _ in range(5)] == [2.0, 4.0, 8.0, 8.0, 8.0]
    waits.reset()
    assert waits.next(2.0, 8.0) == 2.0
    monkeypatch.setattr(loop.random, "uniform", lambda low, high: low)  # jittered: half to all
    assert waits.next(2.0, 8.0) == 2.0  # half of 4
    assert loop.IdleWaits().next(30.0, 10.0) == 15.0  # a grace shorter than a beat: one beat


def test_an_idle_worker_reads_one_status_a_wake_until_there_is_something_to_do(study, monkeypatch):
    fleet = FakeFleet(study, interval=2.0)
    fleet.install(monkeypatch, grace=8.0)
    study.ask()  # another worker's trial runs on
    fleet.last_look = 1e9  # another worker looked: no look due for a long while
    seen = []
    status = fleet.status
    monkeypatch.setattr(scan_turns, "status", lambda s, e: seen.append(1) or status(s, e))
    monkeypatch.setattr(loop.random, "uniform", lambda low, high: high)
    stops = iter([False] * 4 + [True])
    loop._wait_idle(study, 2.0, loop.IdleWaits(), lambda: next(stops))
    assert fleet.sleeps == [2.0, 4.0, 8.0, 8.0, 8.0]  # backed off; stopped when asked
    assert len(seen) == 4  # one status read a wake, none after the stop
    fleet.sleeps.clear()
    fleet.last_look = fleet.now - 1.0  # another worker looked 1 s ago: the next look is due
    assert loop._wait_idle(study, 2.0, loop.IdleWaits(), lambda: False)  # in 2 s: taken
    assert fleet.sleeps == [2.0] and fleet.last_look == fleet.now
    fleet.sleeps.clear()
    fleet.last_look = 1e9  # no look due: with the promotion pruner, back to the loop after
    monkeypatch.setattr(promotions, "active", lambda study: True)  # a wait (a paused one
    assert not loop._wait_idle(study, 2.0, loop.IdleWaits(), lambda: False)  # may go on)
    assert fleet.sleeps == [2.0]
    monkeypatch.setattr(promotions, "active", lambda study: False)
    fleet.sleeps.clear()
    study.enqueue_trial({"x": 0.5})  # a rerun is queued: the next wake goes to pop it
    assert not loop._wait_idle(study, 2.0, loop.IdleWaits(), lambda: False)
    assert fleet.sleeps == [2.0]


def test_the_dead_trial_scan_at_the_end_runs_only_on_this_workers_turn(study, monkeypatch):
    run(study, Limits(n_trials=1))
    study.ask()  # another worker's trial, past the budget here: this worker is idle
    monkeypatch.setattr(attempts, "heartbeat_interval", lambda study: 2)
    scans = []
    monkeypatch.setattr(attempts, "recover_dead_trials", lambda study: scans.append(1) or [])
    monkeypatch.setattr(attempts, "recover_unclaimed", lambda study, trials: False)
    assert loop._next_trial(study, Limits(n_trials=1), 0, "me", None, looked=False) is loop.IDLE
    assert scans == []
    assert loop._next_trial(study, Limits(n_trials=1), 0, "me", None, looked=True) is loop.IDLE
    assert scans == [1]


def test_a_trial_dying_after_the_others_went_idle_is_rerun_by_an_idle_worker(study, monkeypatch):
    # The other workers went idle; the last trial's worker (another machine) dies. This
    # worker, idle and backing off, gets the fleet's turn, finds the trial stale, and runs
    # its rerun, within the grace period + one turn + one wait of it dying.
    interval, grace, died_at = 2.0, 8.0, 25.0
    run(study, Limits(n_trials=1))
    fleet = FakeFleet(study, interval)
    fleet.install(monkeypatch, grace)
    other = study.ask()
    other.suggest_float("x", 0.0, 1.0)
    other.set_user_attr(attrs.WORKER, "elsewhere:4242")  # claimed on another machine
    looks, found = [], []

    def fail_stale_trials(study):  # the stale rule: silent longer than the grace period
        looks.append(fleet.now)
        if fleet.now - died_at > grace and study.trials[other.number].state == TrialState.RUNNING:
            attempts.fail_and_requeue(study, other.number, attrs.WORKER_DIED, "stale")
            found.append(fleet.now)

    monkeypatch.setattr(attempts, "fail_stale_trials", fail_stale_trials)
    reason, runner, _, log = run(study, Limits(n_trials=2))
    assert reason == STOP_BUDGET
    rerun = study.trials[-1]
    assert rerun.state == TrialState.COMPLETE and rerun.params == other.params
    assert log == [f"started {rerun.number}", f"run {rerun.number}", f"finished {rerun.number}"]
    assert died_at + grace < found[0] <= died_at + grace + interval + grace
    # the worker backed off to the grace period, and looked about once an interval at most
    assert max(fleet.sleeps) > interval and max(fleet.sleeps) <= grace
    assert len(looks) <= found[0] / interval + 1


def test_a_new_trial_is_asked_without_reading_every_trial_for_a_queued_one(study, monkeypatch):
    # study.ask() looks for queued trials first: a whole read of every running trial on a
    # database (then the sampler reads them again). The light rows just read say whether
    # one is queued: it is popped first; else no look.
    reads = []
    real = study._storage.get_all_trials

    def get_all_trials(study_id, deepcopy=True, states=None):
        reads.append(states)
        return real(study_id, deepcopy=deepcopy, states=states)

    monkeypatch.setattr(study._storage, "get_all_trials", get_all_trials)
    trial = loop._next_trial(study, Limits(n_trials=3), 0, "me", None)
    assert (trial.number, study.trials[0].state) == (0, TrialState.RUNNING)
    assert (TrialState.WAITING,) not in reads  # no look for a queued trial
    study.enqueue_trial({"x": 0.25})  # trial 1, queued: popped before a new one is made
    trial = loop._next_trial(study, Limits(n_trials=3), 0, "me", None)
    assert (trial.number, len(study.trials)) == (1, 2)
    assert trial.suggest_float("x", 0.0, 1.0) == 0.25
    for number in (0, 1):
        study.tell(number, 0.5)
    _, runner, _, _ = run(study, Limits(n_trials=4))  # and the loop runs on as before
    assert sorted(runner.params) == [2, 3]
