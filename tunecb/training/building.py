"""The study's own code a trial calls before ``fit``: the model builder and the user's
callbacks, each checked for what it returns, and the model's output width checked against
the data's class labels.

Example::

    model = build_model(loaded, trial, data)        # ModelError: not a compiled keras.Model
    check_labels(model, trial.number, loaded, data.label_range)
    extra = user_callbacks(loaded, trial)           # ConfigError: not Keras callbacks
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from tunecb.errors import ConfigError, ModelError
from tunecb.study.data import Data, missing_backend_hint, wants_data
from tunecb.study.declaration import LoadedStudy

__all__ = ["build_model", "check_labels", "sparse_units", "user_callbacks"]


def build_model(loaded: LoadedStudy, trial: Any, data: Data) -> keras.Model:
    """Call the study's model builder (``build(trial)`` or ``build(trial, data)``) and check
    it returned a compiled model; raises :class:`ModelError` otherwise."""
    build = loaded.study.build_fn
    where = f"the model builder {getattr(build, '__name__', 'build')}() in {loaded.path}"
    try:
        model = build(trial, data) if wants_data(build) else build(trial)
    except ModuleNotFoundError as exc:  # every trial would fail alike: stop the search
        hint = missing_backend_hint(exc) or "; install it"
        raise ModelError(f"{where} raised ModuleNotFoundError: {exc}{hint}") from exc
    if not isinstance(model, keras.Model):
        raise ModelError(
            f"{where} returned {type(model).__name__}, not a keras.Model; return the compiled model"
        )
    if not model.compiled:
        raise ModelError(
            f"{where} returned an uncompiled model; call "
            "model.compile(optimizer=..., loss=..., metrics=[...]) before returning it"
        )
    return model


def sparse_units(model: Any) -> tuple[str, int] | None:
    """The loss name and output width of a one-output model trained with a sparse
    categorical loss that takes every label (no ``ignore_class``); ``None`` otherwise (its
    labels are not checked).

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> model.compile(loss="sparse_categorical_crossentropy")
    >>> sparse_units(model)
    ('sparse_categorical_crossentropy', 3)
    >>> model.compile(loss="mse"); sparse_units(model) is None
    True
    """
    loss = getattr(model, "loss", None)
    name = loss if isinstance(loss, str) else getattr(loss, "name", None)
    name = str(name or getattr(loss, "__name__", ""))
    outputs = getattr(model, "outputs", None)  # a subclassed model has none: not checked
    if "sparse_categorical" not in name or not outputs or len(outputs) != 1:
        return None
    if getattr(loss, "ignore_class", None) is not None:  # labels such as -1 are meant
        return None
    units = outputs[0].shape[-1]
    return (name, units) if isinstance(units, int) else None


def check_labels(
    model: Any,
    number: int,
    loaded: LoadedStudy,
    label_range: Callable[[], tuple[float, float] | None],
) -> None:
    """Refuse class labels that the model's sparse categorical loss cannot take (below 0,
    or at least its output width): TensorFlow fails every trial on them, JAX trains on
    them silently (it clamps). ``label_range()`` (called only for such a model) gives the
    labels' lowest and highest value. Raises :class:`ConfigError`."""
    found = sparse_units(model)
    if found is None:
        return
    labels = label_range()
    name, units = found
    if labels is None or (labels[0] >= 0 and labels[1] < units):
        return
    fn = loaded.study.data_fn
    raise ConfigError(
        f"the model of trial {number} ends in {units} units, but the data function "
        f"{getattr(fn, '__name__', 'data')}() in {loaded.path} returns class labels "
        f"from {labels[0]:g} to {labels[1]:g}; {name} needs labels in [0, {units}): give "
        f"the last layer one unit per class (data.n_classes, in build(trial, data)) or "
        "fix the labels"
    )


def user_callbacks(loaded: LoadedStudy, trial: Any) -> list[keras.callbacks.Callback]:
    """The study's ``@study.callbacks`` for ``trial`` (none without one), checked to be
    Keras callbacks; raises :class:`ConfigError` otherwise."""
    fn = loaded.study.callbacks_fn
    if fn is None:
        return []
    result = fn(trial)
    items = [result] if isinstance(result, keras.callbacks.Callback) else list(result or [])
    for item in items:
        if not isinstance(item, keras.callbacks.Callback):
            raise ConfigError(
                f"@study.callbacks in {loaded.path} returned {type(item).__name__}; "
                "return a list of keras.callbacks.Callback"
            )
    return items
