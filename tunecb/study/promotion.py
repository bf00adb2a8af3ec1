"""The promotion pruner: asynchronous successive halving that pauses instead of stopping.

Rungs at epochs ``r, r*eta, r*eta**2, ... < epochs`` (``r`` a tenth of the budget, as
Hyperband's first rung; ``eta`` 3). At a rung a configuration goes on at once when it is
*promotable*: among the configurations that reached the rung (each counted once, however
many attempts it took), its best monitored value so far is in the top ``n // eta``.
Otherwise the pruner says "prune", which the pruning callback reads as a PAUSE (the pruner's
:attr:`PromotionPruner.pauses`): the trial stops cleanly with its backup kept, and a free
worker resumes it later, when it has become promotable (:mod:`tunecb.oracle.promotions`).

This module only decides, from the stored intermediate values; it imports no Keras.

>>> p = PromotionPruner(min_resource=2, max_resource=20)
>>> p.rungs
(2, 6, 18)
>>> promotable(0.9, [0.9, 0.5, 0.7], maximize=True, eta=3), promotable(0.7, [0.9, 0.5, 0.7])
(True, False)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import optuna
from optuna.study import StudyDirection

RETRY_HISTORY = "retry_history"  # Optuna's system attr (tunecb.oracle.attrs names it too)
WARM_START = "warm_start"  # tunecb.oracle.attrs.WARM_START: a copy from another study


class PromotionPruner(optuna.pruners.BasePruner):
    """Pauses a trial at a rung unless it is promotable there; never stops one for good.

    ``prune`` returning ``True`` means PAUSE: tunecb's pruning callback checks
    :attr:`pauses` and records the trial as paused (stop reason ``paused``), with its
    backup kept. Used through Optuna's ``should_prune`` elsewhere, it acts as a
    stop-type asynchronous successive halving.
    """

    pauses = True

    def __init__(self, min_resource: int, max_resource: int, reduction_factor: int = 3) -> None:
        if min_resource < 1 or reduction_factor < 2:
            raise ValueError(
                f"min_resource must be >= 1 and reduction_factor >= 2; received "
                f"min_resource={min_resource}, reduction_factor={reduction_factor}"
            )
        self.eta = reduction_factor
        self.max_resource = max_resource
        rungs, r = [], min_resource
        while r < max_resource:
            rungs.append(r)
            r *= reduction_factor
        self.rungs = tuple(rungs)

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step not in self.rungs:
            return False
        maximize = study.direction == StudyDirection.MAXIMIZE
        trials = study.get_trials(deepcopy=False)
        return not self.promotable_at(trials, trial, step, maximize)

    def promotable_at(
        self, trials: Sequence[Any], trial: Any, rung: int, maximize: bool, last: bool = False
    ) -> bool:
        """Whether ``trial`` (which reached ``rung``) ranks in the top ``n // eta`` of the
        configurations in ``trials`` that reached it (``trial`` counted once); with
        ``last`` (no new configuration will come: the budget is spent), in the top
        ``max(1, n // eta)``, so that the best of every rung trains to the end."""
        mine = best_until(trial.intermediate_values, rung, maximize)
        if mine is None:
            return False
        values = rung_values(trials, rung, maximize)
        values[configuration(trial)] = mine
        return promotable(mine, list(values.values()), maximize, self.eta, last)


def configuration(trial: Any) -> int:
    """The number of a configuration's first attempt: its attempts share it (a rerun and a
    continuation carry Optuna's ``retry_history``, first attempt first)."""
    history = trial.system_attrs.get(RETRY_HISTORY) or []
    return int(history[0]) if history else int(trial.number)


def best_until(values: dict[int, float], rung: int, maximize: bool) -> float | None:
    """The best value reported up to and including step ``rung``, ``None`` if ``rung`` was
    not reached.

    >>> best_until({1: 0.5, 2: 0.4, 3: 0.6}, 2, maximize=True), best_until({1: 0.5}, 2, True)
    (0.5, None)
    """
    if rung not in values:
        return None
    seen = [v for step, v in values.items() if step <= rung and v == v]  # not NaN
    if not seen:
        return None
    return max(seen) if maximize else min(seen)


def rung_values(trials: Iterable[Any], rung: int, maximize: bool) -> dict[int, float]:
    """``{configuration: best value up to rung}`` of the configurations that reached it."""
    found: dict[int, float] = {}
    for t in trials:
        if WARM_START in t.user_attrs:  # a pruned trial of another study (--warm-start)
            continue
        value = best_until(t.intermediate_values, rung, maximize)
        if value is None:
            continue
        key = configuration(t)
        old = found.get(key)
        if old is None or (value > old if maximize else value < old):
            found[key] = value
    return found


def promotable(
    value: float, values: list[float], maximize: bool = False, eta: int = 3, last: bool = False
) -> bool:
    """Whether ``value`` is in the top ``len(values) // eta`` of ``values`` (its own among
    them; with ``last``, at least the top one); ties go up.

    >>> promotable(0.1, [0.1, 0.2]), promotable(0.1, [0.1, 0.2, 0.3])
    (False, True)
    >>> promotable(0.1, [0.1, 0.2], last=True), promotable(0.2, [0.1, 0.2], last=True)
    (True, False)
    """
    top = max(1, len(values) // eta) if last else len(values) // eta
    if top < 1:
        return False
    ranked = sorted(values, reverse=maximize)
    cut = ranked[top - 1]
    return value >= cut if maximize else value <= cut
