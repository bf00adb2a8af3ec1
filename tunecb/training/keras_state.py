"""Keras' own callbacks that tunecb uses, each with the state protocol of
:mod:`tunecb.training.state` (``get_state``/``set_state``): the state Keras resets in
``on_train_begin`` and that a resumed trial must get back to go on exactly.

Bests are saved as finite floats or ``None`` (JSON has no infinity; Keras starts from
``None``). Example::

    stop = TrialEarlyStopping(checkpoint, monitor="val_loss", patience=3)
    saved = stop.get_state()      # after some epochs
    again = TrialEarlyStopping(checkpoint, monitor="val_loss", patience=3)
    again.set_state(saved)        # after fit's on_train_begin, before the next epoch
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras

from tunecb.training.monitor import finite_or_none


class TrialEarlyStopping(keras.callbacks.EarlyStopping):
    """``keras.callbacks.EarlyStopping`` with its patience, best and best epoch as state.

    With ``restore_best_weights``, a restored state takes its best weights from the
    trial's best checkpoint ``checkpoint`` (the weights Keras held in memory are not
    saved): the same weights when the best epochs agree (``min_delta=0``)."""

    def __init__(self, checkpoint: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checkpoint = Path(checkpoint)
        # Keras' own best weights of a paused attempt whose model its worker kept in memory
        # (tunecb.training.kept_models): taken instead of reading the checkpoint back
        self.kept_best_weights: list | None = None

    def get_state(self) -> dict[str, Any]:
        return {"wait": int(self.wait), "best": finite_or_none(self.best),
                "best_epoch": int(self.best_epoch)}  # fmt: skip

    def set_state(self, state: dict[str, Any]) -> None:
        self.wait, self.best_epoch = int(state["wait"]), int(state["best_epoch"])
        if state.get("best") is not None:
            self.best = float(state["best"])
        if self.restore_best_weights and self.kept_best_weights is not None:
            self.best_weights = self.kept_best_weights
        elif self.restore_best_weights and self.checkpoint.exists():
            model = keras.saving.load_model(self.checkpoint, compile=False)
            self.best_weights = model.get_weights()


class TrialReduceLROnPlateau(keras.callbacks.ReduceLROnPlateau):
    """``keras.callbacks.ReduceLROnPlateau`` with its wait, best and cooldown as state (the
    reduced rate itself is the optimizer's, restored with the weights)."""

    def get_state(self) -> dict[str, Any]:
        return {"wait": int(self.wait), "best": finite_or_none(self.best),
                "cooldown_counter": int(self.cooldown_counter)}  # fmt: skip

    def set_state(self, state: dict[str, Any]) -> None:
        self.wait, self.cooldown_counter = int(state["wait"]), int(state["cooldown_counter"])
        if state.get("best") is not None:
            self.best = float(state["best"])
