"""What one trial did, typed once: made by the runner, told to Optuna, stored as user
attributes, sent in every executor's events and rebuilt from the storage the same way.

>>> o = TrialOutcome(number=3, state="COMPLETE", value=0.9, best_epoch=2, epochs_run=4,
...                  stop_reason="early_stopped", error=None, checkpoint="trials/3/best.keras",
...                  duration_s=1.5, n_params=10, seed=1, lr_schedule="none")
>>> TrialOutcome.from_attrs(3, "COMPLETE", o.attrs()) == o
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from tunecb.oracle import attrs
from tunecb.oracle.attrs import BEST_VALUE

COMPLETE, PRUNED, FAIL = "COMPLETE", "PRUNED", "FAIL"
INFEASIBLE = "INFEASIBLE"  # a tally key, not an Optuna state: see TrialOutcome.tally
PAUSED = "PAUSED"  # a tally key: a PRUNED trial the promotion pruner paused


@dataclass(frozen=True)
class TrialOutcome:
    """The Optuna state to tell and the metadata to keep."""

    number: int
    state: str
    value: float | None
    best_epoch: int | None
    epochs_run: int
    stop_reason: str
    error: str | None
    checkpoint: str | None
    duration_s: float
    n_params: int | None
    seed: int | None
    lr_schedule: str | None
    resumed_from_epoch: int | None = None
    constraint: float | None = None  # the model's constraint violation (> 0: infeasible)
    # A multi-objective trial's values at its best epoch, {name: value} in the study's order
    objectives: dict[str, float | None] | None = None

    @property
    def tally(self) -> str:
        """What this outcome counts as in a run's tally: its state, ``INFEASIBLE`` for a
        model that broke the study's constraints (neither a failure nor a success), or
        ``PAUSED`` for a trial paused at a rung (promotion pruner).

        >>> TrialOutcome(1, "PRUNED", None, None, 0, "infeasible", None, None, 0.1, 9, 1,
        ...              "none").tally
        'INFEASIBLE'
        """
        if self.stop_reason == attrs.PAUSED:
            return PAUSED
        return INFEASIBLE if self.stop_reason == attrs.INFEASIBLE else self.state

    def attrs(self) -> dict[str, Any]:
        """The metadata stored as Optuna user attributes (the value as ``best_value``:
        Optuna's value of a PRUNED trial is its last report, not its best)."""
        data = asdict(self)
        for key in ("number", "state"):
            data.pop(key)
        data[BEST_VALUE] = data.pop("value")
        if data[attrs.OBJECTIVES] is None:  # a single-objective trial stores what it always did
            del data[attrs.OBJECTIVES]
        return data

    @classmethod
    def from_attrs(cls, number: int, state: str, attrs: dict[str, Any]) -> TrialOutcome:
        """Rebuild an outcome from a trial's user attributes (what another process stored)."""
        known = {f.name for f in fields(cls)} - {"number", "state", "value"}
        values = {k: attrs.get(k) for k in known}
        values["epochs_run"] = values["epochs_run"] or 0
        values["duration_s"] = values["duration_s"] or 0.0
        return cls(number=number, state=state, value=attrs.get(BEST_VALUE), **values)

    def values(self) -> list[float] | None:
        """What Optuna is told for a COMPLETE trial: its objectives' values in order (a
        multi-objective study), else ``None`` (its ``value``).

        >>> TrialOutcome(1, "COMPLETE", 0.9, 1, 1, "completed", None, None, 0.1, 9, 1, "none",
        ...              objectives={"val_accuracy": 0.9, "params": 9.0}).values()
        [0.9, 9.0]
        """
        return None if self.objectives is None else list(self.objectives.values())

    @classmethod
    def from_trial(cls, trial: Any) -> TrialOutcome:
        """From a frozen Optuna trial that tunecb's runner recorded."""
        return cls.from_attrs(trial.number, trial.state.name, trial.user_attrs)
