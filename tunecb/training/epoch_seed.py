"""The random state of the data order, fixed by (trial seed, epoch), so that a trial resumed
from its backup at any epoch (a paused one, a killed worker's) shuffles every later epoch as
the uninterrupted fit would.

Keras shuffles array data from the backend's global generator when an epoch's iterator
starts: NumPy's on JAX (and NumPy), PyTorch's on torch. Seeded once per trial, epoch ``e``
draws after the ``e - 1`` epochs before it, and a fit resumed at epoch ``e`` draws epoch 1's
order instead. TensorFlow's ``tf.data`` shuffle restarts from its seed with every epoch's
iterator, so it is exact already; the callback changes nothing there.

>>> epoch_seed(0, 3) == epoch_seed(0, 3) != epoch_seed(0, 4)
True
"""

from __future__ import annotations

import keras
import numpy as np


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` (0-based) of a trial seeded ``seed``."""
    return int(np.random.SeedSequence([seed, epoch, 0xE90C]).generate_state(1)[0] % 2**31)


class EpochSeed(keras.callbacks.Callback):
    """Seeds the global generators that shuffle array data at the start of every epoch."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        value = epoch_seed(self.seed, epoch)
        np.random.seed(value)
        if keras.backend.backend() == "torch":
            import torch

            torch.manual_seed(value)
