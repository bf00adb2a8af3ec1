"""TensorFlow's graph optimizer (Grappler) for a trial's fit, set around it and restored.

Every trial builds a new model, and TensorFlow runs its graph optimizer on each new function
(Keras' train and test functions) when it first runs it: a cost per graph, paid once per
trial, for passes that rewrite the graph (constant folding, arithmetic, layout, loops) and
fuse kernels (the remapper: ``MatMul + BiasAdd + Relu`` into one op) for every later step.

**The rule** (``graph_optimizer="auto"``, the default; TensorFlow backend only): on a CPU, a
model of at most :data:`SMALL` parameters fits with the meta optimizer off (:data:`OFF`);
a larger model, or any model with a GPU visible, fits with TensorFlow's own options (its
layout optimizer and mixed precision are for GPUs, and the gain of fused kernels grows with
the compute of a step while the cost stays per graph). Measured with
``benchmarks/grappler_cost.py`` (TensorFlow 2.21 on one CPU thread; MLPs on digits,
diabetes and the tabular task of 1 x 32 to 3 x 256 units, up to 150,794 parameters, a
small Conv2D net and a GRU; 16 and 1 batches a call; ``docs/benchmarks/search.md``):

- the meta optimizer off: epoch 1 costs **70 ms less CPU** (median of 60 paired fits,
  quartiles 26 to 154; the null control, an option that is off anyway, 13 ms, quartiles
  -47 to 91) and a steady epoch **+0.8 %** (quartiles -7 to +9 %; the control -0.2 %): the
  per-epoch effect is not resolvable here; the weights after the fit are the same to the bit
  in every case (540 fits);
- every optimizer off but the remapper (which fuses kernels) saves **nothing** (9 ms, as the
  control): the cost is the meta optimizer's own work, not its passes'; and no optimizer off
  alone stood out of the noise (the control moved epoch 1 by -253 to +533 ms);
- in a real search's trials (``benchmarks/trial_costs.py``, digits, 6 trials x 10 epochs,
  against the tree before): epoch 1 554 against 620 ms CPU, later epochs the same, a trial
  1,557 against 1,638 ms. In 20 x 30 searches the saving is under the noise.

``"tensorflow"`` keeps the process's options as they are; ``"off"`` turns the meta
optimizer off for every model.

The options are process-wide (TensorFlow's eager context) and take effect when a function is
first run: :func:`applied` sets them before the fit's first call and gives the process back
the options it had when the fit ends, also when it raises, so a notebook user's own options
are never left changed. The trial's other calls (measuring ``latency_ms`` before the fit,
evaluating or predicting after it) run with the process's own options. Not safe for two fits
in threads of one process at once (tunecb runs one fit a process).

>>> choose("auto", backend="tensorflow", gpu=False, params=50_000)
{'disable_meta_optimizer': True}
>>> choose("auto", backend="tensorflow", gpu=False, params=5_000_000)
{}
>>> choose("auto", backend="tensorflow", gpu=True, params=50_000)
{}
>>> choose("tensorflow", backend="tensorflow", gpu=False, params=50_000)
{}
>>> choose("off", backend="jax", gpu=False, params=50_000)
{}
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("tunecb")

SMALL = 200_000  # parameters: "auto" turns Grappler off on a CPU up to this (measured: 150,794)
OFF: dict[str, bool] = {"disable_meta_optimizer": True}


def choose(setting: str, *, backend: str, gpu: bool, params: int) -> dict[str, bool]:
    """The Grappler options for a fit under ``setting`` (``"auto"``, ``"tensorflow"`` or
    ``"off"``) on ``backend``, with or without a ``gpu`` visible, of a model of ``params``
    parameters; ``{}``: leave the process's options as they are."""
    if backend != "tensorflow" or setting == "tensorflow":
        return {}
    if setting == "off" or (not gpu and params <= SMALL):
        return dict(OFF)
    return {}


def for_model(setting: str, model: Any) -> dict[str, bool]:
    """:func:`choose` for ``model`` (built) in this process: its Keras backend, and whether
    TensorFlow sees a GPU (asked only when it matters)."""
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow" or setting == "tensorflow":
        return {}
    import tensorflow as tf

    gpu = bool(tf.config.list_logical_devices("GPU"))
    try:
        params = int(model.count_params())
    except Exception:  # not built: its size is unknown, leave TensorFlow's own
        params = SMALL + 1
    return choose(setting, backend=backend, gpu=gpu, params=params)


@contextlib.contextmanager
def applied(options: dict[str, Any]) -> Iterator[None]:
    """Run the body with TensorFlow's Grappler ``options`` added to the process's (nothing
    when ``options`` is empty), and give the process its own options back afterwards,
    whatever happens in the body."""
    if not options:
        yield
        return
    from tensorflow.python.eager import context

    ctx = context.context()
    saved = getattr(ctx, "_optimizer_experimental_options", None)
    if not isinstance(saved, dict):  # another TensorFlow: leave its options alone
        log.debug("Grappler options left as they are: TensorFlow keeps them elsewhere")
        yield
        return
    saved = dict(saved)
    ctx.set_optimizer_experimental_options(options)
    try:
        yield
    finally:
        # set_optimizer_experimental_options can only add keys: put the dict back as it was
        ctx._optimizer_experimental_options = saved
        ctx._thread_local_data.function_call_options = None  # rebuilt from the options
