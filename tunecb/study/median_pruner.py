"""The median rule with the same statistic on both sides: tunecb's default pruner.

At the end of epoch ``t`` (from the warm-up on), a trial is stopped when its best value so
far is worse than the median of the other finished trials' best values *by epoch t*:

- every finished trial (COMPLETE or PRUNED) that trained to epoch ``t`` counts with its best
  over epochs ``1..t``;
- a COMPLETE trial that ended before ``t`` (early stopping: it had stopped improving) counts
  with its final best, the value it had settled on;
- a PRUNED trial that ended before ``t`` does not count (what it would have reached is not
  known);
- at least :attr:`EpochMedianPruner.n_min` trials must count, else the trial goes on.

Optuna's ``MedianPruner`` compares the trial's best so far with the other trials' value *at*
epoch ``t``, only among COMPLETE trials that trained that far: one side is a running maximum,
the other a single noisy epoch, and with early stopping few finished trials reach a late
epoch at all. So it rarely stops a trial: on the search benchmark at 20 trials x 30 epochs it
trained 1.5-1.7x the epochs of a hand-written loop with Hyperband, and pruned 3 of 20 trials
where Hyperband pruned 9. Comparing best with best is the statistic asynchronous successive
halving uses at its rungs (the trials that reached the rung, ranked by their best there), at
every epoch instead of at a few rungs.

This module only decides, from the stored intermediate values; it imports no Keras.

>>> best_by([(1, 0.2), (2, 0.5), (3, 0.4)], step=2, maximize=True)
0.5
>>> p = EpochMedianPruner(warmup=2)
>>> p.rule(0.5, [0.9, 0.7, 0.4], maximize=True), p.rule(0.8, [0.9, 0.7, 0.4], maximize=True)
(True, False)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState

WARM_START = "warm_start"  # tunecb.oracle.attrs.WARM_START: a copy from another study


def best_by(values: Iterable[tuple[int, float]], step: int, maximize: bool) -> float:
    """The best finite value among ``(epoch, value)`` pairs up to ``step``; NaN if none."""
    kept = [v for s, v in values if s <= step and v is not None and math.isfinite(v)]
    if not kept:
        return math.nan
    return max(kept) if maximize else min(kept)


def warmup_epochs(epochs: int) -> int:
    """Epochs a trial always trains before it can be stopped: a tenth of the budget, at least
    2 (the first epoch's value is the noisiest of a fit), at most ``epochs - 1``.

    >>> warmup_epochs(30), warmup_epochs(10), warmup_epochs(100), warmup_epochs(2)
    (3, 2, 10, 1)
    """
    return max(1, min(epochs - 1, max(2, epochs // 10)))


class EpochMedianPruner(optuna.pruners.BasePruner):
    """Stops a trial whose best so far is worse than the median of the other finished
    trials' bests by the same epoch (see the module's docstring)."""

    def __init__(self, warmup: int = 2, n_min: int = 3) -> None:
        if warmup < 0 or n_min < 1:
            raise ValueError(f"warmup must be >= 0 and n_min >= 1, got {warmup}, {n_min}")
        self.warmup, self.n_min = warmup, n_min

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self.warmup:
            return False
        maximize = study.direction == StudyDirection.MAXIMIZE
        mine = best_by(trial.intermediate_values.items(), step, maximize)
        if math.isnan(mine):
            return True  # no finite value so far (a NaN fit is stopped by tunecb's watch)
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        return self.rule(mine, self.others(finished, trial.number, step, maximize), maximize)

    def others(
        self, finished: Sequence[Any], number: int, step: int, maximize: bool
    ) -> list[float]:
        """The other trials' bests by ``step`` that count (see the module's docstring)."""
        counted = []
        for t in finished:
            if t.number == number or WARM_START in t.user_attrs or not t.intermediate_values:
                continue
            reached = t.last_step is not None and t.last_step >= step
            if not reached and t.state != TrialState.COMPLETE:
                continue
            value = best_by(t.intermediate_values.items(), step, maximize)
            if not math.isnan(value):
                counted.append(value)
        return counted

    def rule(self, mine: float, others: Sequence[float], maximize: bool) -> bool:
        """Stop when ``mine`` is worse than the median of ``others`` (at least ``n_min``)."""
        if len(others) < self.n_min:
            return False
        median = float(np.median(others))
        return mine < median if maximize else mine > median
