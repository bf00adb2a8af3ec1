"""What the data function returned, checked before the first trial: data that every trial
reads again (not a one-shot iterator), datasets that yield labels, and a model whose input
fits the data. Each refusal is one line naming the data function, the value and the fix.

>>> import numpy as np
>>> from tunecb.study.data import Data
>>> check_reusable(Data.from_return(((np.zeros((4, 2)), np.zeros(4)), None), "f()"), "f()")
>>> check_reusable(Data.from_return((iter([]), None), "f()"), "f()")
Traceback (most recent call last):
...
tunecb.errors.StudyFileError: f() returned a list_iterator as train data: a one-shot ...
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tunecb.errors import ConfigError, StudyFileError

Data = Any  # tunecb.study.data.Data, which calls these checks (not imported: no cycle)

_PARTS = ("train", "validation", "test")


def check_reusable(data: Data, where: str) -> None:
    """Refuse a one-shot iterator (a Python generator, ``iter(...)``): the first trial would
    spend it, and every later one would train on nothing."""
    for name in _PARTS:
        part = getattr(data, name)
        if isinstance(part, Iterator):
            raise StudyFileError(
                f"{where} returned a {type(part).__name__} as {name} data: a one-shot "
                "iterator, spent by the first trial (the next ones would get nothing); return "
                "a keras.utils.PyDataset, a tf.data.Dataset or (x, y) arrays, which every "
                "trial reads again"
            )


def check_labelled(data: Data, where: str) -> None:
    """Refuse a ``tf.data.Dataset`` whose elements are not ``(x, y)`` or ``(x, y, weight)``
    (Keras then fails every trial with "None values not supported")."""
    for name in _PARTS:
        spec = getattr(getattr(data, name), "element_spec", None)
        if spec is None or (isinstance(spec, tuple) and len(spec) in (2, 3)):
            continue
        shown = " ".join(repr(spec).split())
        shown = shown if len(shown) <= 120 else shown[:117] + "..."
        raise StudyFileError(
            f"{where} returned a tf.data.Dataset as {name} data whose elements are {shown}, "
            "without labels: Keras needs (x, y) pairs (or (x, y, sample_weight)); build it "
            "from both, e.g. tf.data.Dataset.from_tensor_slices((x, y)), or add them with "
            "dataset.map(lambda x: (x, label))"
        )


def check_input_shape(model: Any, data: Data, number: int, where: str) -> None:
    """Refuse a model of one input whose shape (one sample) cannot take the training data's
    (a different rank, or a known size that differs), before the first fit."""
    inputs = getattr(model, "inputs", None)  # a subclassed model has none: not checked
    if not inputs or len(inputs) != 1:
        return
    try:
        expected = tuple(inputs[0].shape)[1:]
        got = data.input_shape
    except Exception:  # a kind of input this check does not know: Keras decides
        return
    if not isinstance(got, tuple) or _fits(expected, got):
        return
    spec = getattr(data.train, "element_spec", None)
    whole = getattr(spec[0] if isinstance(spec, tuple) else spec, "shape", None)
    if whole is not None and _fits(expected, tuple(whole)):
        raise ConfigError(
            f"{where} returns a tf.data.Dataset of single samples (shape {_shape(tuple(whole))})"
            f", but the model of trial {number} takes batches of them; batch it: "
            "dataset.batch(batch_size)"
        )
    raise ConfigError(
        f"the model of trial {number} takes inputs of shape {_shape(expected)} (one sample), "
        f"but {where} returns train inputs of shape {_shape(got)}; give the model "
        f"keras.Input({_shape(got)}) (data.input_shape, in build(trial, data)) or reshape "
        "the data"
    )


def _fits(expected: tuple, got: tuple) -> bool:
    """Whether Keras takes inputs of shape ``got`` for ``expected`` (per sample): the same
    rank with every known size equal, or one more or less trailing axis of size 1 (Keras
    adds or drops it).

    >>> _fits((8,), (8,)), _fits((None, 3), (20, 3)), _fits((28, 28, 1), (28, 28))
    (True, True, True)
    >>> _fits((8,), (64,)), _fits((8,), ())
    (False, False)
    """
    if len(got) == len(expected) + 1 and got[-1:] == (1,):
        got = got[:-1]
    elif len(expected) == len(got) + 1 and expected[-1:] == (1,):
        expected = expected[:-1]
    return len(got) == len(expected) and all(
        a is None or b is None or a == b for a, b in zip(expected, got, strict=True)
    )


def _shape(shape: tuple) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def data_function(loaded: Any) -> str:
    """``the data function load() in tiny.py``: how errors name a study's data function."""
    fn = loaded.study.data_fn
    return f"the data function {getattr(fn, '__name__', 'data')}() in {loaded.path}"
