"""One ``tf.data`` pipeline a fit for in-memory arrays, instead of two iterators an epoch.

Fitting NumPy arrays, Keras' TensorFlow trainer makes a new iterator of its array adapter's
pipeline (shuffled, mapped, prefetched; its functions instantiated again) for the training
data of every epoch and another for the validation data: about 11 ms of CPU each, more than
a steady epoch of a small MLP trains. Here the training batches of every epoch from
``initial_epoch`` to the end are one dataset, read through one iterator with
``steps_per_epoch`` (the batches of an epoch, the last one partial as Keras'), and the
validation batches are cached and repeated with ``validation_steps``.

An epoch's order is a function of (trial seed, epoch) only: a stateless shuffle of the row
indices keyed by :func:`~tunecb.training.epoch_seed.epoch_seed`, so a fit resumed at epoch
``k`` (a paused trial, a killed worker's) trains every later epoch on the batches the
uninterrupted fit would have. Every row is used once an epoch; the validation batches are
those of ``model.evaluate`` on the arrays, in order. Arrays on TensorFlow trained every
epoch of a fit in one order (the adapter's seeded shuffle restarts with each iterator);
here each epoch has its own, as on JAX and PyTorch (:mod:`.epoch_seed`).

Only for what it reproduces exactly (:func:`unsupported` says why not; the fit then takes
the arrays as before): the TensorFlow backend, ``x`` and ``y`` NumPy arrays (no sample or
class weights, no ``validation_split``, no ``steps_per_epoch``, shuffling on), validation
arrays without weights, and one batch a call (with ``steps_per_execution`` > 1 and
``steps_per_epoch``, Keras 3.15 runs whole calls: 22 batches an epoch would train 32).

>>> import numpy as np
>>> unsupported({"x": np.zeros((4, 2)), "y": np.zeros(4), "batch_size": 2}) is None
True
>>> unsupported({"x": np.zeros((4, 2)), "y": np.zeros(4), "sample_weight": np.ones(4)})
'sample_weight'
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from tunecb.training import fast_fit
from tunecb.training.epoch_seed import epoch_seed

log = logging.getLogger("tunecb")

# CPU seconds a steady epoch saves against arrays at one batch a call, measured with
# benchmarks/one_pipeline.py (diabetes, digits, tabular; MLP 2 x 64, batch 64): the two
# iterators an epoch, and the array adapter's work per batch.
EPOCH_SAVING = 0.045
BATCH_SAVING = 0.0006

_HANDLED = {"x", "y", "batch_size", "validation_data", "validation_batch_size",
            "validation_freq", "shuffle"}  # fmt: skip


def unsupported(fit_arguments: dict[str, Any]) -> str | None:
    """Why these ``model.fit`` arguments cannot be fed from one pipeline (the first
    argument that rules it out), ``None`` when they can.

    >>> unsupported({"x": [[0.0]], "y": [0.0]})
    'x'
    >>> import numpy as np
    >>> unsupported({"x": np.zeros((2, 1)), "y": np.zeros(2), "shuffle": False})
    'shuffle'
    """
    for key, value in fit_arguments.items():
        if key not in _HANDLED and value is not None:
            return key
    if fit_arguments.get("shuffle", True) is not True:
        return "shuffle"
    x, y = fit_arguments.get("x"), fit_arguments.get("y")
    if not _array(x) or len(x) == 0:
        return "x"
    if not _array(y) or len(y) != len(x):
        return "y"
    validation = fit_arguments.get("validation_data")
    if validation is not None:
        if not isinstance(validation, tuple) or len(validation) != 2:
            return "validation_data"
        vx, vy = validation
        if not _array(vx) or not _array(vy) or len(vx) != len(vy) or len(vx) == 0:
            return "validation_data"
    return None


def pays(batches: int, validation_batches: int, steps: int) -> bool:
    """Whether one pipeline at one batch a call saves more an epoch than arrays at
    ``steps`` batches a call (what :mod:`.fast_fit` chose for them) with ``batches``
    training and ``validation_batches`` validation batches.

    >>> pays(22, 8, 1), pays(22, 8, 16), pays(313, 79, 16)  # digits; a 20,000-row task
    (True, True, False)
    """
    if steps == 1:
        return True
    mine = EPOCH_SAVING + BATCH_SAVING * (batches + validation_batches)
    avoided = fast_fit.calls_avoided(batches, validation_batches, 1, steps=steps)
    theirs = avoided * fast_fit.CALL_COST
    return mine > theirs


def feed(
    model: Any, setting: int | str, compiled: int, fit_arguments: dict[str, Any], *,
    seed: int, initial_epoch: int, epochs: int,
) -> dict[str, Any]:  # fmt: skip
    """The arguments to fit ``model`` with: one pipeline (:func:`arguments`) where it is
    supported and pays, setting the model back to one batch a call where
    :func:`.fast_fit.apply` chose more (``"auto"``; ``compiled``: what the model was
    compiled with), else ``fit_arguments`` as they are.

    >>> feed(object(), 4, 1, {}, seed=0, initial_epoch=0, epochs=1)
    {}
    """
    import keras

    if setting not in ("auto", 1) or keras.backend.backend() != "tensorflow":
        return fit_arguments
    why = unsupported(fit_arguments)
    if why is not None:
        log.debug("fit from the arrays (one pipeline does not handle its %s)", why)
        return fit_arguments
    steps = int(getattr(model, "steps_per_execution", 1) or 1)
    if steps != 1:
        if setting != "auto" or compiled != 1 or getattr(model, "train_function", None) is not None:
            return fit_arguments  # the user's or a traced fit's batches a call
        size = int(fit_arguments.get("batch_size") or 32)
        validation = fit_arguments.get("validation_data")
        vsize = int(fit_arguments.get("validation_batch_size") or size)
        vbatches = 0 if validation is None else batches(len(validation[0]), vsize)
        if not pays(batches(len(fit_arguments["x"]), size), vbatches, steps):
            return fit_arguments
        model.steps_per_execution = 1
    log.debug("fit from one pipeline (epochs %d to %d)", initial_epoch + 1, epochs)
    return arguments(fit_arguments, seed=seed, initial_epoch=initial_epoch, epochs=epochs)


def _array(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.ndim > 0


def batches(rows: int, batch_size: int) -> int:
    """Batches of an epoch of ``rows`` rows, the last one partial.

    >>> batches(1437, 64), batches(64, 64)
    (23, 1)
    """
    return -(-rows // batch_size)


def epoch_orders(seed: int, first: int, end: int, rows: int) -> np.ndarray:
    """The row order of epochs ``first`` to ``end - 1`` (0-based) of a trial seeded
    ``seed``, one row an epoch (what the pipeline computes, for tests and checks).

    >>> o = epoch_orders(0, 0, 3, 5)
    >>> o.shape, sorted(o[1]) == [0, 1, 2, 3, 4], bool((epoch_orders(0, 2, 3, 5) == o[2:]).all())
    ((3, 5), True, True)
    """
    import tensorflow as tf

    return np.stack([
        tf.random.experimental.stateless_shuffle(
            tf.range(rows, dtype=tf.int64), seed=_key(seed, e)).numpy()
        for e in range(first, end)
    ])  # fmt: skip


def _key(seed: int, epoch: int) -> list[int]:
    return [epoch_seed(seed, epoch), 0]


def _floatx(array: np.ndarray) -> Any:
    """``array`` as a tensor, floats cast to Keras' float type as its array adapter does."""
    import keras
    import tensorflow as tf

    if np.issubdtype(array.dtype, np.floating) and array.dtype != keras.config.floatx():
        array = array.astype(keras.config.floatx())
    return tf.convert_to_tensor(array)


