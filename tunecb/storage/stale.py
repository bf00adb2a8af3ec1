"""A failed trial's rerun: queued before its attempt is failed, and run once.

Every path that reruns a trial comes here: a stale heartbeat, a dead process, an interrupt
(:func:`tunecb.oracle.attempts.fail_and_requeue`). The rerun is a WAITING copy of the attempt's
parameters and system attrs, with ``retry_history`` (the numbers of the attempts it reruns,
first first) and ``failed_trial`` (the attempt it directly reruns), the names Optuna's
``RetryHeartbeatStaleTrialCallback`` uses, and :data:`RERUN_OF` (the attempt's trial id). It
does not inherit the attempt's user attrs (tunecb's say which process runs the trial and how
it ended: a copy that looked claimed by a dead process was failed between another worker's
pop and its claim, ``benchmarks/scale.py``).

**Crash-safe.** A recoverer queues the rerun *first* (:func:`queue`), then fails the attempt.
A process killed between the two leaves the attempt RUNNING with its rerun queued: the next
recoverer finds the rerun and only fails the attempt; whoever pops the rerun first fails the
attempt itself (:func:`tunecb.oracle.attempts.rerun_due`). Failing first and queueing next
lost the rerun of a recoverer killed between (10 counted FAILs with 200 workers).

**Run once.** Two recoverers may queue a copy each; exactly one runs, the attempt's *claimed*
rerun (:func:`claim`), the others are discarded by whoever pops them. The claim is a write
with a check, final once made:

- a database: a row ``(attempt, "tunecb_rerun")`` in Optuna's ``trial_system_attributes``,
  whose ``(trial_id, key)`` is unique: the first INSERT wins, every other one fails;
- the journal file and in-memory storages: the copy written first (the smallest trial id).
  Every process replays the same log in the same order, and a read sees every record written
  before it: a copy written earlier than yours is always visible to you.

Why not "queue it unless the study holds a copy already" (the earlier sweep, which queued one
attempt up to 175 times with 200 workers on PostgreSQL): a worker reads a database through
Optuna's cache, which loads only trials with an id above the last *finished* one it has seen
(plus the unfinished ones it knows). A copy whose INSERT took an id while another trial with
a larger id finished and was read first (seconds apart under load) is never loaded by that
process: it does not see the copy and queues its own. The claim is read from the database
itself, never through the cache.

>>> import optuna
>>> study = optuna.create_study()
>>> trial = study.ask(); _ = trial.suggest_float("x", 0, 1); trial.set_user_attr("worker", "h:1")
>>> attempt = study.trials[0]
>>> first = queue(study, attempt); queue(study, attempt) == first
True
>>> copy = study.trials[1]
>>> copy.state.name, copy.params == attempt.params, copy.user_attrs
('WAITING', True, {})
>>> copy.system_attrs[FAILED_TRIAL], copy.system_attrs[RETRY_HISTORY], claim(study, 0, first)
(0, [0], 1)
"""

from __future__ import annotations

import json
from typing import Any

import optuna
from optuna.trial import TrialState

from tunecb.storage.reconnect import retrying

# Optuna's names (its RetryHeartbeatStaleTrialCallback writes them too).
RETRY_HISTORY, FAILED_TRIAL = "retry_history", "failed_trial"
RERUN_OF = "tunecb_rerun_of"  # on a copy: its attempt's trial id
CLAIM = "tunecb_rerun"  # on an attempt (a database): its one rerun's trial id


