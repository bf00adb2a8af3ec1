"""The study a user declares in a study file, and loading a study file by path.

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

import contextlib
import hashlib
import importlib.abc
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunecb.errors import ConfigError, StudyFileError, cause_line, first_line
from tunecb.study.objectives import stable_repr
from tunecb.study.settings import FIELDS

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
            (default: 16 on TensorFlow when nothing needs per-batch callbacks), or a number
            (``1``: one call per batch, Keras' default).
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


def load_study_file(path: str | Path, *, defer_backends: bool = True) -> LoadedStudy:
    """Import a study file and return the one :class:`Study` it declares.

    With ``defer_backends`` its top-level imports of Keras and its backends are lazy (see
    :func:`_heavy_imports_deferred`); run them with
    :func:`tunecb.training.backends.prepare` before training.

    Raises :class:`StudyFileError` with a one-line message naming the file (and the line,
    for a syntax error) when it is missing, does not import or declares no usable study.

    Example:
        >>> load_study_file("studies/digits.py").study.settings["monitor"]  # doctest: +SKIP
        'val_accuracy'
    """
    path = Path(path)
    if not path.is_file():
        hint = "" if path.suffix == ".py" else " (a study file is a .py file)"
        raise StudyFileError(f"study file {str(path)!r} does not exist{hint}")
    source = path.read_bytes()
    sha256 = hashlib.sha256(source).hexdigest()
    try:
        compile(source, str(path), "exec")
    except SyntaxError as exc:
        raise StudyFileError(
            f"{path}:{exc.lineno}: syntax error in the study file: {exc.msg}"
        ) from exc
    module_name = f"tunecb_study_{path.stem}_{sha256[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        # Helpers beside the study file stay importable while it runs: at its top and
        # inside its functions (``import helper`` in the builder, during the search).
        sys.path.insert(0, folder)
    called: Any = None  # what a script passed to the tunecb.search() it calls at its top
    try:
        with (
            _heavy_imports_deferred() if defer_backends else contextlib.nullcontext(),
            _search_captured(),
        ):
            spec.loader.exec_module(module)
    except _SearchCalled as exc:
        called = exc.study
    except BaseException as exc:  # SystemExit too: a study file that exits is an error
        del sys.modules[module_name]
        if isinstance(exc, KeyboardInterrupt):
            raise
        line = _line_in(exc, path)
        where = f"{path}:{line}" if line else str(path)
        raise StudyFileError(
            f"{where}: importing the study file raised {type(exc).__name__}: {cause_line(exc)}"
        ) from exc

    if isinstance(called, str | Path):  # a script that searches a study file
        target = Path(called)
        beside = path.resolve().parent / target
        return load_study_file(target if target.is_file() else beside)
    # type(), not isinstance(): the latter would run a lazily imported backend (__class__)
    studies = {k: v for k, v in vars(module).items() if issubclass(type(v), Study)}
    if issubclass(type(called), Study):
        studies = {"study": called}  # the one the script searches
    if not studies:
        raise StudyFileError(
            f"{path} declares no study: add `study = tunecb.Study(monitor=...)` at module level"
        )
    if len(studies) > 1:
        if "study" not in studies:
            raise StudyFileError(
                f"{path} declares {len(studies)} studies ({', '.join(sorted(studies))}); "
                "name the one to run `study`"
            )
        studies = {"study": studies["study"]}
    study = next(iter(studies.values()))
    if study.build_fn is None:
        raise StudyFileError(
            f"{path} has no model builder: decorate a function of the trial with @study.model"
        )
    if study.data_fn is None:
        raise StudyFileError(
            f"{path} has no data function: decorate a function returning "
            "(train, validation) with @study.data"
        )
    return LoadedStudy(study=study, path=path, sha256=sha256)


class _SearchCalled(BaseException):
    """A study file called ``tunecb.search``: it stops there (a BaseException, so that the
    script's own ``except Exception`` does not catch it)."""

    def __init__(self, study: Any) -> None:
        super().__init__("tunecb.search() called while the study file is read")
        self.study = study


@contextlib.contextmanager
def _search_captured() -> Iterator[None]:
    """While a study file runs, ``tunecb.search(study, ...)`` does not search: it stops the
    file and hands over its study. A script that declares its study and searches it at its
    top (no ``__main__`` guard) is then a study file like any other: ``tunecb retrain
    --study script.py`` retrains without running its search first."""
    package = sys.modules.get("tunecb")
    original = getattr(package, "search", None)
    if original is None:
        yield
        return

    def search(study: Any, **settings: Any) -> Any:
        raise _SearchCalled(study)

    package.search = search  # type: ignore[union-attr]
    try:
        yield
    finally:
        package.search = original  # type: ignore[union-attr]


def _line_in(exc: BaseException, path: Path) -> int | None:
    """The innermost line of ``path`` in the traceback of ``exc``, if any."""
    target = str(path.resolve())
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if str(Path(frame.filename).resolve()) == target:
            line = frame.lineno
    return line


# Backends a study file imports at its top but needs only inside its functions.
_HEAVY = frozenset({"keras", "tensorflow", "jax", "torch"})


class _DeferHeavy(importlib.abc.MetaPathFinder):
    """Imports ``keras``, ``tensorflow``, ``jax`` and ``torch`` lazily (Python's
    ``LazyLoader``: the module runs at its first attribute access), unless Keras or a
    backend imports it: a study file whose top level uses Keras runs it at once, and Keras
    then imports its backend for real (PyTorch loaded lazily from inside Keras breaks:
    ``module 'torch.utils' has no attribute '_pytree'``)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in _HEAVY or _imported_by_heavy():
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is None:
                continue
            if spec.loader is None or not hasattr(spec.loader, "exec_module"):
                return None
            spec.loader = _KerasFirstLoader(spec.loader)
            return spec
        return None


class _KerasFirst(importlib.util._LazyModule):
    """A lazily imported Keras or backend that, whatever touches it first (the search's
    backend check, ``importlib.util.find_spec``, user code), runs a lazy Keras first: a
    backend run first looks Keras up while half imported (TensorFlow does), which ran Keras
    then and left it empty ("module 'keras' has no attribute 'backend'")."""

    def __getattribute__(self, attr: str) -> Any:
        keras = sys.modules.get("keras")
        if keras is not self and type(keras) is _KerasFirst:
            _ = keras.__spec__  # runs Keras, which imports (and so runs) its backend
        if type(self) is not _KerasFirst:  # already run, by Keras just now
            return getattr(self, attr)
        self.__class__ = importlib.util._LazyModule  # the class Python's loading expects
        return importlib.util._LazyModule.__getattribute__(self, attr)


class _KerasFirstLoader(importlib.util.LazyLoader):
    """Python's ``LazyLoader``, its modules :class:`_KerasFirst`."""

    def exec_module(self, module: Any) -> None:
        super().exec_module(module)
        module.__class__ = _KerasFirst


def _imported_by_heavy() -> bool:
    """Whether the import under way comes from the code of Keras or of a backend."""
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__") or ""
        if module.partition(".")[0] in _HEAVY:
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def _heavy_imports_deferred() -> Iterator[None]:
    """While a study file is read, its top-level ``import keras`` (or tensorflow, jax,
    torch) costs nothing until the module is used: reading a study's settings (a ``--jobs``
    launcher, a study whose budget is spent) never starts a backend. A study that uses one
    at import time (``keras.layers.Dense(...)`` at top level) just loads it then."""
    finder = _DeferHeavy()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
