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

**Run once.** Two recoverers may queue a copy each: exactly one runs, the attempt's
*claimed* rerun (:func:`claim`); whoever pops another one discards it. The claim is a write
with a check, final once it names a copy:

- a database: a row ``(attempt, "tunecb_rerun")`` in Optuna's ``trial_system_attributes``,
  written by compare-and-set (an INSERT that the unique ``(trial_id, key)`` refuses a second
  time; an UPDATE only where the row still holds what was read). A recoverer first claims it
  *pending* (a token and a time), then queues its copy (carrying the token), then sets the
  claim to the copy's id; the first popper of any copy may do the last step. The other
  recoverers find the claim pending and leave the attempt to its holder: under load, dozens
  of workers polled one dead trial within the seconds its copy took to commit, and queued
  one copy each. A pending claim older than :data:`PENDING_S` lost its recoverer and is
  taken over;
- the journal file and in-memory storages: one copy only. A recoverer looks for a copy and
  queues its own under one lock (:func:`_one_recoverer`: a ``flock`` beside the journal
  file, freed by the kernel when its holder dies), and a read sees every record written
  before it, so the next one finds the copy (two recoverers at once queued one each before,
  ``benchmarks/scale.py``: discarded when popped, never run). Should there be more (a
  recoverer of an older tunecb), the copy written first (the smallest trial id) is the
  claimed one: every process replays the same log in the same order.

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
>>> rerun = study.trials[1]
>>> rerun.state.name, rerun.params == attempt.params, rerun.user_attrs
('WAITING', True, {})
>>> rerun.system_attrs[FAILED_TRIAL], rerun.system_attrs[RETRY_HISTORY], claim(study, 0, rerun)
(0, [0], 1)
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import optuna
from optuna.trial import TrialState

from tunecb.storage.reconnect import retrying

# Optuna's names (its RetryHeartbeatStaleTrialCallback writes them too).
RETRY_HISTORY, FAILED_TRIAL = "retry_history", "failed_trial"
RERUN_OF = "tunecb_rerun_of"  # on a copy: its attempt's trial id
TOKEN = "tunecb_rerun_token"  # on a copy: the pending claim it was queued under
CLAIM = "tunecb_rerun"  # on an attempt (a database): its one rerun's trial id, or pending
PENDING_S = 30.0  # a pending claim this old lost its recoverer: another one takes it over


def rerun_of(system_attrs: dict[str, Any]) -> int | None:
    """The trial id of the attempt a copy reruns (``None``: not a rerun)."""
    value = system_attrs.get(RERUN_OF)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def queue(study: optuna.Study, attempt: Any) -> int | None:
    """The trial id of ``attempt``'s claimed rerun (a frozen trial, RUNNING or FAIL): the
    one claimed already, else a WAITING copy queued now and claimed. ``None`` when another
    recoverer is queueing it right now (a database): leave the attempt to that one."""
    backend = _database(study)
    if backend is None:
        with _one_recoverer(study):
            known = claimed(study, attempt._trial_id)
            if known is not None:
                return known
            return claim(study, attempt._trial_id, copy(study, attempt))
    for _ in range(3):  # a lost race for a pending claim: read it again
        raw = _retried(_read, backend, attempt._trial_id)
        value = _parse(raw)
        if isinstance(value, int):
            return value
        if isinstance(value, dict) and time.time() - value.get("at", 0) < PENDING_S:
            return None
        pending = {"pending": uuid.uuid4().hex, "at": time.time()}
        mine = json.dumps(pending, sort_keys=True)
        if not _retried(_write, backend, attempt._trial_id, raw, mine):
            continue
        made = copy(study, attempt, token=pending["pending"])
        _retried(_write, backend, attempt._trial_id, mine, json.dumps(made._trial_id))
        value = _parse(_retried(_read, backend, attempt._trial_id))
        return value if isinstance(value, int) else None  # ours, or a later recoverer's
    return None


