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
from tunecb.session.quiet import quiet_tensorflow as _quiet_tensorflow
from tunecb.study.declaration import Study
from tunecb.study.schedules import Constant, Cosine, ReduceOnPlateau, Searched, StepDecay

_quiet_tensorflow()  # TensorFlow imported after tunecb starts without its C++ start-up lines

if TYPE_CHECKING:
    import keras
    import pandas

    from tunecb.session.result import SearchResult


def search(study: Study | str, **settings: Any) -> SearchResult:
    """Run a search from code, as ``tunecb search`` does; returns a :class:`SearchResult`
    (the best trial, the ranked trials, the results folder, ``load_best``).

    ``study`` is a :class:`Study` declared in the calling code or a study file's path;
    ``settings`` are the CLI's by name (``n_trials=``, ``jobs=``, ``storage=``,
    ``quiet=``, ...). See :func:`tunecb.session.run.search`.

    >>> result = tunecb.search("studies/digits.py", n_trials=4)  # doctest: +SKIP
    >>> result.best_params  # doctest: +SKIP
    """
    from tunecb.session.run import search as _search

    return _search(study, **settings)


def load_study(path: str, *, storage: str | None = None, study_name: str | None = None) -> Any:
    """The ``optuna.Study`` of a results folder (or of ``storage`` + ``study_name``), for
    everything Optuna's own API does.

    >>> tunecb.load_study("results/digits").best_trial.params  # doctest: +SKIP
    """
    from tunecb.reporting.data.records import open_report_study

    return open_report_study(path, storage, study_name)[0]


def report(path: str | None = None, **kwargs: Any) -> pandas.DataFrame:
    """The trials of a study, ranked by the objective, as a pandas DataFrame.

    See :func:`tunecb.reporting.data.records.study_report`.

    >>> tunecb.report("results/digits").head(3)  # doctest: +SKIP
    """
    from tunecb.reporting.data.records import study_report

    return study_report(path, **kwargs)


def load_best(path: str, rank: int = 1, *, trial: int | None = None, **kwargs: Any) -> keras.Model:
    """The best trial's model (or the ``rank``-th best, or trial number ``trial``),
    loaded from its checkpoint with ``safe_mode=True``.

    See :func:`tunecb.replay.load.load_best`.

    >>> model = tunecb.load_best("results/digits")  # doctest: +SKIP
    """
    from tunecb.replay.load import load_best as _load_best

    return _load_best(path, rank=rank, trial=trial, **kwargs)


def retrain(path: str, **kwargs: Any) -> Any:
    """Fit the best trial's configuration (or ``trial=N``, ``rank=K``) on training +
    validation data for its best epoch's count (``epochs=`` to choose); writes and returns
    ``trials/<n>/final.keras`` with its record. See :func:`tunecb.replay.retrain.retrain`.

    >>> final = tunecb.retrain("results/digits")  # doctest: +SKIP
    >>> model = final.load()  # doctest: +SKIP
    """
    from tunecb.replay.retrain import retrain as _retrain

    return _retrain(path, **kwargs)


def rerun(path: str, trial: int | None = None, **kwargs: Any) -> Any:
    """Fit trial number ``trial`` (default: the best; ``best_on=``/``within=``: a front
    member) again with its recorded seed, parameters and settings and compare it with what
    it recorded. See :func:`tunecb.replay.rerun.rerun`.

    >>> tunecb.rerun("results/digits", 3).identical  # doctest: +SKIP
    True
    """
    from tunecb.replay.rerun import rerun as _rerun

    return _rerun(path, trial, **kwargs)


def evaluate(path: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Test metrics of the ``top=K`` best checkpoints (or ``trial=N``'s, or a front member's
    by ``best_on=``/``within=``; and retrained final models) on the test split the data
    function returns third. See :func:`tunecb.replay.evaluate.evaluate`.

    >>> tunecb.evaluate("results/digits", top=3)  # doctest: +SKIP
    """
    from tunecb.replay.evaluate import evaluate as _evaluate

    return _evaluate(path, **kwargs)


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
    "evaluate",
    "load_best",
    "load_study",
    "report",
    "rerun",
    "retrain",
    "search",
]


def __dir__() -> list[str]:
    """``dir(tunecb)`` shows what the package exports, not its imports (PEP 562)."""
    return sorted(__all__)