def rerun_of(system_attrs: dict[str, Any]) -> int | None:
    """The trial id of the attempt a copy reruns (``None``: not a rerun)."""
    value = system_attrs.get(RERUN_OF)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def queue(study: optuna.Study, attempt: Any) -> int:
    """The trial id of ``attempt``'s rerun (a frozen trial, RUNNING or FAIL): the claimed one
    if any, else a WAITING copy queued now and claimed. A copy that lost its claim to another
    recoverer's (queued at the same moment) is left WAITING: whoever pops it discards it."""
    known = claimed(study, attempt._trial_id)
    if known is not None:
        return known
    history = [*attempt.system_attrs.get(RETRY_HISTORY, []), attempt.number]
    inherited = {k: v for k, v in attempt.system_attrs.items() if k not in (CLAIM, RERUN_OF)}
    system_attrs = {
        **inherited, FAILED_TRIAL: attempt.number, RETRY_HISTORY: history,
        RERUN_OF: attempt._trial_id,
    }  # fmt: skip
    copy_id = study._storage.create_new_trial(
        study._study_id,
        template_trial=optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=attempt.params,
            distributions=attempt.distributions,
            system_attrs=system_attrs,
        ),
    )
    return claim(study, attempt._trial_id, copy_id)


def claim(study: optuna.Study, attempt_id: int, copy_id: int) -> int:
    """Claim the rerun of attempt ``attempt_id`` for copy ``copy_id``; the trial id of the
    copy that holds the claim (``copy_id`` when it won, or had won already)."""
    backend = _database(study)
    if backend is None:
        found = _copies(study, attempt_id)
        return min(found) if found else copy_id
    return _retried(_claim_row, backend, attempt_id, copy_id)


def claimed(study: optuna.Study, attempt_id: int) -> int | None:
    """The trial id of the claimed rerun of attempt ``attempt_id``, ``None`` before any."""
    backend = _database(study)
    if backend is None:
        found = _copies(study, attempt_id)
        return min(found) if found else None
    return _retried(_claim_read, backend, attempt_id)


def _copies(study: optuna.Study, attempt_id: int) -> list[int]:
    return [
        t._trial_id
        for t in study._storage.get_all_trials(study._study_id, deepcopy=False)
        if rerun_of(t.system_attrs) == attempt_id
    ]


def _database(study: optuna.Study) -> Any:
    storage = study._storage
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, optuna.storages.RDBStorage) else None


def _retried(call: Any, backend: Any, *args: Any) -> Any:
    """``call(backend, *args)``, waiting out a lost connection as the storage's own calls do
    (:mod:`tunecb.storage.reconnect`; an INSERT retried after a lost answer finds its row)."""
    if hasattr(backend, "reconnect_s"):
        return retrying(call)(backend, *args)
    return call(backend, *args)


def _claim_row(backend: Any, attempt_id: int, copy_id: int) -> int:
    import sqlalchemy
    from optuna.storages._rdb import models

    table = models.TrialSystemAttributeModel.__table__
    row = {"trial_id": attempt_id, "key": CLAIM, "value_json": json.dumps(copy_id)}
    try:
        with backend.engine.begin() as connection:
            connection.execute(sqlalchemy.insert(table).values(**row))
    except sqlalchemy.exc.IntegrityError:  # claimed by another copy (or by this one, retried)
        pass
    winner = _claim_read(backend, attempt_id)
    if winner is None:  # the attempt is gone (the study was deleted)
        raise RuntimeError(f"trial id {attempt_id} has no claimed rerun after a claim")
    return winner


def _claim_read(backend: Any, attempt_id: int) -> int | None:
    import sqlalchemy
    from optuna.storages._rdb import models

    model = models.TrialSystemAttributeModel
    query = sqlalchemy.select(model.value_json).where(
        model.trial_id == attempt_id, model.key == CLAIM
    )
    with backend.engine.connect() as connection:
        value = connection.execute(query).scalar()
    return None if value is None else int(json.loads(value))


def requeue(study: optuna.Study, failed: Any) -> bool:
    """:func:`queue` for an attempt failed already; ``True`` when this call's copy holds the
    claim and no other did before (the first call for that attempt)."""
    before = claimed(study, failed._trial_id)
    return before is None and queue(study, failed) is not None


def on_stale(study: optuna.Study, trial: Any) -> None:
    """The storage's ``heartbeat_stale_trial_callback`` (Optuna's own ``fail_stale_trials``,
    which fails the trial first): queue its rerun."""
    queue(study, trial)
