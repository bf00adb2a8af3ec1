"""The ask-run-tell loop every executor runs, in whatever process trials run.

Used in the ``tunecb search`` process itself and in each worker process or Dask task,
with the same budget rule (:mod:`tunecb.oracle.budget`), so that processes and machines
sharing one study run exactly ``n_trials`` trials between them, and the same seeding
rule (:func:`tunecb.study.samplers_pruners.reseed`), so that none replays another's draws.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState

from tunecb import interrupts
from tunecb.errors import DiskFull, first_line
from tunecb.execution._base import (
    RECYCLE_MEMORY,
    RECYCLE_TRIALS,
    STOP_BUDGET,
    STOP_REQUESTED,
    STOP_TIMEOUT,
    Limits,
    Sink,
)
from tunecb.execution.watchdog import stuck_trial_guard
from tunecb.oracle import attempts, attrs, budget, given, promotions
from tunecb.oracle.outcome import TrialOutcome
from tunecb.storage import scan_turns
from tunecb.storage.reconnect import lost_for_good
from tunecb.study.samplers_pruners import reseed

STALE_CHECK_SHARE = 0.5  # stale trials are looked for at most every this share of a beat
IDLE = "idle"  # _next_trial: nothing to run until the last running trials end (or one dies)


class Runner(Protocol):
    """Runs one trial to its outcome (:class:`tunecb.training.runner.TrialRunner`; a fake
    one in ``tests/unit/test_loop.py``)."""

    def run(self, trial: optuna.Trial) -> TrialOutcome: ...


def rss_mb() -> float:
    """This process's resident memory in MiB (Linux ``/proc``; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_trials(
    study: optuna.Study,
    runner: Runner,
    limits: Limits,
    sink: Sink,
    seed: int | None,
    should_stop: Callable[[], bool] = lambda: False,
    after_tell: Callable[[optuna.Study], Any] | None = None,
) -> str:
    """Run trials until the budget, the deadline or a recycling limit is reached.

    Each trial's draws are seeded from ``(seed, trial number)``. ``after_tell(study)`` runs
    after each trial is told (``--keep-checkpoints``' pass). Returns why it stopped
    (``budget``, ``timeout``, ``stopped``, ``recycle_trials``, ``recycle_memory``). A trial
    interrupted by Ctrl-C is failed (``interrupted``) and queued again, and the interrupt
    goes on; any other exception escaping the runner fails the trial too.
    """
    with interrupts.watched():
        return _run_trials(study, runner, limits, sink, seed, should_stop, after_tell)


