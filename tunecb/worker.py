"""The trial loop every worker runs: ask, check the budget, run, tell; until told to stop.

Used in the ``tunecb search`` process itself (no ``--jobs``) and in each worker process
(:mod:`tunecb.pool`), with the same budget rule (:mod:`tunecb.budget`) so that processes
and machines sharing one study run exactly ``n_trials`` trials between them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from tunecb import budget

STOP_BUDGET, STOP_TIMEOUT, STOP_REQUESTED = "budget", "timeout", "stopped"
RECYCLE_TRIALS, RECYCLE_MEMORY = "recycle_trials", "recycle_memory"


@dataclass(frozen=True)
class Limits:
    """When a worker stops asking for trials."""

    n_trials: int | None
    deadline: float | None = None  # time.time() after which no trial starts
    max_trials: int | None = None  # recycle the worker after this many trials
    max_rss_mb: float | None = None  # recycle the worker above this resident memory


def worker_id() -> str:
    """``host:pid``: which process runs a trial (stored as the trial's ``worker`` attr)."""
    return f"{socket.gethostname()}:{os.getpid()}"


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
    runner: Any,
    limits: Limits,
    on_outcome: Callable[[Any], None],
    should_stop: Callable[[optuna.Study], bool] = lambda study: False,
    after_tell: Callable[[optuna.Study], Any] | None = None,
) -> str:
    """Run trials until the budget, the deadline or a recycling limit is reached.
    ``after_tell(study)`` runs after each trial is told (``--keep-checkpoints``' pass).

    Returns why it stopped (``budget``, ``timeout``, ``stopped``, ``recycle_trials``,
    ``recycle_memory``). A trial interrupted by Ctrl-C is told FAIL (``interrupted``) and
    the interrupt goes on; any other exception escaping the runner fails the trial too.
    """
    me = worker_id()
    ran = 0
    while True:
        if should_stop(study):
            return STOP_REQUESTED
        if limits.deadline is not None and time.time() >= limits.deadline:
            return STOP_TIMEOUT
        # With an RDB storage and a heartbeat, trials of processes that stopped beating
        # (another machine died) are failed here and queued again by Optuna's callback.
        fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        if not budget.may_ask(trials, limits.n_trials):
            interval = _heartbeat_interval(study)
            if interval and any(t.state == TrialState.RUNNING for t in trials):
                # Another machine's trial may still die: wait until it finishes or goes
                # stale (then its rerun is ours to run), so the study ends complete.
                time.sleep(interval)
                continue
            return STOP_BUDGET
        with warnings.catch_warnings():
            # Optuna warns that heartbeats are meant for Study.optimize; we beat ourselves.
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
            trial = study.ask()
        trial.set_user_attr("worker", me)
        if not budget.within_budget(
            study.get_trials(deepcopy=False), trial.number, limits.n_trials
        ):
            trial.set_user_attr("stop_reason", "discarded")
            study.tell(trial, state=TrialState.FAIL)
            continue  # the next may_ask says whether anything is left
        try:
            with Heartbeat(study._storage, trial._trial_id):
                outcome = runner.run(trial)
        except KeyboardInterrupt:
            tell_failed(study, trial, "interrupted", "interrupted by the user (SIGINT)")
            retry(study, study._storage.get_trial(trial._trial_id))  # the next run redoes it
            raise
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        tell(study, trial, outcome)
        if after_tell is not None:
            after_tell(study)
        on_outcome(outcome)
        ran += 1
        if limits.max_trials is not None and ran >= limits.max_trials:
            return RECYCLE_TRIALS
        if limits.max_rss_mb is not None and rss_mb() > limits.max_rss_mb:
            return RECYCLE_MEMORY


def _heartbeat_interval(study: optuna.Study) -> int | None:
    return getattr(study._storage, "get_heartbeat_interval", lambda: None)()


def fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's ``fail_stale_trials``, only for storages with a heartbeat, and without its
    "experimental" warning on every call."""
    if _heartbeat_interval(study) is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


class Heartbeat:
    """Records the trial's heartbeat in a background thread while it runs, when the
    storage has a heartbeat (an RDB storage opened with ``heartbeat_interval``)."""

    def __init__(self, storage: Any, trial_id: int) -> None:
        interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        if self.interval:
            self.storage.record_heartbeat(self.trial_id)
            self._thread = threading.Thread(target=self._beat, name="tunecb-heartbeat",
                                            daemon=True)  # fmt: skip
            self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as exc:  # the storage is away: the trial goes on; say so
                logging.getLogger("tunecb").debug("heartbeat failed: %s", exc)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def tell(study: optuna.Study, trial: optuna.Trial, outcome: Any) -> None:
    """Tell Optuna the outcome's state (COMPLETE with the best value, PRUNED or FAIL)."""
    if outcome.state == "COMPLETE":
        study.tell(trial, outcome.value)
    elif outcome.state == "PRUNED":
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, state=TrialState.FAIL)


def tell_failed(study: optuna.Study, trial: optuna.Trial | int, reason: str, error: str) -> None:
    """Mark a trial FAIL for a reason that is not its own (it is run again)."""
    storage = study._storage
    trial_id = trial._trial_id if hasattr(trial, "_trial_id") else _trial_id(study, trial)
    storage.set_trial_user_attr(trial_id, "stop_reason", reason)
    storage.set_trial_user_attr(trial_id, "error", error)
    storage.set_trial_state_values(trial_id, state=TrialState.FAIL)


def _trial_id(study: optuna.Study, number: int) -> int:
    return study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)


def retry(study: optuna.Study, failed: Any) -> None:
    """Queue a WAITING copy of a failed trial (same parameters), linked to it the way
    Optuna's ``RetryHeartbeatStaleTrialCallback`` links its retries (``failed_trial``,
    ``retry_history`` system attrs), so one rule finds the attempts of a trial."""
    system_attrs = {"failed_trial": failed.number, "retry_history": [], **failed.system_attrs}
    system_attrs["retry_history"] = [*system_attrs["retry_history"], failed.number]
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=failed.params,
            distributions=failed.distributions,
            system_attrs=system_attrs,
        )
    )
