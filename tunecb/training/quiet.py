"""Import TensorFlow without its C++ start-up chatter on the terminal."""

from __future__ import annotations

import os
import sys


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up chatter (oneDNN, CPU features) hidden.

    It writes to file descriptor 2 at import time whatever TF_CPP_MIN_LOG_LEVEL says; the
    chatter is shown only if the import fails. ``--debug`` skips this.
    """
    module = sys.modules.get("tensorflow")
    if module is not None and not _lazy(module):
        return
    import tempfile

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            realize_lazy_backends()
            import tensorflow

            _ = tensorflow.__version__  # runs a lazily imported TensorFlow here, quietly
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def realize_lazy_backends() -> None:
    """Run the backends a study file imported lazily, Keras first: TensorFlow run before a
    lazy Keras leaves that Keras module empty (Python 3.11's ``LazyLoader``)."""
    for name in ("keras", "tensorflow", "jax", "torch"):
        module = sys.modules.get(name)
        if module is not None and _lazy(module):
            _ = module.__name__


def _lazy(module: object) -> bool:
    """Whether ``module`` was imported lazily and has not run yet (see
    :func:`tunecb.study.declaration.load_study_file`)."""
    import importlib.util

    return isinstance(module, importlib.util._LazyModule)
