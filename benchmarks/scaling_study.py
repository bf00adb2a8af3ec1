"""The throughput study of ``benchmarks/scaling.py``: a fixed MLP on scikit-learn's digits.

Every trial builds the same model (the builder asks the trial for nothing), early stopping
is off (``patience=None``) and the pruner is off, so every trial does the same training
work (a few epochs, about 1-2 s on one core) whatever the number of worker processes:

    tunecb search benchmarks/scaling_study.py --results /tmp/x --n-trials 24 --jobs 2

:func:`digits` is shared with ``benchmarks/scaling_long_study.py``.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import tunecb

EPOCHS = 8
BATCH_SIZE = 64
SEED = 0
UNITS = (128, 64)
LEARNING_RATE = 1e-3

Arrays = tuple[np.ndarray, np.ndarray]

study = tunecb.Study(
    name="scaling",
    monitor="val_accuracy",
    epochs=EPOCHS,
    batch_size=BATCH_SIZE,
    pruner="none",
    seed=SEED,
    patience=None,  # no early stopping: every fit runs all EPOCHS
    lr_schedule="none",
    verbose=0,
)


def digits(n_train: int | None = None, n_val: int | None = None) -> tuple[Arrays, Arrays]:
    """The 8x8 digits scaled to [0, 1], split 75/25 (stratified), optionally cut down."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.25, stratify=y, random_state=0
    )
    return (x_train[:n_train], y_train[:n_train]), (x_val[:n_val], y_val[:n_val])


def mlp(units: tuple[int, ...] = UNITS, learning_rate: float = LEARNING_RATE) -> keras.Model:
    """A compiled MLP for the 64 pixels of a digit."""
    model = keras.Sequential([keras.Input(shape=(64,))])
    for n in units:
        model.add(keras.layers.Dense(n, activation="relu"))
    model.add(keras.layers.Dense(10, activation="softmax"))
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


@study.data
def load() -> tuple[Arrays, Arrays]:
    return digits()


@study.model
def build(trial: Any) -> keras.Model:
    """The same compiled MLP every time; ``trial`` is ignored on purpose."""
    del trial
    return mlp()
