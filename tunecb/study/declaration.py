"""The study a user declares in a study file (loading one by path:
:mod:`tunecb.study.study_file`).

A study file is plain Python that creates one :class:`Study` and attaches a data
function and a model builder to it::

    import keras
    import tunecb

    study = tunecb.Study(monitor="val_accuracy", epochs=20, n_trials=30)

    @study.data
    def load():
        ...  # return (x_train, y_train), (x_val, y_val)  -- or two tf.data.Datasets

    @study.model
    def build(trial):
        model = keras.Sequential([...])
        model.compile(optimizer="adam", loss="...", metrics=["accuracy"])
        return model

Nothing here imports TensorFlow: the study file does, when it is loaded.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunecb.errors import ConfigError, StudyFileError, first_line
from tunecb.study.fields import FIELDS
from tunecb.study.objectives import stable_repr

DataFn = Callable[[], Any]
BuildFn = Callable[..., Any]  # build(trial) or build(trial, data)
CallbacksFn = Callable[[Any], list]
ConstraintFn = Callable[[Any], Any]  # constraint(model) -> bool or a violation number

# The settings a Study accepts, in its signature's order (tests check that they match).
SETTING_NAMES = tuple(f.name for f in FIELDS if f.in_study)


class Study:
    """A hyperparameter search: data, model builder, objective, budget and callbacks.

    Args:
        name: study name; defaults to the study file's stem.
        monitor: the logged metric to optimise, e.g. ``"val_accuracy"`` (default ``"val_loss"``).
        direction: ``"maximize"``, ``"minimize"`` or ``"auto"`` (from the metric's name).
        objectives: a multi-objective search: ``{name: "max" | "min"}`` of logged metrics,
            the model properties ``params``, ``size_mb``, ``latency_ms``, or
            ``(direction, function of the model)`` (:mod:`tunecb.study.objectives`).
        epochs: the epoch budget of every trial (also the pruner's maximum resource).
        batch_size: passed to ``fit`` (ignored by Keras for ``tf.data`` inputs).
        fit_kwargs: other ``model.fit`` arguments (``class_weight``, ``shuffle``, ...).
        n_trials: trials the study should hold when the search ends (finished ones count).
        timeout: seconds after which no new trial starts.
        trial_timeout: wall seconds one trial may run (stopped at the next epoch end with its
            best so far, or its worker process ended when no epoch ends).
        epoch_timeout: wall seconds one epoch may take (the same two ways).
        sampler: ``"tpe"`` (default), ``"random"``, ``"cmaes"``, ``"qmc"``, ``"gp"``, or an
            ``optuna.samplers`` instance.
        pruner: ``"median"`` (default), ``"successive_halving"``, ``"hyperband"``, ``"none"``,
            or an ``optuna.pruners`` instance.
        seed: seeds the sampler and, with the trial number, every trial's Keras seed.
        patience: early-stopping patience in epochs (``None`` turns early stopping off).
        min_delta: smallest change of the monitored value that counts as improvement.
        lr_schedule: ``"none"``, ``"plateau"``, ``"cosine"``, ``"step"``, ``"search"`` or a
            :mod:`tunecb.study.schedules` object.
        backend: the Keras backend, ``"tensorflow"``, ``"jax"`` or ``"torch"`` (default:
            Keras' own choice, ``KERAS_BACKEND`` or ``~/.keras/keras.json``).
        verbose: Keras ``fit`` verbosity (0 by default).
        backup_every: seconds between backups of a running trial (default 10; 0: every
            epoch); a trial whose worker dies resumes from its last backup.
        tensorboard: ``True`` writes each trial's TensorBoard logs with HParams under
            ``results/<study>/tensorboard/`` (needs the ``tensorboard`` package).
        mlflow: an MLflow tracking URI: the search as a parent run, each trial a child
            run (needs the ``mlflow`` package).
        mlflow_experiment: the MLflow experiment (default: the study's name).
        wandb: a W&B project: a run per trial and one for the search, grouped by the
            study's name (needs the ``wandb`` package; ``WANDB_MODE=offline``: no account).
        keep_checkpoints: keep the best checkpoints of the K best trials only and delete
            the others during the search (default ``None``: keep all).
        max_params: the most parameters a built model may have; a model with more is
            rejected before it trains, as ``infeasible`` (default ``None``: no limit).
        enqueue: configurations to run first, once each, counted in ``n_trials``: a list
            of dicts of parameters, or a ``.jsonl`` / ``.csv`` file of them.
        warm_start: an earlier study's results folder or storage URL, whose finished trials
            that fit this study's space become prior knowledge for the sampler (not trained
            or counted).
        warm_start_study: the earlier study's name, in a storage that holds several.
        warm_start_enqueue: queue the earlier study's K best trials to train first (3).
        steps_per_execution: batches per call into the backend during ``fit``: ``"auto"``
            (default: 16 on TensorFlow when nothing needs per-batch callbacks and the calls
            it saves over the epochs a trial is sure to train pay for its one-time cost), or
            a number (``1``: one call per batch, Keras' default).
        graph_optimizer: TensorFlow's graph optimizer (Grappler) during a trial's ``fit``:
            ``"auto"`` (default: off on a CPU for a model of at most 200,000 parameters,
            else TensorFlow's own), ``"tensorflow"`` (TensorFlow's own) or ``"off"``; set
            around the fit and restored after it (:mod:`tunecb.training.grappler`).
        data / model / callbacks: the three functions, here or with the decorators.
        constraint: a function of the built model, here or with ``@study.constraint``:
            ``True``/``False`` (feasible or not), or a violation number (> 0 infeasible).

    Example:
        >>> study = Study(monitor="val_accuracy", epochs=5)
        >>> @study.model
        ... def build(trial):
        ...     ...
        >>> study.build_fn is build
        True
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        monitor: str | None = None,
        direction: str | None = None,
        objectives: dict[str, Any] | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        fit_kwargs: dict[str, Any] | None = None,
        n_trials: int | None = None,
        timeout: float | None = None,
        trial_timeout: float | None = None,
        epoch_timeout: float | None = None,
        sampler: Any = None,
        pruner: Any = None,
        seed: int | None = None,
        patience: int | str | None = "default",
        min_delta: float | None = None,
        lr_schedule: Any = None,
        backend: str | None = None,
        verbose: int | None = None,
        backup_every: float | None = None,
        tensorboard: bool | None = None,
        mlflow: str | None = None,
        mlflow_experiment: str | None = None,
        wandb: str | None = None,
        keep_checkpoints: int | None = None,
        max_params: int | None = None,
        enqueue: Any = None,
        warm_start: str | None = None,
        warm_start_study: str | None = None,
        warm_start_enqueue: int | None = None,
        steps_per_execution: int | str | None = None,
        graph_optimizer: str | None = None,
        data: DataFn | None = None,
        model: BuildFn | None = None,
        callbacks: CallbacksFn | None = None,
        constraint: ConstraintFn | None = None,
    ) -> None:
        given = dict(locals())
        # The settings given here; a setting's ``unset`` default (None, or "default" for
        # patience, where None means no early stopping) leaves it to a flag or the default.
        self.settings: dict[str, Any] = {}
        for f in FIELDS:
            if f.in_study and not _is_unset(given[f.name], f.unset):
                self.settings[f.name] = given[f.name]
        self.data_fn = data
        self.build_fn = model
        self.callbacks_fn = callbacks
        self.constraint_fn = None if constraint is None else self.constraint(constraint)

    def data(self, fn: DataFn) -> DataFn:
        """Decorator: the function that returns ``(train, validation)`` once per worker."""
        self.data_fn = fn
        return fn

    def model(self, fn: BuildFn) -> BuildFn:
        """Decorator: the builder that takes an ``optuna.Trial`` and returns a compiled model.
        A builder with a second parameter (``build(trial, data)``) also gets the data
        (:class:`tunecb.study.data.Data`: ``data.input_shape``, ``data.n_classes``,
        ``data.x``, ``data.y``, ``data.train``, ``data.validation``)."""
        self.build_fn = fn
        return fn

    def callbacks(self, fn: CallbacksFn) -> CallbacksFn:
        """Decorator: a function of the trial that returns the user's own Keras callbacks."""
        self.callbacks_fn = fn
        return fn

    def constraint(self, fn: ConstraintFn) -> ConstraintFn:
        """Decorator: a function of the built (compiled) model that says whether it may
        train: ``True``/``False``, or a violation number (> 0: infeasible, <= 0: feasible).
        An infeasible model is rejected before ``fit`` (see the README's Constraints)."""
        if not callable(fn):
            raise ConfigError(
                f"constraint={fn!r} is not a function; give a function of the built model "
                "returning True/False or a violation number, e.g. "
                "constraint=lambda model: model.count_params() < 100_000"
            )
        self.constraint_fn = fn
        return fn

    def __repr__(self) -> str:
        return f"Study({', '.join(f'{k}={v!r}' for k, v in self.settings.items())})"


def _is_unset(value: Any, unset: Any) -> bool:
    return value is unset or (isinstance(value, str) and value == unset)


@dataclass(frozen=True)
class LoadedStudy:
    """A study file after import, or a study declared in code: the study, where it came
    from, and its fingerprint."""

    study: Study
    path: Path  # the study file; for a study in code, the file that defined its functions
    sha256: str
    in_code: bool = False  # declared in a script or notebook: workers get it by value

    @property
    def default_name(self) -> str:
        if not self.in_code:
            return self.path.stem
        stem = self.path.stem
        named = self.path.is_file() and "ipykernel" not in str(self.path) and stem.isidentifier()
        return stem if named else "study"

    def portable(self) -> bytes:
        """This study as bytes a fresh process can load (:func:`from_portable`): its
        functions by value (cloudpickle), so that a study declared in a notebook cell or a
        script runs in worker processes. Raises :class:`StudyFileError` naming what cannot
        travel."""
        import cloudpickle

        try:
            return cloudpickle.dumps(self)
        except Exception as exc:  # pickling raises anything the objects raise
            raise StudyFileError(
                f"the study's functions cannot be sent to worker processes "
                f"({type(exc).__name__}: {first_line(str(exc))}): they use something that "
                "cannot be copied to another process; create it inside the functions, "
                "declare the study in a file, or run with jobs=0"
            ) from exc


def from_portable(blob: bytes) -> LoadedStudy:
    """The study :meth:`LoadedStudy.portable` sent."""
    import pickle

    loaded = pickle.loads(blob)
    assert isinstance(loaded, LoadedStudy)
    return loaded


def study_in_code(study: Study) -> LoadedStudy:
    """A :class:`Study` declared in a script or a notebook, ready to search.

    Its fingerprint is the source text of its functions and its settings, so that a changed
    builder is noticed as a changed study file is.

    >>> s = Study(monitor="val_loss")
    >>> @s.data
    ... def load(): ...
    >>> @s.model
    ... def build(trial): ...
    >>> study_in_code(s).in_code
    True
    """
    if not isinstance(study, Study):
        raise StudyFileError(
            f"expected a tunecb.Study or a study file path, got {type(study).__name__}"
        )
    where = "the study"
    if study.build_fn is None:
        raise StudyFileError(f"{where} has no model builder: decorate a function with @study.model")
    if study.data_fn is None:
        raise StudyFileError(
            f"{where} has no data function: decorate a function returning "
            "(train, validation) with @study.data"
        )
    texts = []
    for fn in (study.data_fn, study.build_fn, study.callbacks_fn, study.constraint_fn):
        if fn is None:
            continue
        try:
            texts.append(inspect.getsource(fn))
        except (OSError, TypeError):
            code = getattr(fn, "__code__", None)
            texts.append(repr(code.co_code) if code else repr(fn))
    texts.append(repr(sorted((k, stable_repr(v)) for k, v in study.settings.items())))
    sha256 = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    code = getattr(study.build_fn, "__code__", None)
    path = Path(code.co_filename) if code else Path("<study>")
    return LoadedStudy(study=study, path=path, sha256=sha256, in_code=True)
