"""The pruning callback of a multi-objective study (Optuna refuses ``trial.report`` there).

At the end of the first epoch it checks that the model logs every metric objective (a
one-line error listing the logged names, as for ``monitor``). With ``pruner="pareto"``, at
each rung epoch (:func:`tunecb.oracle.pareto.rung_epochs`) it stores the trial's objective
values at its best epoch so far on the trial (user attr ``pareto_rung_<epoch>``), reads the
values every other trial stored at that rung from the study's storage (so it works alike
in-process, in ``--jobs`` workers, on Dask and on PostgreSQL), and stops training when the
trial is not in exactly the top third by non-dominated rank, then the hypervolume it adds
to its front (:func:`tunecb.oracle.pareto.survives`, MOASHA's cut).

With ``pruner="promotion"`` (the study's pruner a :class:`~tunecb.study.promotion.PromotionPruner`),
it judges at that pruner's rungs by the same order (MOASHA's count)
(:func:`tunecb.oracle.promotions.pareto_promotable`) and PAUSES a trial that is not
promotable (``paused``; ``on_pause`` saves its backup), as the single-objective
:class:`~tunecb.training.callbacks.OptunaPruning` does: a free worker resumes it when it
has become promotable.

As :class:`tunecb.training.callbacks.OptunaPruning`, it never raises to prune: it sets
``stop_training`` and ``pruned_at``; the runner marks the trial PRUNED after ``fit``.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
from optuna.trial import TrialState

from tunecb.errors import MonitorError
from tunecb.oracle import attrs as keys
from tunecb.oracle import pareto, promotions
from tunecb.results import read_history
from tunecb.study.objectives import PROPERTIES, Objective
from tunecb.study.promotion import PromotionPruner
from tunecb.training.backup import origin
from tunecb.training.monitor import Monitor
from tunecb.training.objectives import best_row, values_at

log = logging.getLogger("tunecb")


class ParetoPruning(keras.callbacks.Callback):
    """Checks the metric objectives at the first epoch and prunes at rungs by Pareto rank.

    Example (the runner sets it up)::

        cb = ParetoPruning(trial, objectives, {"params": 1e4}, history_path, epochs=20)
        model.fit(..., callbacks=[HistoryLog(history_path), ..., cb])
    """

    def __init__(
        self,
        trial: Any,
        objectives: Sequence[Objective],
        properties: dict[str, float],
        history: Path,
        epochs: int,
        prune: bool = True,
    ) -> None:
        super().__init__()
        self.trial = trial
        self.objectives = tuple(objectives)
        self.properties = properties
        self.history = Path(history)
        self.maximize = [o.maximize for o in self.objectives]
        first = next(o for o in self.objectives if o.per_epoch)
        self.monitor = Monitor(first.name, first.maximize)
        pruner = getattr(getattr(trial, "study", None), "pruner", None)
        self.scheduler = pruner if prune and isinstance(pruner, PromotionPruner) else None
        rungs = self.scheduler.rungs if self.scheduler else pareto.rung_epochs(epochs)
        self.rungs = set(rungs) if prune else set()
        self.pruned_at: int | None = None
        self.paused = False  # the promotion scheduler paused the trial at pruned_at
        self.on_pause: Any = None  # called with the epochs done on a pause (saves the backup)
        self._checked = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        """A trial resumed from a backup stores the rungs its carried-over epochs passed
        (the other trials compare with them; it is not judged there again)."""
        done = max((r.get("epoch") or 0 for r in read_history(self.history)), default=0)
        for rung in sorted(r for r in self.rungs if r <= done):
            self._record(rung)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not self._checked:
            self._check(logs or {})
        done = epoch + 1
        if done not in self.rungs:
            return
        own = self._record(done)
        if own is None:
            return
        trials = self.trial.study.get_trials(deepcopy=False)
        if self.scheduler is not None:
            if (
                promotions.pareto_promotable(
                    trials, origin(self.trial), own, done, self.maximize, self.scheduler.eta
                )
                or self.model.stop_training
            ):  # promotable, or stops here anyway: no pause
                return
            self.paused = True
        elif pareto.survives(own, rung_values(trials, done, self.trial.number), self.maximize):
            return
        log.debug("trial %d %s at epoch %d by its rank among the trials at that rung",
                  self.trial.number, "paused" if self.paused else "pruned", done)  # fmt: skip
        self.pruned_at = done
        self.model.stop_training = True
        if self.paused and self.on_pause is not None:
            self.on_pause(done)

    def _record(self, rung: int) -> list[float] | None:
        """Store the trial's values at its best epoch up to ``rung``; ``None`` (nothing
        stored) when one is not finite, or for a FixedTrial (``tunecb rerun``)."""
        if getattr(self.trial, "study", None) is None:
            return None
        row = best_row(self.history, self.monitor.name, self.monitor.maximize, rung)
        own = list(values_at(self.objectives, self.properties, row).values())
        if not pareto.finite(own):
            return None
        self.trial.set_user_attr(f"{keys.PARETO_RUNG}{rung}", own)
        return own

    def _check(self, logs: dict) -> None:
        """A metric objective the model does not log: the one-line error, at the first epoch."""
        self._checked = True
        for o in self.objectives:
            if o.per_epoch and o.name not in logs:
                names = sorted(k for k in logs if k != "learning_rate")
                close = difflib.get_close_matches(o.name, [*names, *PROPERTIES], n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise MonitorError(
                    f"objective {o.name!r} is neither a metric the model logs ({names}) "
                    f"nor a property tunecb measures ({list(PROPERTIES)}){hint}; fix it in "
                    "objectives=, or give (direction, function of the model)"
                )


def rung_values(trials: Sequence[Any], epoch: int, own: int) -> list[list[float]]:
    """The values the other trials stored at rung ``epoch`` (a failed trial's are left out:
    a trial whose worker died runs again under a new number and stores them anew)."""
    key = f"{keys.PARETO_RUNG}{epoch}"
    found = []
    for t in trials:
        if t.number == own or t.state == TrialState.FAIL:
            continue
        value = t.user_attrs.get(key)
        if isinstance(value, list) and pareto.finite(value):
            found.append(value)
    return found
