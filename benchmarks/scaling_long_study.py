"""The long-search study of ``benchmarks/scaling.py``: many tiny trials, to watch memory.

Each trial builds the same small MLP (:func:`scaling_study.mlp`) and fits it for one epoch on
a slice of the digits (256 training, 128 validation samples), so a trial takes a fraction of
a second and a few hundred trials show how a worker process's memory grows per trial:

    tunecb search benchmarks/scaling_long_study.py --results /tmp/x --n-trials 200 \\
        --jobs 1 --worker-trials 0 --worker-memory 0
"""

from __future__ import annotations

from typing import Any

import keras
from scaling_study import Arrays, digits, mlp  # beside this file (tunecb puts it on sys.path)

import tunecb

EPOCHS = 1
BATCH_SIZE = 64
SEED = 0
N_TRAIN, N_VAL = 256, 128

study = tunecb.Study(
    name="scaling_long",
    monitor="val_accuracy",
    epochs=EPOCHS,
    batch_size=BATCH_SIZE,
    pruner="none",
    seed=SEED,
    patience=None,
    lr_schedule="none",
    verbose=0,
)


@study.data
def load() -> tuple[Arrays, Arrays]:
    return digits(N_TRAIN, N_VAL)


@study.model
def build(trial: Any) -> keras.Model:
    """The same compiled MLP every time; ``trial`` is ignored on purpose."""
    del trial
    return mlp()
