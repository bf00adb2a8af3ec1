"""``tunecb.search()`` from a script or a notebook as quiet as the CLI, the user's own
logging untouched.

What the CLI keeps off the terminal and a search from code would show:

- TensorFlow's C++ start-up lines (``All log messages before absl::InitializeLog() is
  called...``, ``oneDNN custom operations are on...``, the CPU-feature line): they are
  written when TensorFlow is imported, whatever Python's logging says, unless
  ``TF_CPP_MIN_LOG_LEVEL`` is set by then. :func:`quiet_tensorflow` sets it to ``2``
  (errors only) when the user has not set it and TensorFlow is not imported yet: at
  ``import tunecb`` (so a script that imports tunecb before Keras starts quietly) and again
  at the search. Worker processes inherit it (:func:`tunecb.training.backends.worker_env`).
  Not the oneDNN notice of CPUs with AVX512_VNNI or AMX, written before TensorFlow reads the
  setting: :mod:`tunecb.tf_notices` takes it out where tunecb imports TensorFlow (the
  workers, :func:`tunecb.training.backends.import_quietly`), not where your code does.
- Optuna's INFO lines (``A new study created in Journal with name: ...``): Optuna's
  verbosity is WARNING for the duration of the search only, then restored.
- tqdm's ``TqdmWarning: IProgress not found`` in a Jupyter kernel without ``ipywidgets``,
  raised when Optuna (which imports ``tqdm.auto``) is first imported: ignored then.

Neither the root logger nor any logger of the user's is touched. With the ``tunecb``
logger at DEBUG (``logging.basicConfig(level=logging.DEBUG)``), nothing is hidden.

>>> @quieted
... def run():
...     return "done"
>>> run()
'done'
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

TF_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"


def quiet_tensorflow() -> None:
    """``TF_CPP_MIN_LOG_LEVEL=2`` for TensorFlow not yet imported here (and for the worker
    processes started from here), unless the user chose a level."""
    if "tensorflow" not in sys.modules:
        os.environ.setdefault(TF_LOG_LEVEL, "2")


def quieted(fn: F) -> F:
    """Run ``fn`` in :func:`quiet` (a decorator)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with quiet():
            return fn(*args, **kwargs)

    return run  # type: ignore[return-value]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """While a search runs from code: see the module docstring."""
    if logging.getLogger("tunecb").isEnabledFor(logging.DEBUG):
        yield
        return
    quiet_tensorflow()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import optuna  # imports tqdm.auto, which warns in a kernel without ipywidgets

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # as in the CLI: a lost database connection is one StorageError line, not Optuna's trace
    rdb = logging.getLogger("optuna.storages._rdb.storage")
    rdb_level = rdb.level
    rdb.setLevel(logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)
        rdb.setLevel(rdb_level)