def _run_trials(
    study: optuna.Study,
    runner: Runner,
    limits: Limits,
    sink: Sink,
    seed: int | None,
    should_stop: Callable[[], bool],
    after_tell: Callable[[optuna.Study], Any] | None,
) -> str:
    me = attrs.worker_id()
    ran = 0
    checked = -math.inf  # when this process last looked for stale trials
    idle = IdleWaits()
    turn = False  # an idle wait took the fleet's turn to look (storage.scan_turns)
    while True:
        interrupts.check()  # a Ctrl-C whose KeyboardInterrupt the last trial's fit lost
        if should_stop():
            return STOP_REQUESTED
        if _past_deadline(limits):
            return STOP_TIMEOUT
        # With an RDB storage and a heartbeat, trials of processes that stopped beating
        # (another machine died) are failed here and queued again by Optuna's callback;
        # at most twice a heartbeat interval (a trial goes stale after three): not again
        # after each trial discarded or lost to another worker; and once an interval by
        # one worker of the whole fleet (storage.scan_turns): the answer is the same for all.
        interval = attempts.heartbeat_interval(study)
        looked = not interval  # without a heartbeat each process looks for its dead trials
        if interval and (turn or time.monotonic() - checked >= interval * STALE_CHECK_SHARE):
            if turn or scan_turns.take(study, interval):
                attempts.fail_stale_trials(study)
                looked = True
            checked, turn = time.monotonic(), False
        resumable = getattr(runner, "can_resume", None)
        held = getattr(runner, "holds", None)  # paused trials whose models it keeps
        trial = _next_trial(study, limits, seed, me, resumable, looked=looked, held=held)
        if trial is None:  # waited for another machine's trial
            continue
        if trial is IDLE:
            turn = _wait_idle(study, interval or 1, idle, lambda: _stops(should_stop, limits))
            continue
        if isinstance(trial, str):
            return trial
        idle.reset()
        # registered before its claim is written: another thread of this process (a Dask
        # worker's) must never see this process's claim and judge the trial dead
        with attempts.running_here(study._storage, trial._trial_id):
            try:
                attempts.claim(trial, me)
            except DiskFull as exc:  # a RUNNING trial without its worker: nothing frees it
                _stopped_by_full_disk(study, trial.number, exc)
                raise
            except optuna.exceptions.UpdateFinishedTrialError as exc:  # failed before its claim
                attempts.taken(exc, trial.number)
                continue
            if not _continuation(trial) and (
                given.repeated(study, trial)
                or not attempts.rerun_due(study, trial)  # a second copy of one attempt's rerun
                or not budget.within_budget(
                    attempts.light_trials(study), trial.number, limits.n_trials
                )
            ):
                attempts.discard(study, trial)
                continue  # the next may_ask says whether anything is left
            sink.started(trial.number)
            stuck = lambda t=trial: attempts.fail_and_requeue(  # noqa: E731
                study, t.number, attrs.INTERRUPTED, "interrupted while stuck inside its fit"
            )  # Ctrl-C or SIGTERM the fit cannot answer (blocked in C++): tunecb.execution.watchdog
            try:
                with attempts.Heartbeat(study._storage, trial._trial_id), stuck_trial_guard(stuck):
                    outcome = runner.run(trial)
            except KeyboardInterrupt:
                with _interrupts_held():  # a second Ctrl-C must not cut the requeue short
                    attempts.fail_and_requeue(
                        study, trial.number, attrs.INTERRUPTED, "interrupted by the user (SIGINT)"
                    )
                raise
            except DiskFull as exc:
                _stopped_by_full_disk(study, trial.number, exc)
                raise
            except optuna.exceptions.UpdateFinishedTrialError as exc:
                attempts.taken(exc, trial.number)  # failed as stale meanwhile: it runs again
                continue
            except BaseException as exc:
                if lost_for_good(exc):  # the storage stayed away past its window: not the trial's
                    _left_to_recovery(study, trial.number)  # fault; this worker stops (exit 1)
                    raise
                study.tell(trial, state=TrialState.FAIL)
                raise
            try:
                if outcome.stop_reason == attrs.PAUSED:  # its ticket first: then it is told
                    promotions.pause(study, trial.number, outcome.epochs_run)
                if not attempts.tell(study, trial, outcome):
                    continue  # failed as stale meanwhile (attempts.taken): it runs again
            except DiskFull as exc:  # the journal's disk: the trial is still RUNNING
                _stopped_by_full_disk(study, trial.number, exc)
                raise
            if after_tell is not None:
                after_tell(study)
            sink.finished(outcome)
            ran += 1
            if limits.max_trials is not None and ran >= limits.max_trials:
                return RECYCLE_TRIALS
            if limits.max_rss_mb is not None and rss_mb() > limits.max_rss_mb:
                return RECYCLE_MEMORY


def _past_deadline(limits: Limits) -> bool:
    return limits.deadline is not None and time.time() >= limits.deadline


def _stops(should_stop: Callable[[], bool], limits: Limits) -> bool:
    """Whether the loop stops now: asked to, or past the deadline."""
    return should_stop() or _past_deadline(limits)


def _left_to_recovery(study: optuna.Study, number: int) -> None:
    """A trial whose worker lost the storage for good: queued again if the storage answers
    now, else left RUNNING for the others (its heartbeat stops; its process is gone)."""
    with contextlib.suppress(Exception):
        attempts.fail_and_requeue(
            study, number, attrs.WORKER_DIED, "its worker lost the connection to the storage"
        )


def _next_trial(
    study: optuna.Study, limits: Limits, seed: int | None, me: str,
    resumable: Callable[[int], bool] | None, looked: bool = True,
    held: Callable[[int], bool] | None = None,
) -> optuna.Trial | str | None:  # fmt: skip
    """The trial to run next: a promotable paused configuration's continuation (promotion
    pruner; not a new configuration, so no budget check), else a new one asked of the
    sampler. A stop reason when there is nothing to run; ``None`` after waiting; :data:`IDLE`
    when the budget is spent but other workers' trials still run (the caller waits).
    ``looked``: this process has the fleet's turn to look for dead trials (or needs none:
    :mod:`tunecb.storage.scan_turns`); ``held``: the paused trials whose models this
    worker keeps in memory, resumed first."""
    trial = promotions.next_continuation(study, me, resumable=resumable, held=held)
    if trial is not None:
        return trial
    trials = attempts.light_trials(study)  # not every running trial loaded whole again
    if not budget.may_ask(trials, limits.n_trials):
        # No new configuration will come: the best paused ones go on to the end.
        trial = promotions.next_continuation(study, me, last=True, resumable=resumable, held=held)
        if trial is not None:
            return trial
        # A worker died after ask, or after its claim but before its first heartbeat. Both
        # looks every turn: a young unclaimed trial (waited for up to a minute) must not hold
        # back the recovery of a dead worker's trial.
        unclaimed = attempts.recover_unclaimed(study, trials)
        if (looked and attempts.recover_dead_trials(study)) or unclaimed:
            time.sleep(1.0)
            return None
        interval = attempts.heartbeat_interval(study)
        if interval and any(t.state == TrialState.RUNNING for t in trials):
            # Another machine's trial may still die: wait until it finishes or goes
            # stale (then its rerun is ours to run), so the study ends complete.
            return IDLE
        return STOP_BUDGET
    if budget.only_waiting(trials, limits.n_trials):
        # Only queued trials may run: pop one, or wait; a new trial would be discarded.
        trial = _pop_waiting(study, trials)
        if trial is None:
            time.sleep(random.uniform(0.1, 0.5))
            return None
    else:
        # A queued trial first (a rerun, a given configuration), popped as ask would;
        # else a new one, asked without ask's own look for queued trials
        trial = _pop_waiting(study, trials) if _queued(trials) else None
        if trial is None:
            trial = _ask_new(study)
    reseed(study.sampler, seed, trial.number)
    return trial


