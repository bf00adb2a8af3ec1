"""A model's variables as values: all of them (its optimizer's included), copies that later
training does not change (:func:`snapshot`), put back (:func:`put_back`), and their size.
The best checkpoint keeps its best epoch this way, the promotion pruner's kept models their
pause.

>>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
>>> kept = snapshot(model); _ = model.layers[0].bias.assign([5.0])
>>> put_back(model, kept); model.layers[0].bias.numpy().tolist(), variables_bytes(kept)
([0.0], 12)
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np


def all_variables(model: Any) -> list[Any]:
    """``model``'s variables, then its optimizer's (none before the optimizer is built)."""
    optimizer = getattr(model, "optimizer", None)
    return list(model.variables) + list(getattr(optimizer, "variables", None) or [])


def copy_value(variable: Any) -> np.ndarray:
    """A copy of ``variable``'s value that later training does not change (PyTorch's numpy
    view shares the tensor's memory, JAX may donate its buffer). A TensorFlow variable is
    read once and copied once: its ``numpy()`` is already a copy (TensorFlow copies the
    read, an array that owns its memory), copied again only if a TensorFlow version hands
    out a view instead; a fraction of the CPU of ``keras.ops.convert_to_numpy``, which a new
    best pays at every epoch that improves.

    >>> v = keras.Variable(np.ones(3, "float32")); kept = copy_value(v)
    >>> _ = v.assign(np.zeros(3)); kept.tolist()
    [1.0, 1.0, 1.0]
    """
    value = variable.value
    if hasattr(value, "read_value") and hasattr(value, "numpy"):  # a tf.Variable
        read = np.asarray(value.numpy())  # (a rank-0 variable's: a NumPy scalar, immutable)
        return read if read.flags.owndata else read.copy()
    return np.array(keras.ops.convert_to_numpy(value), copy=True)


def snapshot(model: Any, variables: list[Any] | None = None) -> list[np.ndarray]:
    """Copies of the values of ``model``'s variables and its optimizer's (``variables``: the
    list :func:`all_variables` gave, if the caller has it), unchanged by later training."""
    return [copy_value(v) for v in (all_variables(model) if variables is None else variables)]


def put_back(model: Any, values: list[np.ndarray]) -> None:
    """Assign a :func:`snapshot` back to the variables of the model it was taken of; a
    ``ValueError`` if the model's variables are not as many (not the set it was taken of)."""
    variables = all_variables(model)
    if len(variables) != len(values):
        raise ValueError(
            f"{len(values)} values for {len(variables)} variables (the optimizer's included): "
            "not the variables they were taken of"
        )
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


def variables_bytes(variables: Any) -> int:
    """Bytes of these variables' (or arrays') values: their shapes times their dtypes' sizes.

    >>> variables_bytes([np.zeros((3, 4), "float32")])
    48
    """
    total = 0
    for variable in variables:
        try:
            itemsize = np.dtype(variable.dtype).itemsize
        except TypeError:  # bfloat16 and the like: 2 bytes
            itemsize = 2
        total += math.prod(variable.shape) * itemsize
    return total
