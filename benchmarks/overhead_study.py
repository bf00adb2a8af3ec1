"""The fixed study of ``benchmarks/overhead.py``: one MLP on scikit-learn's bundled digits.

Every trial builds the same model (the builder asks the trial for nothing), early
stopping cannot stop a fit (its patience is the whole budget, so it only watches and
restores the best weights, as a user's ``EarlyStopping`` does) and the pruner is off
(``--pruner none``), so every trial runs all its epochs: ``tunecb search`` and the bare loop of
``benchmarks/overhead_bare.py`` (which imports this file) do identical training work.

    tunecb search benchmarks/overhead_study.py --results /tmp/x --n-trials 12 --pruner none
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import tunecb

EPOCHS = 30
BATCH_SIZE = 64
SEED = 0
UNITS = (128, 64)
LEARNING_RATE = 1e-3

study = tunecb.Study(
    name="overhead",
    monitor="val_accuracy",
    epochs=EPOCHS,
    batch_size=BATCH_SIZE,
    pruner="none",
    seed=SEED,
    patience=EPOCHS,  # cannot trigger: every fit runs all EPOCHS
    lr_schedule="none",
    verbose=0,
)

Arrays = tuple[np.ndarray, np.ndarray]


@study.data
def load() -> tuple[Arrays, Arrays]:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.25, stratify=y, random_state=0
    )
    return (x_train, y_train), (x_val, y_val)


@study.model
def build(trial: Any) -> keras.Model:
    """The same compiled MLP every time; ``trial`` is ignored on purpose."""
    del trial
    model = keras.Sequential([keras.Input(shape=(64,))])
    for units in UNITS:
        model.add(keras.layers.Dense(units, activation="relu"))
    model.add(keras.layers.Dense(10, activation="softmax"))
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
