"""Loading a study file by path: import it (its Keras and backend imports deferred until
training needs them), find the one :class:`~tunecb.study.declaration.Study` it declares,
or the one a script hands to ``tunecb.search()``, and fingerprint it.

Nothing here imports TensorFlow: the study file does, when it runs, and with
``defer_backends`` not even then.

Example::

    loaded = load_study_file("studies/digits.py")
    loaded.study.settings["monitor"], loaded.sha256[:8]
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.abc
import importlib.util
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunecb.errors import StudyFileError, cause_line
from tunecb.study.declaration import LoadedStudy, Study

__all__ = ["load_study_file"]


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
