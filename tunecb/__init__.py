"""tunecb: hyperparameter search for Keras models, built on Keras callbacks and Optuna.

The public API. Importing it does not import TensorFlow (nor Optuna or pandas):
``load_best`` and ``report`` import what they need when called.

>>> import tunecb
>>> study = tunecb.Study(monitor="val_accuracy", epochs=10, n_trials=20)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunecb._version import __version__
from tunecb.errors import (
    ConfigError,
    ModelError,
    MonitorError,
    ResultsError,
    SearchFailed,
    StorageError,
    StudyFileError,
    TunecbError,
)
from tunecb.study.declaration import Study
from tunecb.study.schedules import Constant, Cosine, ReduceOnPlateau, Searched, StepDecay

if TYPE_CHECKING:
    import keras
    import pandas


def report(path: str | None = None, **kwargs: Any) -> pandas.DataFrame:
    """The trials of a study, ranked by the objective, as a pandas DataFrame.

    See :func:`tunecb.reporting.records.study_report`.

    >>> tunecb.report("results/digits").head(3)  # doctest: +SKIP
    """
    from tunecb.reporting.records import study_report

    return study_report(path, **kwargs)


def load_best(path: str, rank: int = 1, *, trial: int | None = None, **kwargs: Any) -> keras.Model:
    """The best trial's model (or the ``rank``-th best, or trial number ``trial``),
    loaded from its checkpoint with ``safe_mode=True``.

    See :func:`tunecb.reporting.load.load_best`.

    >>> model = tunecb.load_best("results/digits")  # doctest: +SKIP
    """
    from tunecb.reporting.load import load_best as _load_best

    return _load_best(path, rank=rank, trial=trial, **kwargs)


__all__ = [
    "ConfigError",
    "Constant",
    "Cosine",
    "ModelError",
    "MonitorError",
    "ReduceOnPlateau",
    "ResultsError",
    "SearchFailed",
    "Searched",
    "StepDecay",
    "StorageError",
    "Study",
    "StudyFileError",
    "TunecbError",
    "__version__",
    "load_best",
    "report",
]
