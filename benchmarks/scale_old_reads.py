"""tunecb's pruning reads before issue 24's per-epoch cut (``benchmarks/scale.py
--pruning-reads old``, ``benchmarks/scale_prune.py``): the finished trials' ids read whole
every epoch, and those not yet kept loaded whole from the database (a process that starts
loads the whole study at its first epoch, although Optuna's cache read it at ``ask``).
A copy of ``tunecb/storage/finished.py`` as it was, kept for the benchmarks' "before"."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Container
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tunecb.storage.reconnect import transient

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


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


def use_old_reads() -> None:
    """Make this process's pruning decisions read as before the cut."""
    from tunecb.oracle import pruning

    class Old(FinishedTrials):
        def read(self, study: Any, states: Any, light: bool = False) -> list[FrozenTrial]:
            return super().read(study, states)  # always loaded whole

    pruning._finished = Old()  # type: ignore[assignment]
    pruning._own_kept = pruning._own
