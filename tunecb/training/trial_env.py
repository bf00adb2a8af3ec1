"""The process state a trial runs in: its Keras seed, Keras' global state reset between
trials, and the versions recorded with it.

>>> trial_seed(0, 3) == trial_seed(0, 3)
True
>>> error_text(ValueError("x" * 5000))[-3:]
'...'
"""

from __future__ import annotations

import keras
import optuna

from tunecb._version import __version__

__all__ = ["clear_session", "error_text", "trial_seed", "versions"]


def trial_seed(study_seed: int | None, number: int) -> int:
    """The Keras seed of trial ``number``: fixed by the study seed, else fresh.

    >>> trial_seed(0, 3) == trial_seed(0, 3) != trial_seed(1, 3)
    True
    """
    if study_seed is None:
        import secrets

        return secrets.randbelow(2**31)
    return (study_seed * 1_000_003 + number * 7_919) % (2**31 - 1)


def clear_session() -> None:
    """Reset Keras' global state without the full ``gc.collect()`` (slow in a big process)."""
    try:
        keras.backend.clear_session(free_memory=False)
    except TypeError:  # Keras before 3.6 has no free_memory argument
        keras.backend.clear_session()


def error_text(exc: BaseException, limit: int = 2000) -> str:
    """``Type: message``, bounded (TensorFlow errors can run to pages)."""
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


_VERSIONS: dict[str, str] = {}


def versions() -> dict[str, str]:
    """The Keras backend and the versions of the libraries that shaped a trial (the
    backend's own under its name: ``{"backend": "jax", "jax": "0.10.2", ...}``)."""
    if not _VERSIONS:
        from tunecb.training.backends import device, version

        backend = str(keras.backend.backend())
        _VERSIONS.update(
            {"backend": backend, backend: version(backend), "device": device(backend)},
            keras=keras.__version__,
            optuna=optuna.__version__,
            tunecb=__version__,
        )
    return dict(_VERSIONS)
