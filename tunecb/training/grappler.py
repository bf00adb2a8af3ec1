"""TensorFlow's graph optimizer (Grappler) for a trial's fit, set around it and restored.

Every trial builds a new model, and TensorFlow runs its graph optimizer once on each new
function (Keras' train and test functions) when it first runs it. On a CPU most of its passes
cost that time and bring a Keras step nothing; one (the remapper) fuses a layer's kernels
(``MatMul + BiasAdd + Relu`` into one, the same for convolutions), which every later step
runs faster.

**The rule** (``graph_optimizer="auto"``, the default; TensorFlow backend only): on a CPU,
turn off every optimizer but the remapper (:data:`KEPT`) for the fit (:data:`CPU_OPTIONS`);
with a GPU visible, keep TensorFlow's own options (its layout optimizer and mixed precision
are for GPUs, and this was measured on CPUs only). ``"tensorflow"`` keeps the process's
options as they are; ``"off"`` turns the meta optimizer off.

Measured with ``benchmarks/grappler_cost.py`` (see ``docs/benchmarks/search.md``): FIXME.

The options are process-wide (TensorFlow's eager context) and take effect when a function is
first run: :func:`applied` sets them before the fit's first call and gives the process back
the options it had when the fit ends, also when it raises, so a notebook user's own options
are never left changed. The trial's later calls (evaluating, predicting, measuring latency)
run with the user's options; a function the fit has already run keeps the graph it was
optimized into.

>>> choose("tensorflow", backend="tensorflow", gpu=False)
{}
>>> choose("auto", backend="jax", gpu=False)
{}
>>> choose("auto", backend="tensorflow", gpu=True)
{}
>>> choose("off", backend="tensorflow", gpu=True)
{'disable_meta_optimizer': True}
>>> sorted(k for k, on in choose("auto", backend="tensorflow", gpu=False).items() if on)
['disable_model_pruning', 'remapping']
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("tunecb")

KEPT = ("remapping",)  # the optimizers "auto" keeps on a CPU: they change the kernels run
OPTIMIZERS = (
    "constant_folding", "arithmetic_optimization", "dependency_optimization",
    "loop_optimization", "layout_optimizer", "remapping", "shape_optimization",
    "function_optimization", "debug_stripper", "pin_to_host_optimization",
    "implementation_selector", "auto_mixed_precision", "scoped_allocator_optimization",
)  # fmt: skip  # tf.config.optimizer.set_experimental_options' switches (TensorFlow 2.21)
CPU_OPTIONS: dict[str, bool] = {
    **{name: name in KEPT for name in OPTIMIZERS}, "disable_model_pruning": True,
}  # fmt: skip
OFF: dict[str, bool] = {"disable_meta_optimizer": True}


def choose(setting: str, *, backend: str, gpu: bool) -> dict[str, bool]:
    """The Grappler options for a fit under ``setting`` (``"auto"``, ``"tensorflow"`` or
    ``"off"``) on ``backend``, with or without a ``gpu`` visible; ``{}``: leave them."""
    if backend != "tensorflow" or setting == "tensorflow":
        return {}
    if setting == "off":
        return dict(OFF)
    return {} if gpu else dict(CPU_OPTIONS)


def for_model(setting: str) -> dict[str, bool]:
    """:func:`choose` for this process: its Keras backend and whether TensorFlow sees a GPU
    (asked only when it matters)."""
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow" or setting == "tensorflow":
        return {}
    import tensorflow as tf

    return choose(setting, backend=backend, gpu=bool(tf.config.list_logical_devices("GPU")))


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