def arguments(
    fit_arguments: dict[str, Any], *, seed: int, initial_epoch: int, epochs: int
) -> dict[str, Any]:
    """``fit_arguments`` (supported: :func:`unsupported` is ``None``) as one training
    dataset of the epochs ``initial_epoch`` to ``epochs`` with ``steps_per_epoch``, and a
    cached, repeated validation dataset with ``validation_steps``."""
    import tensorflow as tf

    x, y = _floatx(fit_arguments["x"]), _floatx(fit_arguments["y"])
    rows = int(x.shape[0])
    size = int(fit_arguments.get("batch_size") or 32)
    keys = [_key(seed, e) for e in range(initial_epoch, max(epochs, initial_epoch + 1))]

    def epoch(key: Any) -> Any:
        order = tf.random.experimental.stateless_shuffle(tf.range(rows, dtype=tf.int64), key)
        return tf.data.Dataset.from_tensor_slices(order).batch(size)

    train = (
        tf.data.Dataset.from_tensor_slices(tf.constant(keys, dtype=tf.int64))
        .flat_map(epoch)
        .map(lambda index: (tf.gather(x, index), tf.gather(y, index)))
        .prefetch(2)
    )
    out: dict[str, Any] = {"x": train, "steps_per_epoch": batches(rows, size), "shuffle": False}
    validation = fit_arguments.get("validation_data")
    if validation is not None:
        vsize = int(fit_arguments.get("validation_batch_size") or size)
        vx, vy = _floatx(validation[0]), _floatx(validation[1])
        out["validation_data"] = (
            tf.data.Dataset.from_tensor_slices((vx, vy)).batch(vsize).cache().repeat()
        )
        out["validation_steps"] = batches(int(vx.shape[0]), vsize)
    if fit_arguments.get("validation_freq") is not None:
        out["validation_freq"] = fit_arguments["validation_freq"]
    return out
