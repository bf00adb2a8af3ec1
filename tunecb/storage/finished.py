"""A study's finished trials, read for what changed only: what a pruner reads every epoch.

A pruner (the median pruner, tunecb's default) compares the trial's curve with the finished
trials' at every epoch. Through Optuna's cache of a database storage, each such read also
loads every *running* trial of the study again, with all its attributes and reported values,
to learn which ones finished: one epoch of one worker costs O(workers) rows, the study
O(workers²) per epoch time (``benchmarks/scale.py``). A finished trial never changes, so
:class:`FinishedTrials` keeps those already read and, each epoch, asks the database only

- for the ids and states of the study's trials above a *floor*: every trial at or under it is
  finished and kept (the rows of the running trials and of those finished since, not of the
  whole study), and
- for the number of trials at or under the floor: a trial whose INSERT took its id before
  the floor moved past it but committed after (seconds, on a loaded server) makes it larger
  than the number kept, and the floor goes back to the start for one read (the miss that
  Optuna's own cache has: it is never seen there).

The trials that finished since are taken from Optuna's cache of the same storage when it
holds them (it read them for the sampler at ``ask``), and loaded otherwise: a process that
starts does not load the whole study again for its first epoch. Other storages (the
journal, in memory) already hold every trial in the process: they are read as they are.

>>> FinishedTrials().read(optuna.create_study(), (TrialState.COMPLETE,))
[]
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tunecb.storage.reconnect import transient

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def only_finished(states: Container[TrialState] | None) -> bool:
    """Whether a read asks for finished trials only (the cheap path applies).

    >>> only_finished((TrialState.COMPLETE,)), only_finished(None)
    (True, False)
    """
    return states is not None and all(s in _FINISHED for s in states)  # type: ignore[attr-defined]


@dataclass
class _Kept:
    """One study's finished trials as this process knows them."""

    trials: dict[int, FrozenTrial] = field(default_factory=dict)  # trial_id -> finished trial
    floor: int = -1  # every trial of the study with an id <= floor is finished and kept
    under_floor: int = 0  # how many of the kept trials have an id <= floor
    by_states: dict[tuple[TrialState, ...], list[FrozenTrial]] = field(default_factory=dict)


