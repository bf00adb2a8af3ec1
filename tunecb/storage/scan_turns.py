"""Whose turn it is to look for stale and dead trials, one worker of the whole fleet per
heartbeat interval, and what a worker idle at the end of a search reads when it wakes.

At the end of a search every worker whose trial finished waits for the last running ones
(one may die: its rerun must run). Before, each of them looked for stale trials (Optuna's
query, then the heartbeats read again) and for dead ones every heartbeat interval: at 200
PostgreSQL workers 6.5 ms of CPU a look, 9,734 looks in a run, ~0.7 of a core on this
2-core machine while the last trials still reported (``benchmarks/scale.py``). The look's
answer is the same for every worker: one a heartbeat interval is enough. The last look's
moment is kept in the study (a study system attribute, :data:`KEY`); a worker takes the turn
with a compare-and-set on it (:func:`take`), so the looks of the fleet stay one per interval
whatever its size, and any live worker can take it. A worker that wakes reads one row
(:func:`status`: running and queued trials, whether a look is due) and goes back to sleep
when there is nothing to do.

Only for database storages (the others have no heartbeat); an error of the database
lets every worker look, through the storage's own calls, which wait for it.

>>> study = optuna.create_study()
>>> take(study, 30.0), status(study, 30.0)
(True, None)
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from tunecb.storage.reconnect import transient

KEY = "tunecb:scan_at"  # the study system attribute: when the last look began (time.time())


@dataclass(frozen=True)
class Status:
    """What an idle worker reads when it wakes: the study's RUNNING and WAITING trials, and
    whether the fleet's next look is due.

    >>> Status(running=2, waiting=0, due=False).running
    2
    """

    running: int
    waiting: int
    due: bool


def take(study: optuna.Study, every_s: float, now: float | None = None) -> bool:
    """Whether this process looks now: ``True`` when no worker of the study began a look in
    the last ``every_s`` seconds, and this one is recorded as beginning it (a compare-and-set:
    of workers racing, one wins). ``True`` on storages that are not a database, and when the
    database cannot be reached (the caller's own reads then wait for it)."""
    engine = _engine(study)
    if engine is None:
        return True
    now = time.time() if now is None else now
    try:
        return _take(engine, study._study_id, every_s, now)
    except Exception as exc:
        if not _database(exc):
            raise
        return True


def status(study: optuna.Study, every_s: float, now: float | None = None) -> Status | None:
    """The study's running and queued trials and whether a look is due (one statement);
    ``None`` on storages that are not a database, and when the database cannot be reached."""
    engine = _engine(study)
    if engine is None:
        return None
    now = time.time() if now is None else now
    try:
        running, waiting, last = _status(engine, study._study_id)
    except Exception as exc:
        if not _database(exc):
            raise
        return None
    return Status(running, waiting, _due(last, every_s, now))


def _database(exc: BaseException) -> bool:
    """Whether ``exc`` came from the database or its driver (a lost connection, a server
    restarting): the caller then goes the old way, through the storage's own calls, which
    wait for the server or say what is wrong."""
    import sqlalchemy

    return transient(exc) or isinstance(exc, sqlalchemy.exc.SQLAlchemyError)


def _engine(study: optuna.Study) -> Any:
    backend = getattr(study._storage, "_backend", study._storage)
    if not isinstance(backend, optuna.storages.RDBStorage):
        return None
    return backend.engine


def _due(last: str | None, every_s: float, now: float) -> bool:
    """Whether a look is due after one begun at ``last`` (its stored JSON). A moment further
    ahead than ``every_s`` is another machine's clock gone wrong: due."""
    if last is None:
        return True
    try:
        began = float(json.loads(last))
    except (TypeError, ValueError):
        return True
    return not (now - every_s < began <= now + every_s)


@functools.cache
def _statements() -> tuple[Any, Any]:
    """The wake's statement and the turn's read, built once (the database's compiled form
    is then cached by SQLAlchemy: a wake costs ~0.2 ms of CPU, not ~0.8)."""
    import sqlalchemy
    from optuna.storages._rdb import models

    t, attr = models.TrialModel, models.StudySystemAttributeModel
    study_id = sqlalchemy.bindparam("study_id")

    def count(state: TrialState) -> Any:
        where = (t.study_id == study_id, t.state == state)
        return sqlalchemy.select(sqlalchemy.func.count()).where(*where).scalar_subquery()

    last = sqlalchemy.select(attr.value_json).where(attr.study_id == study_id, attr.key == KEY)
    wake = sqlalchemy.select(
        count(TrialState.RUNNING), count(TrialState.WAITING), last.scalar_subquery()
    )
    return wake, last


def _status(engine: Any, study_id: int) -> tuple[int, int, str | None]:
    with engine.connect() as connection:
        row = connection.execute(_statements()[0], {"study_id": study_id}).one()
    running, waiting, stored = row
    return int(running), int(waiting), stored


def _take(engine: Any, study_id: int, every_s: float, now: float) -> bool:
    import sqlalchemy
    from optuna.storages._rdb import models

    attr = models.StudySystemAttributeModel
    mine = (attr.study_id == study_id, attr.key == KEY)
    value = json.dumps(now)
    with engine.connect() as connection:
        last = connection.execute(_statements()[1], {"study_id": study_id}).scalar()
    if last is not None and not _due(last, every_s, now):
        return False
    try:
        with engine.begin() as connection:
            if last is None:  # the first look: of workers inserting it at once, one wins
                connection.execute(
                    sqlalchemy.insert(attr).values(study_id=study_id, key=KEY, value_json=value)
                )
                return True
            done = connection.execute(  # of workers replacing the same moment, one wins
                sqlalchemy.update(attr).where(*mine, attr.value_json == last)
                .values(value_json=value)
            )  # fmt: skip
    except sqlalchemy.exc.IntegrityError:
        return False
    return done.rowcount == 1