def copy(study: optuna.Study, attempt: Any, token: str | None = None) -> Any:
    """Queue a WAITING copy of ``attempt`` (no claim: :func:`queue` claims it); the copy."""
    history = [*attempt.system_attrs.get(RETRY_HISTORY, []), attempt.number]
    inherited = {k: v for k, v in attempt.system_attrs.items() if k not in (CLAIM, RERUN_OF, TOKEN)}
    system_attrs = {
        **inherited, FAILED_TRIAL: attempt.number, RETRY_HISTORY: history,
        RERUN_OF: attempt._trial_id, **({TOKEN: token} if token else {}),
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
    return study._storage.get_trial(copy_id)


def claim(study: optuna.Study, attempt_id: int, rerun: Any) -> int | None:
    """Claim the rerun of attempt ``attempt_id`` for the copy ``rerun`` (a frozen trial,
    just popped); the trial id of the copy that holds the claim (``rerun``'s when it won or
    had won already). A pending claim is taken by the first copy popped, whichever
    recoverer queued it: under load a copy took longer to commit than :data:`PENDING_S`,
    its claim was taken over meanwhile, and a copy that waited for its own token was
    discarded every time (an attempt left RUNNING, a copy queued and dropped every 30 s)."""
    backend = _database(study)
    if backend is None:
        found = _copies(study, attempt_id)
        return min(found) if found else rerun._trial_id
    raw = _retried(_read, backend, attempt_id)
    value = _parse(raw)
    if not isinstance(value, int):  # unclaimed, or pending (for this copy or another): take it
        _retried(_write, backend, attempt_id, raw, json.dumps(rerun._trial_id))
        value = _parse(_retried(_read, backend, attempt_id))
    return value if isinstance(value, int) else None


def claimed(study: optuna.Study, attempt_id: int) -> int | None:
    """The trial id of the claimed rerun of attempt ``attempt_id``, ``None`` before any."""
    backend = _database(study)
    if backend is None:
        found = _copies(study, attempt_id)
        return min(found) if found else None
    value = _parse(_retried(_read, backend, attempt_id))
    return value if isinstance(value, int) else None


_IN_PROCESS = threading.Lock()  # the recoverers of an in-memory study (its threads)


@contextlib.contextmanager
def _one_recoverer(study: optuna.Study) -> Iterator[None]:
    """Hold the study's recoverers' lock: on a journal file a ``flock`` on ``PATH.rerun.flock``
    (the kernel frees it when its holder dies), else a lock of this process. A copy queued
    under it is in the file before the next holder reads the file (:func:`queue`)."""
    path = getattr(getattr(study._storage, "_backend", None), "_file_path", None)
    if path is None:
        with _IN_PROCESS:
            yield
        return
    from tunecb.storage.flock import FlockLock

    lock = FlockLock(f"{path}.rerun")  # its own file: the writers' lock is taken inside
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


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


def _parse(raw: str | None) -> Any:
    value = None if raw is None else json.loads(raw)
    return None if isinstance(value, bool) else value


def _retried(call: Any, backend: Any, *args: Any) -> Any:
    """``call(backend, *args)``, waiting out a lost connection as the storage's own calls do
    (:mod:`tunecb.storage.reconnect`; a write retried after a lost answer finds its row)."""
    if hasattr(backend, "reconnect_s"):
        return retrying(call)(backend, *args)
    return call(backend, *args)


def _write(backend: Any, attempt_id: int, old: str | None, new: str) -> bool:
    """Compare and set the attempt's claim row: INSERT when there is none (``old`` None;
    the unique ``(trial_id, key)`` refuses a second), else UPDATE only if it still holds
    ``old``. ``True`` when this call wrote it."""
    import sqlalchemy
    from optuna.storages._rdb import models

    table = models.TrialSystemAttributeModel.__table__
    try:
        with backend.engine.begin() as connection:
            if old is None:
                connection.execute(
                    sqlalchemy.insert(table).values(trial_id=attempt_id, key=CLAIM, value_json=new)
                )
                return True
            done = connection.execute(
                sqlalchemy.update(table)
                .where(
                    table.c.trial_id == attempt_id, table.c.key == CLAIM,
                    table.c.value_json == old,
                )
                .values(value_json=new)
            )  # fmt: skip
            return done.rowcount == 1
    except sqlalchemy.exc.IntegrityError:  # another one inserted first
        return False


def _read(backend: Any, attempt_id: int) -> str | None:
    import sqlalchemy
    from optuna.storages._rdb import models

    table = models.TrialSystemAttributeModel.__table__
    query = sqlalchemy.select(table.c.value_json).where(
        table.c.trial_id == attempt_id, table.c.key == CLAIM
    )
    with backend.engine.connect() as connection:
        return connection.execute(query).scalar()


def on_stale(study: optuna.Study, trial: Any) -> None:
    """The storage's ``heartbeat_stale_trial_callback`` (Optuna's own ``fail_stale_trials``,
    which fails the trial first): queue its rerun."""
    queue(study, trial)
