"""A study's trials as the budget and the recovery rules read them: number, state, start
and a few named attributes, read light, and for what changed only.

A worker decides between trials whether to ask for another (the budget), whether the one it
asked is within the budget, and at the end of a search whether a trial is left to recover.
Through Optuna's cache of a database storage, each such read loads every *running* trial
again, whole (parameters, attributes, curves): 25 ms of CPU at 200 workers, four or five
times a trial, and every poll of a worker idle at the end (``benchmarks/scale.py``).
:class:`LightTrials` reads one row per trial instead (its number, state, start, and the
attributes it was made for, one correlated select each: one statement, one snapshot),
only for the trials above a *floor* under which every trial is finished and kept (a
finished trial never changes); a count of the trials under the floor catches one whose
INSERT took its id before the floor passed it but committed after (then all are read
again once), as :class:`tunecb.storage.finished.FinishedTrials` does. Other storages (the
journal, in memory) hold every trial in the process: they are read as they are.

>>> LightTrials(("worker",), ()).read(optuna.create_study())
[]
"""

from __future__ import annotations

import datetime
import json
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from tunecb.storage.finished import _FINISHED, _new_floor
from tunecb.storage.reconnect import transient


@dataclass(frozen=True)
class LightTrial:
    """A trial's number, state, start, and the attributes read (the others are absent).

    >>> LightTrial(0, 3, TrialState.RUNNING, None, {"worker": "h:1"}).user_attrs["worker"]
    'h:1'
    """

    _trial_id: int
    number: int
    state: TrialState
    datetime_start: datetime.datetime | None
    user_attrs: dict[str, Any] = field(default_factory=dict)
    system_attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Kept:
    trials: dict[int, LightTrial] = field(default_factory=dict)  # trial_id -> finished trial
    floor: int = -1  # every trial of the study with an id <= floor is finished and kept
    under_floor: int = 0


class LightTrials:
    """The trials of the studies this process reads, with the user attributes
    ``user_keys`` and the system attributes ``system_keys`` (thread-safe)."""

    def __init__(self, user_keys: tuple[str, ...], system_keys: tuple[str, ...]) -> None:
        self.user_keys, self.system_keys = user_keys, system_keys
        self._by_storage: weakref.WeakKeyDictionary[Any, dict[int, _Kept]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self.rows_read = 0  # rows read from the database, for tests and benchmarks

    def read(self, study: optuna.Study) -> list[Any]:
        """Every trial of the study, by number: :class:`LightTrial` on a database, else
        the storage's own frozen trials."""
        backend = getattr(study._storage, "_backend", None)
        if not isinstance(backend, optuna.storages.RDBStorage):
            return study.get_trials(deepcopy=False)
        with self._lock:
            kept = self._by_storage.setdefault(backend, {}).setdefault(study._study_id, _Kept())
            floor, under = kept.floor, kept.under_floor
        try:  # these queries are not the storage's: a lost connection is not retried
            rows, counted = self._above(backend, study._study_id, floor)
            if counted != under:  # a trial under the floor committed late: read them all
                floor = -1
                rows, _ = self._above(backend, study._study_id, floor)
        except Exception as exc:  # the server restarts: the storage's own reads wait for it
            if not transient(exc):
                raise
            return study.get_trials(deepcopy=False)
        self.rows_read += len(rows)
        with self._lock:
            moved = floor != kept.floor and floor != -1  # another thread moved it meanwhile
            for trial in rows:
                if trial.state in _FINISHED:
                    kept.trials.setdefault(trial._trial_id, trial)
            if not moved:
                base = kept.under_floor if floor == kept.floor else 0
                states = [(t._trial_id, t.state) for t in rows]
                kept.floor = _new_floor(states, floor, kept.trials)
                kept.under_floor = base + sum(1 for t in rows if t._trial_id <= kept.floor)
            found = {t._trial_id: t for t in kept.trials.values() if t._trial_id <= floor}
        found.update({t._trial_id: t for t in rows})
        return sorted(found.values(), key=_number)

    def _above(self, backend: Any, study_id: int, floor: int) -> tuple[list[LightTrial], int]:
        """The study's trials with an id above ``floor``, and how many are at or under it."""
        import sqlalchemy
        from optuna.storages._rdb import models

        t = models.TrialModel
        user, system = models.TrialUserAttributeModel, models.TrialSystemAttributeModel

        def attr(model: Any, key: str) -> Any:
            where = (model.trial_id == t.trial_id, model.key == key)
            return sqlalchemy.select(model.value_json).where(*where).scalar_subquery()

        columns = [attr(user, k) for k in self.user_keys]
        columns += [attr(system, k) for k in self.system_keys]
        started = t._datetime_start_utc  # naive UTC in the table (Optuna's model converts it)
        above = sqlalchemy.select(t.trial_id, t.number, t.state, started, *columns)
        above = above.where(t.study_id == study_id, t.trial_id > floor)
        under = sqlalchemy.select(sqlalchemy.func.count()).where(
            t.study_id == study_id, t.trial_id <= floor
        )
        n_user = len(self.user_keys)
        with backend.engine.connect() as connection:
            rows = list(connection.execute(above))
            counted = connection.execute(under).scalar_one() if floor >= 0 else 0
        found = []
        for row in rows:
            values = row[4:]
            found.append(LightTrial(
                row[0], row[1], row[2], _local(row[3]),
                _attrs(self.user_keys, values[:n_user]), _attrs(self.system_keys, values[n_user:]),
            ))  # fmt: skip
        return found, counted


def _attrs(keys: tuple[str, ...], values: Any) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in zip(keys, values, strict=True) if v is not None}


def _local(utc: datetime.datetime | None) -> datetime.datetime | None:
    """A naive UTC time as Optuna's frozen trials give it: naive local time."""
    if utc is None:
        return None
    return utc.replace(tzinfo=datetime.UTC).astimezone().replace(tzinfo=None)


def _number(trial: LightTrial) -> int:
    return trial.number
