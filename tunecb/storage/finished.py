"""A study's finished trials, read for what changed only: what a pruner reads every epoch.

A pruner (the median pruner, tunecb's default) compares the trial's curve with the finished
trials' at every epoch. Through Optuna's cache of a database storage, each such read also
loads every *running* trial of the study again, with all its attributes and reported values,
to learn which ones finished: one epoch of one worker costs O(workers) rows, the study
O(workers²) per epoch time (``benchmarks/scale.py``). A finished trial never changes, so
:class:`FinishedTrials` keeps those already read, asks the database only for the ids of the
finished ones (one indexed query of integers) and loads only the new ones. Other storages
(the journal, in memory) already hold every trial in the process: they are read as they are.

>>> FinishedTrials().read(optuna.create_study(), (TrialState.COMPLETE,))
[]
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Container
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


class FinishedTrials:
    """The finished trials of the studies this process reads, kept once read (thread-safe)."""

    def __init__(self) -> None:
        # per storage object: trial ids are only unique within one database, and a process
        # (a notebook, a test run) may open several
        self._by_storage: weakref.WeakKeyDictionary[Any, dict[int, FrozenTrial]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def read(self, study: optuna.Study, states: Container[TrialState]) -> list[FrozenTrial]:
        """The study's trials in ``states`` (finished states only), by number."""
        backend = getattr(study._storage, "_backend", None)
        if not isinstance(backend, optuna.storages.RDBStorage):
            return study.get_trials(deepcopy=False, states=states)  # type: ignore[arg-type]
        try:
            ids = _finished_ids(backend, study._study_id)
        except Exception as exc:  # the server restarts: the storage's own reads wait for it
            if not transient(exc):
                raise
            return study.get_trials(deepcopy=False, states=states)  # type: ignore[arg-type]
        with self._lock:
            known = self._by_storage.setdefault(backend, {})  # trial_id -> finished trial
            new = ids.difference(known)
        if new:
            loaded = backend._get_trials(
                study._study_id, None, included_trial_ids=new, trial_id_greater_than=max(new)
            )
            with self._lock:
                known.update({t._trial_id: t for t in loaded if t.state in _FINISHED})
        with self._lock:
            found = [known[i] for i in ids if i in known]
        return sorted((t for t in found if t.state in states), key=lambda t: t.number)


def _finished_ids(backend: Any, study_id: int) -> set[int]:
    import sqlalchemy
    from optuna.storages._rdb import models

    query = sqlalchemy.select(models.TrialModel.trial_id).where(
        models.TrialModel.study_id == study_id, models.TrialModel.state.in_(_FINISHED)
    )
    with backend.engine.connect() as connection:
        return {row[0] for row in connection.execute(query)}
