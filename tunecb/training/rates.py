"""The learning-rate callback of per-epoch schedules, and reading a model's current rate.

The formula is the schedule's own (:meth:`tunecb.study.schedules.PerEpoch.rate`); this
callback only applies it at the start of every epoch, from the rate the model was compiled
with, and keeps that rate as its state so a resumed trial decays from it, not from the
rate the backup's optimizer already holds.

Example::

    model.fit(x, y, epochs=10, callbacks=[EpochLRSchedule(schedules.Cosine(), epochs=10)])
"""

from __future__ import annotations

from typing import Any

import keras

from tunecb.errors import ConfigError
from tunecb.study import schedules


def current_lr(model: keras.Model) -> float | None:
    """The optimizer's learning rate now, ``None`` when it has none readable."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    try:
        rate = optimizer.learning_rate
        return float(rate.numpy() if hasattr(rate, "numpy") else rate)
    except Exception:  # an optimizer without a readable rate: log nothing
        return None


class EpochLRSchedule(keras.callbacks.Callback):
    """Sets the optimizer's learning rate at the start of every epoch to
    ``schedule.rate(epoch, base_lr, epochs)``, ``base_lr`` being the compiled rate."""

    def __init__(self, schedule: schedules.PerEpoch, epochs: int) -> None:
        super().__init__()
        self.schedule = schedule
        self.epochs = epochs
        self.base_lr: float | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        rate = self.model.optimizer._learning_rate
        if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
            raise ConfigError(
                f"lr_schedule={self.schedule.name!r} sets the rate per epoch, but the model "
                "was compiled with a keras LearningRateSchedule; keep one of the two"
            )
        self.base_lr = current_lr(self.model)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.model.optimizer.learning_rate = self.rate(epoch)

    def rate(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (0-based)."""
        return self.schedule.rate(epoch, float(self.base_lr), self.epochs)

    def get_state(self) -> dict[str, Any]:
        return {"base_lr": self.base_lr}

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("base_lr") is not None:
            self.base_lr = float(state["base_lr"])  # the optimizer's rate is already decayed
