"""Several batches per call into the backend (Keras' ``steps_per_execution``) for a trial's fit.

Keras runs one compiled call per batch by default. For the small models a search tries by
the hundred, much of an epoch is the Python and dispatch around those calls. Sixteen
batches per call (:data:`AUTO_STEPS`, a ``tf.while_loop`` around the step) save that for
15 of every 16 calls, and cost something once per fit: the loop is traced and first run
with the step.

**The rule.** ``steps_per_execution="auto"`` (the default) takes the loop where the calls it
is expected to avoid save more than it costs once (an expected value: both costs are linear)::

    calls avoided over the epochs the fit is expected to train x CALL_COST
        > LOOP_COST + the model's weight tensors x LOOP_COST_PER_WEIGHT

- *calls avoided*: ``n - ceil(n / 16)`` an epoch for ``n`` training batches, the same for the
  validation batches of every validated epoch (:func:`calls_avoided`);
- *epochs expected* (:func:`expected_epochs`): the mean of the epochs the study's finished
  trials trained (before any has finished, the whole budget: the first trials of a search
  are not pruned), at least the epochs the fit is sure to train (:func:`sure_epochs`: until
  the first epoch at which its pruner may stop it, ``first_stop`` in
  :mod:`tunecb.study.samplers_pruners`, and early stopping's patience + 1). A resumed fit
  counts its sure epochs (to its next rung). The sure epochs alone were tried first: they
  ran one batch a call in every trial that might be pruned after epoch 1, survivors too,
  and cost 3-9 s more CPU in pruned 36-trial searches on the tabular task;
- the constants, measured with ``benchmarks/spe_cost.py`` (CPU of one TensorFlow thread,
  digits, the 4,000 x 40 tabular task, diabetes, friedman and a 20,000 x 40 classification
  not used to make the rule, MLPs of 1 x 32, 1 x 256 and 3 x 256 units, batch 64): a call
  avoided saves 0.7-1.2 ms whatever the model (its width and depth do not change it: it is
  the Python and dispatch around a call); the loop costs 0.13-0.36 s once, more for a
  deeper graph (medians 0.15-0.17 s with one hidden layer, 0.23 s with three), taken as
  0.1 s + 0.02 s a weight tensor (0.18 s for 4 tensors, 0.26 s for 8).

So the loop pays after about 200 calls avoided for a one-layer MLP (digits: 27 an epoch, 8
epochs; diabetes: 6, about 35 epochs; a 20,000-row task: 300, the first epoch). In
``benchmarks/search.py`` (20 x 30) diabetes now fits one batch a call and its searches took
9 % less CPU (median of 5 seeds); digits, whose trials train about 13 epochs, keeps 16.
Array data on TensorFlow are then fed from one pipeline a fit at one batch a call where that
saves more (:mod:`tunecb.training.one_pipeline`: every task of the benchmarks).
Where the training batches or the epochs are not known (a generator, a dataset of unknown
size, a fit outside a search), "auto" takes the loop as before.

It takes it only where that changes neither what the fit computes nor what a callback sees:

- the TensorFlow backend (Keras' JAX trainer unrolls the steps into one compiled program, so
  compiling grows with them; PyTorch's takes only 1);
- a model compiled with Keras' default of 1, not run eagerly, with Keras' own ``train_step``
  and ``test_step`` (a custom step may count calls or act in Python);
- no callback with a per-batch hook (Keras calls those once per call, not once per batch;
  tunecb's own callbacks have none);
- no ``steps_per_epoch`` or ``validation_steps`` in the fit's arguments: Keras' loop then runs
  whole calls, so a repeated dataset with ``steps_per_epoch=1`` trained 16 batches an epoch
  (found by a test whose epochs took twice as long).

The weights, metrics and history are those of ``steps_per_execution=1``: the same batches in
the same order, in a loop inside one call. The checkpoint keeps the user's compile settings.
An integer forces that many batches per call (``1``: off) on any backend Keras allows.

>>> from tunecb.training.fast_fit import choose
>>> plain = dict(compiled_steps=1, eager=False, custom_step=False, batch_hooks=False,
...              counted_steps=False)
>>> choose("auto", backend="torch", **plain)
1
>>> choose("auto", backend="tensorflow", **plain, calls=calls_avoided(22, 8, 30), weights=4)
16
>>> choose("auto", backend="tensorflow", **plain, calls=calls_avoided(22, 8, 1), weights=4)
1
>>> choose(4, backend="jax", compiled_steps=1, eager=False, custom_step=True, batch_hooks=True,
...        counted_steps=True)
4
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("tunecb")

AUTO_STEPS = 16
# Measured with benchmarks/spe_cost.py (see the module's docstring), CPU seconds:
CALL_COST = 0.0009  # saved per backend call avoided, whatever the model
LOOP_COST = 0.1  # the loop's one-time cost (traced and first run with the step) ...
LOOP_COST_PER_WEIGHT = 0.02  # ... and its growth with the model's graph, per weight tensor
_COUNTED = ("steps_per_epoch", "validation_steps")  # fit arguments that count batches

_BATCH_HOOKS = (
    "on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end",
    "on_test_batch_begin", "on_test_batch_end",
)  # fmt: skip


def choose(
    setting: int | str, *, backend: str, compiled_steps: int, eager: bool, custom_step: bool,
    batch_hooks: bool, counted_steps: bool, calls: int | None = None, weights: int = 0,
) -> int:  # fmt: skip
    """The batches per call for a fit: ``setting`` when it is a number, else (``"auto"``)
    :data:`AUTO_STEPS` when nothing rules it out and it pays (:func:`pays`: ``calls``, the
    backend calls it would avoid over the epochs the fit is expected to train, ``None`` when
    unknown; ``weights``, the model's weight tensors), else what the model was compiled
    with."""
    if setting != "auto":
        return int(setting)
    ruled_out = eager or custom_step or batch_hooks or counted_steps
    if backend != "tensorflow" or compiled_steps != 1 or ruled_out:
        return compiled_steps
    return AUTO_STEPS if calls is None or pays(calls, weights) else compiled_steps


def pays(calls: int, weights: int = 0) -> bool:
    """Whether avoiding ``calls`` backend calls saves more than the loop costs once for a
    model of ``weights`` weight tensors: ``calls`` x :data:`CALL_COST` > :data:`LOOP_COST`
    + ``weights`` x :data:`LOOP_COST_PER_WEIGHT`.

    >>> pays(150, weights=4), pays(250, weights=4), pays(250, weights=8)  # 200, 289 pay
    (False, True, False)
    """
    return calls * CALL_COST > LOOP_COST + weights * LOOP_COST_PER_WEIGHT


def calls_avoided(
    batches: int, validation_batches: int, epochs: int, validations: int | None = None,
    steps: int = AUTO_STEPS,
) -> int:  # fmt: skip
    """The backend calls that ``steps`` batches per call avoid in ``epochs`` epochs of
    ``batches`` training batches, each validated on ``validation_batches`` batches
    (``validations``: how many of those epochs are validated, by default all).

    >>> calls_avoided(22, 8, epochs=1)  # digits at batch 64: 22 -> 2 calls, 8 -> 1
    27
    """
    validations = epochs if validations is None else validations
    train = batches - -(-batches // steps)
    validate = validation_batches - -(-validation_batches // steps)
    return epochs * train + validations * validate


def expected_epochs(epochs: int, sure: int, trained: list[int]) -> int:
    """The epochs a new trial's fit of at most ``epochs`` is expected to train: the mean of
    ``trained`` (the epochs of the study's finished trials), at least ``sure``
    (:func:`sure_epochs`); ``epochs`` before any trial has finished (the first trials of
    a search are not pruned: nothing to compare them with yet).

    >>> expected_epochs(20, 1, []), expected_epochs(20, 1, [1, 1, 20, 9])
    (20, 8)
    >>> expected_epochs(20, 6, [2])  # none stops before its patience
    6
    """
    if not trained:
        return epochs
    return max(sure, min(epochs, round(sum(trained) / len(trained))))


def sure_epochs(
    epochs: int, initial_epoch: int = 0, *, first_stop: int | None = None,
    patience_left: int | None = None,
) -> int:  # fmt: skip
    """The epochs a fit from ``initial_epoch`` to ``epochs`` trains whatever its values:
    up to ``first_stop``, the first epoch at which a pruner may stop it (``None``: none
    will), and at most ``patience_left`` (early stopping: its patience + 1 for a new fit,
    whose first epoch is always its best so far).

    >>> sure_epochs(30), sure_epochs(30, first_stop=1), sure_epochs(30, patience_left=6)
    (30, 1, 6)
    >>> sure_epochs(20, 3, first_stop=9)  # a trial resumed at epoch 3, next rung at 9
    6
    """
    end = epochs if first_stop is None else min(epochs, first_stop)
    if patience_left is not None:
        end = min(end, initial_epoch + patience_left)
    return max(1, end - initial_epoch)


def has_batch_hooks(callbacks: list[Any]) -> bool:
    """Whether any of ``callbacks`` overrides one of Keras' per-batch hooks."""
    import keras

    base = keras.callbacks.Callback
    return any(
        getattr(type(cb), hook, None) is not getattr(base, hook)
        for cb in callbacks
        for hook in _BATCH_HOOKS
    )


def _custom_step(model: Any) -> bool:
    import keras

    kind = type(model)
    return any(
        getattr(kind, name) is not getattr(keras.Model, name)
        for name in ("train_step", "test_step")
    )


def apply(
    model: Any, setting: int | str, callbacks: list[Any], fit_arguments: dict[str, Any],
    epochs: int | None = None,
) -> int:  # fmt: skip
    """Set the batches per call of ``model``'s next fit (compiled, not yet fitted) by
    ``setting``, for a fit with ``callbacks`` and ``fit_arguments`` that is expected to train
    ``epochs`` epochs (:func:`expected_epochs`; ``None``: unknown); the number set. The
    model's compile config, which its checkpoint keeps, is not changed."""
    import keras

    compiled = int(getattr(model, "steps_per_execution", 1) or 1)
    if getattr(model, "train_function", None) is None:
        prebuild(model, fit_arguments)  # also builds the model: its weights are known
    steps = choose(
        setting, backend=keras.backend.backend(), compiled_steps=compiled,
        eager=bool(getattr(model, "run_eagerly", False)), custom_step=_custom_step(model),
        batch_hooks=has_batch_hooks(callbacks),
        counted_steps=any(fit_arguments.get(k) is not None for k in _COUNTED),
        calls=_calls(fit_arguments, epochs), weights=len(getattr(model, "weights", ()) or ()),
    )  # fmt: skip
    if steps != compiled and getattr(model, "train_function", None) is None:
        model.steps_per_execution = steps
        log.debug("fit with %d batches per call (compiled with %d)", steps, compiled)
        return steps
    return compiled


def _calls(fit_arguments: dict[str, Any], epochs: int | None) -> int | None:
    """The calls :data:`AUTO_STEPS` would avoid in ``epochs`` epochs of this fit; ``None``
    when the epochs or the training batches are not known."""
    if epochs is None:
        return None
    batch_size = int(fit_arguments.get("batch_size") or 32)
    split = float(fit_arguments.get("validation_split") or 0.0)
    rows = _rows(fit_arguments.get("x"))
    if rows is None:
        return None
    batches = _batch_count(fit_arguments.get("x"), round(rows * (1 - split)), batch_size)
    validation = fit_arguments.get("validation_data")
    val_size = int(fit_arguments.get("validation_batch_size") or batch_size)
    if validation is not None:
        val_rows = _rows(validation[0] if isinstance(validation, tuple) else validation)
        val_batches = _batch_count(validation, val_rows, val_size) if val_rows else 0
    else:
        val_batches = -(-round(rows * split) // val_size) if split else 0
    freq = fit_arguments.get("validation_freq") or 1
    validations = epochs // freq if isinstance(freq, int) else len(freq)
    return calls_avoided(batches, val_batches, epochs, min(epochs, validations))


def _rows(data: Any) -> int | None:
    """Rows of in-memory arrays (the first array's), batches of a dataset of known size or
    of a ``keras.utils.PyDataset``; ``None`` for anything else."""
    cardinality = getattr(data, "cardinality", None)  # a tf.data.Dataset
    if cardinality is not None:
        try:
            count = int(cardinality())
        except Exception:  # not a dataset after all
            return None
        return count if count >= 0 else None  # unknown (-2) or infinite (-1)
    if _is_batched(data):
        try:
            return len(data)
        except TypeError:
            return None
    import keras

    leaves = keras.tree.flatten(data) if data is not None else []
    if leaves and _sliceable(leaves[0]):
        return int(leaves[0].shape[0])
    return None


def _is_batched(data: Any) -> bool:
    """A dataset or a ``keras.utils.PyDataset``: its length counts batches, not rows."""
    import keras

    return hasattr(data, "element_spec") or isinstance(data, keras.utils.PyDataset)


def _batch_count(data: Any, rows: int, batch_size: int) -> int:
    if _is_batched(data):
        return rows
    return -(-rows // batch_size)


def prebuild(model: Any, fit_arguments: dict[str, Any]) -> bool:
    """Build ``model``'s optimizer, loss and metric state before its first fit, from the
    shape of one batch, as Keras does on its JAX and PyTorch backends; whether it did.

    On TensorFlow without a distribution strategy Keras defers that to the trace of the
    train step, which then creates variables (Adam's moments, the metrics' totals), and a
    ``tf.function`` that creates variables is traced twice: the first epoch of a small MLP
    cost 1.1-1.3 s of CPU, half of it that second trace (0.6-0.9 s with this; the
    same weights and metrics, bit for bit). Only on TensorFlow, for a model with Keras' own
    ``train_step`` and ``test_step``, not run eagerly; anything unexpected leaves the build
    to Keras, as before.

    >>> prebuild(object(), {})
    False
    """
    import keras

    build = getattr(model, "_symbolic_build", None)
    if (
        build is None or keras.backend.backend() != "tensorflow"
        or bool(getattr(model, "run_eagerly", False)) or _custom_step(model)
    ):  # fmt: skip
        return False
    batch = _one_batch(fit_arguments)
    if batch is None:
        return False
    try:
        build(data_batch=batch)
    except Exception as exc:  # Keras builds in the first trace, as it would have
        log.debug("the model's state is built in its first trace: %s", exc)
        return False
    return True


def _one_batch(fit_arguments: dict[str, Any]) -> Any:
    """What one batch of the fit's training data looks like: a dataset's element spec, or
    the first ``batch_size`` rows of in-memory arrays; ``None`` for anything else."""
    import keras

    x, y = fit_arguments.get("x"), fit_arguments.get("y")
    spec = getattr(x, "element_spec", None)  # a tf.data.Dataset
    if spec is not None:
        return spec if y is None else None
    if x is None:
        return None
    rows = int(fit_arguments.get("batch_size") or 32)
    leaves = keras.tree.flatten(x) + ([] if y is None else keras.tree.flatten(y))
    if not leaves or not all(_sliceable(a) for a in leaves):
        return None
    first = keras.tree.map_structure(lambda a: a[:rows], x)
    return (first,) if y is None else (first, keras.tree.map_structure(lambda a: a[:rows], y))


def _sliceable(value: Any) -> bool:
    """An array whose first rows are a batch of it: NumPy, a tensor (not a table)."""
    return hasattr(value, "shape") and hasattr(value, "dtype") and len(value.shape) > 0