def _queued(trials: list[Any]) -> bool:
    return any(t.state == TrialState.WAITING for t in trials)


def _ask_new(study: optuna.Study) -> optuna.Trial:
    """A new trial, as ``study.ask()`` makes one when no trial is queued. ``ask`` first looks
    for queued trials, a whole read of every running trial through Optuna's cache of a
    database storage (the sampler then reads them all again); the light rows the caller
    just read said none is queued. One queued meanwhile is popped at the next turn."""
    study._thread_local.cached_all_trials = None  # the sampler reads the study afresh
    return optuna.Trial(study, study._storage.create_new_trial(study._study_id))


class IdleWaits:
    """The waits of a worker idle at the end of a search, between two looks at the study:
    the first one heartbeat interval, each next one twice the last, up to the stale grace
    period; each a random share in [0.5, 1] of that (hundreds of idle workers must not wake
    at the same instants). After a trial ran, the first again.

    >>> waits = IdleWaits()
    >>> [waits.next(2.0, 8.0) <= cap for cap in (2.0, 4.0, 8.0, 8.0)]
    [True, True, True, True]
    """

    def __init__(self) -> None:
        self.delay: float | None = None
        self.waits = 0  # how many, for tests and benchmarks

    def next(self, interval: float, grace: float) -> float:
        """The next wait, in seconds."""
        cap = max(interval, grace)
        self.delay = interval if self.delay is None else min(cap, 2 * self.delay)
        self.waits += 1
        return self.delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.delay = None


def _wait_idle(
    study: optuna.Study, interval: float, idle: IdleWaits, stop: Callable[[], bool]
) -> bool:
    """Sleep until there may be something to do: a trial queued, none running any more, or
    the fleet's next look for stale trials due and taken by this worker (one statement a
    wake: :func:`tunecb.storage.scan_turns.status`; two more to take the turn); or
    ``stop()``. Without a database to read, or with the promotion pruner, after one wait.
    ``True``: this worker took the turn. A trial that dies is so failed and rerun within
    about its stale grace period, one heartbeat interval and one wait of the live idle
    worker that wakes first."""
    grace = attempts.grace_period(study) or interval
    while True:
        time.sleep(idle.next(interval, grace))
        if stop():
            return False
        seen = scan_turns.status(study, interval)
        if seen is None or seen.waiting or not seen.running:
            return False
        if promotions.active(study):  # a paused configuration may be promotable now: the
            return False  # loop looks (what tells it is in the side study's tickets)
        if seen.due and scan_turns.take(study, interval):
            return True


def _pop_waiting(study: optuna.Study, trials: list[Any]) -> optuna.Trial | None:
    """A WAITING trial of ``trials`` set RUNNING by this process (a compare-and-set from
    WAITING in every Optuna storage, as ``study.ask`` pops one), or ``None`` when others
    took them all first."""
    for waiting in trials:
        if waiting.state != TrialState.WAITING:
            continue
        try:
            if not study._storage.set_trial_state_values(waiting._trial_id, TrialState.RUNNING):
                continue
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            continue  # finished meanwhile (a copy discarded)
        if hasattr(study, "_thread_local"):  # the sampler reads the study afresh, as in ask
            study._thread_local.cached_all_trials = None
        return optuna.Trial(study, waiting._trial_id)
    return None


def _continuation(trial: optuna.Trial) -> bool:
    """Whether ``trial`` resumes a paused configuration (made by :mod:`.promotions`)."""
    return attrs.PROMOTED_FROM in trial.storage.get_trial_system_attrs(trial._trial_id)


def _stopped_by_full_disk(study: optuna.Study, number: int, exc: DiskFull) -> None:
    """A write of trial ``number`` found the disk full: the search stops, and the trial runs
    again (from its backup, if it has one) when the same command is run with space freed.
    The disk may be too full for this too: the next run then finds it RUNNING with its
    search gone (its process, or in this process: :func:`~tunecb.oracle.attempts.owner_runs`),
    and queues it again."""
    with contextlib.suppress(Exception):
        attempts.fail_and_requeue(
            study, number, attrs.INTERRUPTED, f"the search stopped: {first_line(str(exc))}"
        )


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Ignore SIGINT while the block runs (in the main thread), then restore its handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
