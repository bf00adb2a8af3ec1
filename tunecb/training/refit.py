"""Fit a trial's configuration once more, outside the search: the final model of
``tunecb retrain`` (all the training data, a fixed number of epochs, the trial's own
learning rates), and test metrics of saved models.

Example::

    model, history = fit_final(loaded, settings, data.merged(), params, number, seed,
                               epochs=12, rates=[1e-3] * 12)
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import keras
import optuna

from tunecb.results import atomic_write
from tunecb.study.data import Data
from tunecb.study.declaration import LoadedStudy
from tunecb.study.settings import Settings
from tunecb.training import fit_setup, grappler
from tunecb.training.building import build_model
from tunecb.training.trial_env import clear_session

log = logging.getLogger("tunecb")


class ReplayRates(keras.callbacks.Callback):
    """Sets the learning rate of each epoch to the one a trial used in that epoch (the
    last one past its end): cosine, step and plateau schedules alike, with no validation
    data needed."""

    def __init__(self, rates: list[float]) -> None:
        super().__init__()
        self.rates = list(rates)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.rates:
            self.model.optimizer.learning_rate = self.rates[min(epoch, len(self.rates) - 1)]


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops the fit at the end of the first epoch whose loss is NaN or infinite: Keras'
    ``TerminateOnNaN`` checks every batch, and a per-batch hook keeps the fit at one batch
    per backend call (:mod:`tunecb.training.fast_fit`)."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True


def fit_final(
    loaded: LoadedStudy,
    settings: Settings,
    data: Data,
    params: dict[str, Any],
    number: int,
    seed: int,
    epochs: int,
    rates: list[float],
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Build trial ``number``'s model from ``params`` with its ``seed`` and fit it on
    ``data.train`` for ``epochs`` epochs; returns the model and its history. A loss that
    stops being finite raises :class:`ValueError`."""
    clear_session()
    keras.utils.set_random_seed(seed)
    trial = optuna.trial.FixedTrial(params, number=number)
    model = build_model(loaded, trial, data)
    fit = data.fit_arguments(settings.batch_size)
    fit.pop("validation_data", None)
    kwargs = {k: v for k, v in settings.fit_kwargs.items() if k != "validation_split"}
    callbacks = [ReplayRates(rates), StopOnNonFinite()]
    # As in the search: several batches per backend call where that changes nothing.
    arguments, options = fit_setup.prepare(  # its batches in the same order, an epoch's alike
        model, settings, callbacks, {**fit, **kwargs}, expected=epochs,
        seed=seed, initial_epoch=0, epochs=epochs,
    )  # fmt: skip
    with grappler.applied(options):
        history = model.fit(
            **arguments, epochs=epochs, verbose=settings.verbose, callbacks=callbacks
        )
    losses = history.history.get("loss") or []
    if len(losses) < epochs or not all(math.isfinite(v) for v in losses):
        raise ValueError(f"the loss was not finite at epoch {len(losses)}; nothing was saved")
    return model, {k: [float(v) for v in vs] for k, vs in history.history.items()}


def save_model(model: keras.Model, path: Path) -> None:
    """Save ``model`` as a self-contained ``.keras`` file, atomically."""
    atomic_write(path, lambda tmp: model.save(tmp), suffix=".keras")


def evaluate_on_test(model: keras.Model, data: Data, batch_size: int | None) -> dict[str, float]:
    """``model.evaluate`` on ``data.test`` as ``{"test_loss": ..., "test_accuracy": ...}``."""
    test = data.test
    if isinstance(test, tuple):
        x, y = test[0], test[1]
        weights = test[2] if len(test) == 3 else None
        result = model.evaluate(
            x, y, sample_weight=weights, batch_size=batch_size, verbose=0, return_dict=True
        )
    else:
        result = model.evaluate(test, verbose=0, return_dict=True)
    return {f"test_{k}": float(v) for k, v in result.items()}
