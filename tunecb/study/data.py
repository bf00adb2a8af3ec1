"""The data a study's data function returns, checked once and turned into ``fit`` arguments.

The data function returns ``(train, validation)``. Each part is either a tuple
``(x, y)`` / ``(x, y, sample_weight)`` of arrays, or something Keras iterates itself
(a ``tf.data.Dataset``, a ``keras.utils.PyDataset``); ``validation`` may be ``None``.

>>> import numpy as np
>>> d = Data.from_return(((np.zeros((4, 2)), np.zeros(4)), None), "load()")
>>> sorted(d.fit_arguments(batch_size=2))
['batch_size', 'x', 'y']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunecb.errors import ConfigError, StudyFileError

if TYPE_CHECKING:
    from tunecb.study.declaration import LoadedStudy
    from tunecb.study.settings import Settings


@dataclass(frozen=True)
class Data:
    train: Any
    validation: Any

    @classmethod
    def from_return(cls, value: Any, where: str) -> Data:
        """Check what the data function returned; ``where`` names it in errors."""
        if not isinstance(value, tuple | list) or len(value) != 2:
            raise StudyFileError(
                f"{where} returned {_describe(value)}; return (train, validation), "
                "e.g. ((x_train, y_train), (x_val, y_val))"
            )
        train, validation = value
        for part, name, optional in ((train, "train", False), (validation, "validation", True)):
            if part is None and optional:
                continue
            if isinstance(part, tuple | list):
                if len(part) not in (2, 3):
                    raise StudyFileError(
                        f"{where} returned a {name} tuple of {len(part)} items; "
                        "use (x, y) or (x, y, sample_weight)"
                    )
            elif part is None or isinstance(part, str | bytes | int | float):
                raise StudyFileError(
                    f"{where} returned {_describe(part)} as {name} data; "
                    "use (x, y) arrays or a tf.data.Dataset"
                )
        return cls(train=tuple(train) if isinstance(train, list) else train, validation=validation)

    @property
    def has_validation(self) -> bool:
        return self.validation is not None

    # What a model builder that takes the data (``build(trial, data)``) asks most.

    @property
    def x(self) -> Any:
        """The training inputs when they are arrays (``None`` for a dataset)."""
        return self.train[0] if isinstance(self.train, tuple) else None

    @property
    def y(self) -> Any:
        """The training targets when they are arrays (``None`` for a dataset)."""
        return self.train[1] if isinstance(self.train, tuple) else None

    @property
    def input_shape(self) -> Any:
        """One sample's input shape, e.g. ``(64,)`` (a dict of them for dict inputs);
        read from the arrays, or from a ``tf.data.Dataset``'s element spec.

        >>> import numpy as np
        >>> Data.from_return(((np.zeros((4, 8)), np.zeros(4)), None), "f()").input_shape
        (8,)
        """
        x = self.x
        if x is None:
            spec = getattr(self.train, "element_spec", None)
            x = spec[0] if isinstance(spec, tuple) else spec
        return _sample_shape(x)

    @property
    def n_classes(self) -> int | None:
        """For integer class labels, the number of classes (largest label + 1); for one-hot
        labels, their width; ``None`` otherwise (floats: a regression).

        >>> import numpy as np
        >>> Data.from_return(((np.zeros((4, 2)), np.array([0, 2, 1, 2])), None), "f()").n_classes
        3
        """
        import numpy as np

        y = self.y
        if y is None or not hasattr(y, "dtype") or not hasattr(y, "shape"):
            return None
        y = np.asarray(y)
        if np.issubdtype(y.dtype, np.integer) and y.size:
            return int(y.max()) + 1 if y.ndim == 1 or y.shape[-1] == 1 else int(y.shape[-1])
        if y.ndim == 2 and y.shape[1] > 1 and np.isin(y, (0, 1)).all():
            return int(y.shape[1])
        return None

    def fit_arguments(self, batch_size: int | None) -> dict[str, Any]:
        """``x``, ``y``, ``sample_weight``, ``batch_size`` and ``validation_data`` for fit."""
        args: dict[str, Any] = {}
        if isinstance(self.train, tuple):
            args["x"], args["y"] = self.train[0], self.train[1]
            if len(self.train) == 3:
                args["sample_weight"] = self.train[2]
            if batch_size is not None:
                args["batch_size"] = batch_size
        else:  # a dataset batches and shuffles itself
            args["x"], args["shuffle"] = self.train, False
        if self.validation is not None:
            args["validation_data"] = (
                tuple(self.validation) if isinstance(self.validation, list) else self.validation
            )
        return args


def _sample_shape(x: Any) -> Any:
    """``x``'s shape without the batch axis; a dict of them for a dict."""
    if isinstance(x, dict):
        return {k: _sample_shape(v) for k, v in x.items()}
    shape = getattr(x, "shape", None)
    if shape is None:
        return None
    return tuple(None if d is None else int(d) for d in tuple(shape))[1:]


def wants_data(fn: Any) -> bool:
    """Whether a model builder takes the data too: ``build(trial, data)``.

    >>> wants_data(lambda trial: 0), wants_data(lambda trial, data: 0)
    (False, True)
    """
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.name == "data" for p in params)


def _describe(value: Any) -> str:
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)} items"
    return type(value).__name__


_NEEDED = {
    "tensorflow": 'pip install "tunecb[cpu]" (a tf.data.Dataset needs TensorFlow, whatever the '
    "Keras backend), or return numpy arrays or a keras.utils.PyDataset",
    "jax": 'pip install "tunecb[jax]"',
    "torch": 'pip install "tunecb[torch]" (a torch DataLoader needs PyTorch, whatever the '
    "Keras backend), or return numpy arrays or a keras.utils.PyDataset",
}


def missing_backend_hint(exc: BaseException) -> str:
    """``"; fix: pip install ..."`` when ``exc`` is a backend library that is not installed.

    >>> missing_backend_hint(ModuleNotFoundError("No module named 'torch'", name="torch"))[:30]
    '; fix: pip install "tunecb[tor'
    """
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        if top in _NEEDED:
            return f"; fix: {_NEEDED[top]}"
    return ""


def load_data(loaded: LoadedStudy, settings: Settings) -> Data:
    """Call the study's data function once and check what it returned."""
    fn = loaded.study.data_fn
    where = f"the data function {getattr(fn, '__name__', 'data')}() in {loaded.path}"
    try:
        value = fn()
    except Exception as exc:
        raise StudyFileError(
            f"{where} raised {type(exc).__name__}: {exc}{missing_backend_hint(exc)}"
        ) from exc
    data = Data.from_return(value, where)
    if (
        settings.monitor.startswith("val_")
        and not data.has_validation
        and not settings.fit_kwargs.get("validation_split")
    ):
        raise ConfigError(
            f"monitor {settings.monitor!r} needs validation data, but {where} returned "
            "None for it; return (train, validation) or monitor a training metric"
        )
    return data
