"""How many trials a study has used of its budget, the same rule for every worker.

Several workers (processes, machines) share one study and one ``n_trials``. A trial
counts when it is COMPLETE, PRUNED, RUNNING, WAITING or FAIL, unless it failed for a
reason that is not the trial's fault (its worker died or was interrupted: it is run
again) or it was discarded (started beyond the budget in a race, see below).

Two workers can both see 99 of 100 trials used and both ask for a new one. Trial numbers
are assigned atomically by every Optuna storage, so after ``ask`` a worker checks that
fewer than ``n_trials`` counting trials hold an earlier place; the loser discards its
trial (FAIL, ``stop_reason="discarded"``, hidden by the report) and stops.

A trial's place (:func:`place`) is its number, and a rerun's the place of the attempt it
runs again (the first of its ``retry_history``): one configuration, one place, however
often it runs. By its own number, a rerun (queued late, so numbered late) stood behind the
trials asked while its attempt still ran, which passed their check once the attempt was
failed: the rerun was then discarded as past the budget and its attempt counted as a FAIL
(8 configurations failed for good with 200 workers on PostgreSQL, issue 24). Two copies of
one rerun (until the second is discarded) hold one place too.

>>> NOT_COUNTED
('worker_died', 'interrupted', 'discarded', 'warm_start')
"""

from __future__ import annotations

from typing import Any

from optuna.trial import TrialState

from tunecb.oracle.attrs import DISCARDED, FINISHED, NOT_COUNTED, RETRY_HISTORY, STOP_REASON

_COUNTED_STATES = (*FINISHED, TrialState.RUNNING, TrialState.WAITING)


def retried(trials: list) -> set[int]:
    """Numbers of trials that were run again (Optuna's ``retry_history`` system attr); a
    rerun discarded (a second copy, or its attempt finished by itself) runs nothing again."""
    return {
        n
        for t in trials
        if t.user_attrs.get(STOP_REASON) != DISCARDED
        for n in t.system_attrs.get(RETRY_HISTORY, ())
    }


def counts(trial: Any, retried_numbers: set[int] = frozenset()) -> bool:
    """Whether a (frozen) trial uses a unit of the study's budget."""
    if trial.state not in _COUNTED_STATES or trial.number in retried_numbers:
        return False
    return trial.user_attrs.get(STOP_REASON) not in NOT_COUNTED


def finished(trials: list) -> int:
    """Trials that ended and count: what ``--n-trials`` is compared with at the end."""
    again = retried(trials)
    return sum(1 for t in trials if t.state in FINISHED and counts(t, again))


def may_ask(trials: list, n_trials: int | None) -> bool:
    """Whether a worker should ask for another trial: budget left, or a trial waiting."""
    if n_trials is None:
        return True
    if any(t.state == TrialState.WAITING for t in trials):
        return True
    return _used(trials) < n_trials


def only_waiting(trials: list, n_trials: int | None) -> bool:
    """Whether the budget is spent but for the WAITING trials (queued reruns, given
    configurations): a worker should then run one of those, never ask for a new one (it
    would be discarded as past the budget; at the end of a search every idle worker did
    that for each rerun queued).

    >>> import optuna
    >>> only_waiting([optuna.trial.create_trial(value=1.0)], 1), only_waiting([], 1)
    (True, False)
    """
    return n_trials is not None and _used(trials) >= n_trials


def _used(trials: list) -> int:
    """Units of the budget the trials hold (waiting ones included)."""
    again = retried(trials)
    return sum(1 for t in trials if counts(t, again))


def left(trials: list, n_trials: int | None) -> int | None:
    """Trials still to run (waiting ones included); ``None`` without a limit.

    >>> left([], 5)
    5
    """
    if n_trials is None:
        return None
    again = retried(trials)
    used = sum(1 for t in trials if counts(t, again) and t.state != TrialState.WAITING)
    return max(0, n_trials - used)


def place(trial: Any) -> int:
    """A trial's place in the budget: its number, or a rerun's first attempt's number.

    >>> import optuna
    >>> place(optuna.trial.create_trial(value=1.0, system_attrs={RETRY_HISTORY: [3, 7]}))
    3
    """
    history = trial.system_attrs.get(RETRY_HISTORY)
    return history[0] if history else trial.number


def within_budget(trials: list, number: int, n_trials: int | None) -> bool:
    """Whether trial ``number`` (just asked) is within the budget: fewer than ``n_trials``
    counting configurations hold an earlier :func:`place` than its own."""
    if n_trials is None:
        return True
    again = retried(trials)
    mine = next((place(t) for t in trials if t.number == number), number)
    return len({place(t) for t in trials if counts(t, again) and place(t) < mine}) < n_trials


def work_left(trials: list, n_trials: int | None, deadline: float | None) -> bool:
    """Whether a new worker would find a trial to run: before the deadline (``time.time()``)
    and with budget left (no backend start for nothing)."""
    import time

    if deadline is not None and time.time() >= deadline:
        return False
    return may_ask(trials, n_trials)
