"""The Keras backend of a search: TensorFlow, JAX or PyTorch, chosen before Keras is imported.

Keras reads its backend once, when it is first imported: from ``KERAS_BACKEND``, else from
``~/.keras/keras.json`` (``$KERAS_HOME/keras.json``), else TensorFlow. A study can choose
one too (``backend=`` or ``--backend``), which wins. The launcher resolves the name
(:func:`chosen`), sets ``KERAS_BACKEND`` before anything imports Keras (:func:`select`),
and hands it to every worker in its environment with the thread settings that backend
takes (:func:`worker_env`); each worker then imports it quietly (:func:`prepare`).

Nothing here imports a backend at module level: the launcher, ``--help`` and ``report``
stay free of them.

>>> chosen("jax")
'jax'
>>> worker_env("torch", 1)["OMP_NUM_THREADS"]
'1'
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from tunecb.errors import ConfigError
from tunecb.study.declaration import LoadedStudy
from tunecb.study.fields import BACKENDS  # the module of each backend has its name
from tunecb.study.study_file import load_study_file
from tunecb.tf_notices import filtered

log = logging.getLogger("tunecb")

# The distribution that installs each backend, as a user would pip-install it.
INSTALL = {
    "tensorflow": 'pip install "tunecb[cpu]" (TensorFlow\'s CPU build)',
    "jax": 'pip install "tunecb[jax]"',
    "torch": 'pip install "tunecb[torch]"',
}


def keras_default() -> tuple[str, str]:
    """The backend Keras itself would pick, and where that choice comes from.

    >>> keras_default()[0] in BACKENDS
    True
    """
    env = os.environ.get("KERAS_BACKEND", "").strip()
    if env:
        return env, "KERAS_BACKEND"
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    config = home / "keras.json"
    try:
        backend = json.loads(config.read_text(encoding="utf-8")).get("backend")
    except (OSError, ValueError, AttributeError):
        backend = None
    if isinstance(backend, str) and backend.strip():
        return backend.strip(), str(config)
    return "tensorflow", "Keras' default"


def chosen(setting: str | None) -> str:
    """The backend of a search: the study's ``backend`` setting, else Keras' own choice;
    checked to be one Keras 3 has and that is installed here.

    >>> chosen("numpy")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tunecb.errors.ConfigError: backend 'numpy' (the study's backend=): tunecb trains on ...
    """
    if setting:
        name, source = setting.strip().lower(), "the study's backend="
    else:
        name, source = keras_default()
        name = name.lower()
    if name == "pytorch":
        name = "torch"
    if name not in BACKENDS:
        raise ConfigError(
            f"backend {name!r} ({source}): tunecb trains on tensorflow, jax or torch; "
            "choose one of them"
        )
    if not found(name):
        raise ConfigError(
            f"backend {name!r} ({source}) is not installed: {INSTALL[name]}, "
            f"or choose another with --backend {{{','.join(installed()) or 'tensorflow'}}}"
        )
    return name


def installed() -> list[str]:
    """The backends installed here (found, not imported)."""
    return [b for b in BACKENDS if found(b)]


def found(name: str) -> bool:
    """Whether module ``name`` is installed, without running it when a study file imported
    it lazily (``importlib.util.find_spec`` reads the ``__spec__`` of a module already in
    ``sys.modules``, which runs a lazy one: a backend before Keras' backend is chosen).

    >>> found("tensorflow_but_not_installed")
    False
    """
    module = sys.modules.get(name)
    if module is not None and _lazy(module):
        return True
    return importlib.util.find_spec(name) is not None


def select(backend: str) -> None:
    """Make ``backend`` the one Keras loads in this process and the processes it starts.

    Raises :class:`ConfigError` when Keras already runs here on another one (a notebook that
    imported Keras before): Keras cannot switch backends in a running process."""
    running = active()
    if running is not None and running != backend:
        raise ConfigError(
            f"backend {backend!r} was asked for, but Keras is already running on {running!r} "
            "in this process: set KERAS_BACKEND (or --backend) before Keras is first "
            "imported, or restart the Python process (the notebook kernel)"
        )
    os.environ["KERAS_BACKEND"] = backend


def load_study(path: str | Path, backend: str | None) -> LoadedStudy:
    """Import the study file at ``path`` with ``backend`` (``--backend``, ``backend=`` of
    ``tunecb.search``, a trial's recorded backend) selected first: a study file whose top
    level runs Keras (a class on a Keras base, ``class Logger(keras.callbacks.Callback)``)
    starts Keras on it. Without ``backend``, Keras' own choice applies (``KERAS_BACKEND``,
    ``keras.json``), and a ``backend=`` the study declares is checked by
    :func:`check_declared`."""
    given = isinstance(backend, str) and bool(backend.strip())  # else: resolve() says why
    if given:
        select(chosen(backend))
    loaded = load_study_file(path)
    if not given:
        check_declared(loaded)
    return loaded


def check_declared(loaded: LoadedStudy) -> None:
    """A study that declares ``backend=`` after Keras already started on another one here
    (at the study file's top level, or in the script or notebook that declares it): one
    line naming the fix, before anything runs. The search would otherwise refuse to switch
    without saying why Keras had started."""
    declared = loaded.study.settings.get("backend")
    running = active()
    if not declared or running is None:
        return
    wanted = chosen(declared)
    if running == wanted:
        return
    if loaded.in_code:
        why = "Keras was imported before the study was declared"
        fix = f"set KERAS_BACKEND={wanted} before Keras is first imported (a notebook: restart it)"
    else:
        why = f"{loaded.path} uses Keras at its top level, before its settings are read"
        fix = f"set KERAS_BACKEND={wanted}, or pass --backend {wanted} (backend={wanted!r} in code)"
    raise ConfigError(
        f"the study's backend={declared!r} comes too late: Keras already runs on {running!r} "
        f"({why}); {fix}"
    )


def active() -> str | None:
    """The backend of the Keras already imported in this process; ``None`` if none is."""
    module = sys.modules.get("keras")
    if module is None or _lazy(module):
        return None
    try:
        return str(module.backend.backend())
    except Exception:  # a half-imported Keras
        return None


def worker_env(backend: str, threads: int) -> dict[str, str]:
    """Environment variables that give a worker process ``backend`` with ``threads`` CPU
    threads (each backend reads its own; PyTorch's are set again in :func:`prepare`).

    >>> worker_env("jax", 1)["XLA_FLAGS"]
    '--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1'
    """
    n = str(threads)
    env = {"KERAS_BACKEND": backend, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n}
    if backend == "tensorflow":
        interop = "1" if threads == 1 else "2"
        env |= {"TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": interop}
    elif backend == "jax" and threads == 1:
        # XLA's CPU client has no thread-count option; one thread is its Eigen pool off.
        flags = os.environ.get("XLA_FLAGS", "")
        env["XLA_FLAGS"] = (
            f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        ).strip()
    env["TF_CPP_MIN_LOG_LEVEL"] = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def prepare(threads: int | None, debug: bool) -> str:
    """Import Keras on the backend ``KERAS_BACKEND`` names (its start-up chatter hidden
    unless ``debug``), with ``threads`` CPU threads; returns the backend's name."""
    keras = import_quietly(show=debug)
    backend = str(keras.backend.backend())
    wanted = os.environ.get("KERAS_BACKEND")
    if wanted and wanted != backend:
        raise ConfigError(
            f"this worker process runs Keras on {backend!r}, but the search is on {wanted!r}: "
            "Keras cannot switch backends in a running process; restart the worker (a Dask "
            "worker that ran another backend's search) or search on the same backend"
        )
    if threads:
        if backend == "tensorflow":
            import tensorflow as tf

            with contextlib.suppress(RuntimeError):  # a Dask worker that ran TF keeps it
                tf.config.threading.set_intra_op_parallelism_threads(threads)
        elif backend == "torch":
            import torch

            torch.set_num_threads(threads)
            with contextlib.suppress(RuntimeError):  # settable once, before parallel work
                torch.set_num_interop_threads(1 if threads == 1 else 2)
    return backend


def version(backend: str) -> str:
    """The version of ``backend``'s library (imported: call it where the backend runs)."""
    module = importlib.import_module(backend)
    return str(getattr(module, "__version__", "unknown"))


def device(backend: str) -> str:
    """``"gpu"`` when ``backend`` trains on an accelerator here, else ``"cpu"`` (a rerun on
    a GPU may differ in the last digits: its kernels are not all deterministic)."""
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return "gpu" if tf.config.list_logical_devices("GPU") else "cpu"
        if backend == "jax":
            import jax

            return "cpu" if jax.default_backend() == "cpu" else "gpu"
        if backend == "torch":
            import torch

            return "gpu" if torch.cuda.is_available() else "cpu"
    except Exception:  # a backend that cannot say: assume the common case
        pass
    return "cpu"


def deterministic(backend: str) -> None:
    """Make ``backend``'s ops deterministic in this process (TensorFlow's op determinism,
    PyTorch's deterministic algorithms; JAX on the CPU already is)."""
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)


def import_quietly(show: bool = False) -> Any:
    """Import Keras, and with it its backend, TensorFlow's start-up notices (the oneDNN
    lines it writes to file descriptor 2 at import whatever the log levels say) kept off the
    terminal (:mod:`tunecb.tf_notices`; every other line is shown, and everything when the
    import fails); with ``show`` (``--debug``), as it comes."""
    module = sys.modules.get("keras")
    if module is not None and not _lazy(module):
        return module
    if not show:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's other start-up lines
    with filtered(show):
        realize_lazy_backends()
        import keras

        _ = keras.backend.backend()  # runs a lazily imported Keras here, filtered
    return keras


def realize_lazy_backends() -> None:
    """Run the modules a study file imported lazily, Keras first: a backend run before a
    lazy Keras leaves that Keras module empty (Python 3.11's ``LazyLoader``)."""
    for name in ("keras", "tensorflow", "jax", "torch"):
        module = sys.modules.get(name)
        if module is not None and _lazy(module):
            try:
                _ = module.__name__
            except ModuleNotFoundError:  # e.g. "import tensorflow" with only JAX installed
                sys.modules.pop(name, None)
                raise


def _lazy(module: object) -> bool:
    """Whether ``module`` was imported lazily and has not run yet (see
    :func:`tunecb.study.study_file.load_study_file`)."""
    return isinstance(module, importlib.util._LazyModule)