class FinishedTrials:
    """The finished trials of the studies this process reads, kept once read (thread-safe)."""

    def __init__(self) -> None:
        # per storage object and study: trial ids are only unique within one database, and a
        # process (a notebook, a test run) may open several
        self._by_storage: weakref.WeakKeyDictionary[Any, dict[tuple[int, bool], _Kept]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self.rows_read = 0  # rows of ids and states read, for tests and benchmarks

    def read(
        self, study: optuna.Study, states: Container[TrialState], light: bool = False
    ) -> list[FrozenTrial]:
        """The study's trials in ``states`` (finished states only), by number. The list is
        shared until a trial finishes: do not change it. ``light``: the trials loaded from
        the database carry their state, values, curve and user attributes only (what a
        percentile pruner reads), not their parameters and system attributes."""
        backend = getattr(study._storage, "_backend", None)
        if not isinstance(backend, optuna.storages.RDBStorage):
            return study.get_trials(deepcopy=False, states=states)  # type: ignore[arg-type]
        with self._lock:
            studies = self._by_storage.setdefault(backend, {})
            kept = studies.setdefault((study._study_id, light), _Kept())
            floor, under = kept.floor, kept.under_floor
        try:
            rows, counted = _rows_above(backend, study._study_id, floor)
            if counted != under:  # a trial under the floor committed late: read them all
                rows, _ = _rows_above(backend, study._study_id, -1)
                floor = -1
            finished = {i for i, state in rows if state in _FINISHED}
            with self._lock:
                new = finished.difference(kept.trials)
            if new:  # these reads are not the storage's: a lost connection is not retried
                self._add(kept, _loaded(study, backend, new, light))
        except Exception as exc:  # the server restarts: the storage's own reads wait for it
            if not transient(exc):
                raise
            return study.get_trials(deepcopy=False, states=states)  # type: ignore[arg-type]
        self.rows_read += len(rows)
        with self._lock:
            if floor != kept.floor and floor != -1:  # another thread moved it meanwhile
                return self._listed(kept, states)
            base = kept.under_floor if floor == kept.floor else 0
            kept.floor = _new_floor(rows, floor, kept.trials)
            # every trial read at or under the new floor is finished and kept
            kept.under_floor = base + sum(1 for i, _ in rows if i <= kept.floor)
            return self._listed(kept, states)

    def _add(self, kept: _Kept, trials: list[FrozenTrial]) -> None:
        with self._lock:
            for trial in trials:
                if trial.state in _FINISHED and trial._trial_id not in kept.trials:
                    kept.trials[trial._trial_id] = trial
                    kept.by_states.clear()

    def _listed(self, kept: _Kept, states: Container[TrialState]) -> list[FrozenTrial]:
        key = tuple(s for s in _FINISHED if s in states)
        found = kept.by_states.get(key)
        if found is None:
            found = sorted((t for t in kept.trials.values() if t.state in key), key=_number)
            kept.by_states[key] = found
        return found


def _number(trial: FrozenTrial) -> int:
    return trial.number


def _new_floor(rows: list[tuple[int, TrialState]], floor: int, kept: dict[int, Any]) -> int:
    """The largest id under which every trial read is finished and kept."""
    for trial_id, state in sorted(rows):
        if state not in _FINISHED or trial_id not in kept:
            break
        floor = trial_id
    return floor


def _loaded(study: optuna.Study, backend: Any, ids: set[int], light: bool) -> list[FrozenTrial]:
    """The finished trials ``ids``: from Optuna's cache of the storage when it holds them
    (a finished trial there is final), the others from the database."""
    found: list[FrozenTrial] = []
    cached = getattr(study._storage, "_studies", None)
    where = getattr(study._storage, "_trial_id_to_study_id_and_number", None)
    if isinstance(cached, dict) and isinstance(where, dict):
        with study._storage._lock:
            for trial_id in ids:
                study_id, number = where.get(trial_id, (None, None))
                info = cached.get(study_id) if study_id == study._study_id else None
                trial = info.trials.get(number) if info is not None else None
                if trial is not None and trial.state in _FINISHED:
                    found.append(trial)
    missing = ids.difference(t._trial_id for t in found)
    if missing and light:
        found += _light(backend, missing)
    elif missing:
        found += backend._get_trials(
            study._study_id, _FINISHED, included_trial_ids=missing,
            trial_id_greater_than=max(missing),
        )  # fmt: skip
    return found


def _rows_above(backend: Any, study_id: int, floor: int) -> tuple[list[tuple[int, Any]], int]:
    """The ids and states of the study's trials above ``floor``, and how many are under it."""
    import sqlalchemy
    from optuna.storages._rdb import models

    trial = models.TrialModel
    above = sqlalchemy.select(trial.trial_id, trial.state).where(
        trial.study_id == study_id, trial.trial_id > floor
    )
    under = sqlalchemy.select(sqlalchemy.func.count()).where(
        trial.study_id == study_id, trial.trial_id <= floor
    )
    with backend.engine.connect() as connection:
        rows = [(row[0], row[1]) for row in connection.execute(above)]
        counted = connection.execute(under).scalar_one() if floor >= 0 else 0
    return rows, counted


def _light(backend: Any, ids: set[int]) -> list[FrozenTrial]:
    """The trials ``ids`` with their state, values, curve and user attributes: four small
    selects, where Optuna's full load is six and an object per row (5-8 ms for two trials)."""
    import json

    import sqlalchemy
    from optuna.storages._rdb import models

    t, v = models.TrialModel, models.TrialValueModel
    c, a = models.TrialIntermediateValueModel, models.TrialUserAttributeModel
    wanted = sorted(ids)
    with backend.engine.connect() as connection:

        def rows(*columns: Any) -> list[Any]:
            table = columns[0].class_
            query = sqlalchemy.select(*columns).where(table.trial_id.in_(wanted))
            return list(connection.execute(query))

        heads = rows(t.trial_id, t.number, t.state)
        values, curves = (
            rows(v.trial_id, v.objective, v.value, v.value_type),
            rows(c.trial_id, c.step, c.intermediate_value, c.intermediate_value_type),
        )
        attributes = rows(a.trial_id, a.key, a.value_json)
    objectives: dict[int, dict[int, float]] = {}
    for trial_id, objective, value, kind in values:
        objectives.setdefault(trial_id, {})[objective] = v.stored_repr_to_value(value, kind)
    steps: dict[int, dict[int, float]] = {}
    for trial_id, step, value, kind in curves:
        steps.setdefault(trial_id, {})[step] = c.stored_repr_to_intermediate_value(value, kind)
    user: dict[int, dict[str, Any]] = {}
    for trial_id, key, value_json in attributes:
        user.setdefault(trial_id, {})[key] = json.loads(value_json)
    found = []
    for trial_id, number, state in heads:
        by_objective = objectives.get(trial_id)
        found.append(FrozenTrial(
            number=number, state=state, value=None,
            values=[by_objective[k] for k in sorted(by_objective)] if by_objective else None,
            datetime_start=None, datetime_complete=None, params={}, distributions={},
            user_attrs=user.get(trial_id, {}), system_attrs={},
            intermediate_values=steps.get(trial_id, {}), trial_id=trial_id,
        ))  # fmt: skip
    return found
