"""The data a study's data function returns, checked once and turned into ``fit`` arguments.

The data function returns ``(train, validation)``, or ``(train, validation, test)``. Each
part is either a tuple ``(x, y)`` / ``(x, y, sample_weight)`` of arrays, or something Keras
iterates itself (a ``tf.data.Dataset``, a ``keras.utils.PyDataset``); ``validation`` may be
``None``. The search never looks at ``test``: only ``tunecb retrain`` and ``tunecb evaluate``
do, on the final models.

>>> import numpy as np
>>> d = Data.from_return(((np.zeros((4, 2)), np.zeros(4)), None), "load()")
>>> sorted(d.fit_arguments(batch_size=2))
['batch_size', 'x', 'y']
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunecb import interrupts
from tunecb.errors import ConfigError, StudyFileError, cause_line, raised_at

if TYPE_CHECKING:
    from tunecb.study.declaration import LoadedStudy
    from tunecb.study.settings import Settings


@dataclass(frozen=True)
class Data:
    train: Any
    validation: Any
    test: Any = None

    @classmethod
    def from_return(cls, value: Any, where: str) -> Data:
        """Check what the data function returned; ``where`` names it in errors."""
        if not isinstance(value, tuple | list) or len(value) not in (2, 3):
            raise StudyFileError(
                f"{where} returned {_describe(value)}; return (train, validation), "
                "e.g. ((x_train, y_train), (x_val, y_val)), or (train, validation, test)"
            )
        train, validation, test = (*value, None) if len(value) == 2 else value
        parts = ((train, "train", False), (validation, "validation", True), (test, "test", True))
        for part, name, optional in parts:
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
        return cls(train=_tuple(train), validation=_tuple(validation), test=_tuple(test))

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

    def label_range(self) -> tuple[float, float] | None:
        """The smallest and largest target over the train, validation and test arrays when
        they hold one class index per sample (numbers, shape ``(n,)`` or ``(n, 1)``);
        ``None`` otherwise (datasets, dicts, one-hot or multi-column targets).

        >>> import numpy as np
        >>> Data.from_return(((np.zeros((3, 2)), np.array([0, 4, 2])), None), "f()").label_range()
        (0.0, 4.0)
        """
        import numpy as np

        low, high = math.inf, -math.inf
        for part in (self.train, self.validation, self.test):
            if part is None:
                continue
            y = part[1] if isinstance(part, tuple) and len(part) > 1 else None
            if not isinstance(y, np.ndarray) or not np.issubdtype(y.dtype, np.number):
                return None
            if not (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)) or not y.size:
                return None
            low, high = min(low, float(y.min())), max(high, float(y.max()))
        return (low, high) if math.isfinite(low) and math.isfinite(high) else None

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
            args["validation_data"] = self.validation
        return args

    def fingerprint(self) -> dict[str, Any]:
        """A cheap fingerprint of the data: each part's shapes and dtypes, and a hash of
        them and of a sample of at most 512 rows of every array (a dataset: its element
        spec and cardinality), so that changed data is noticed on resume, rerun and
        retrain. ``{"hash": 16 hex digits, "parts": {"train": "float64[1437,64] ...", ...}}``.

        >>> import numpy as np
        >>> a = Data.from_return(((np.zeros((4, 2)), np.zeros(4)), None), "f()")
        >>> a.fingerprint()["parts"]
        {'train': 'float64[4,2] float64[4]'}
        >>> b = Data.from_return(((np.ones((4, 2)), np.zeros(4)), None), "f()")
        >>> a.fingerprint()["hash"] == b.fingerprint()["hash"]
        False
        """
        import hashlib

        digest = hashlib.sha256()
        parts: dict[str, str] = {}
        for name in ("train", "validation", "test"):
            part = getattr(self, name)
            if part is None:
                continue
            described = []
            for item in part if isinstance(part, tuple) else (part,):
                described.append(_fingerprint_item(item, digest))
            parts[name] = " ".join(described)
            digest.update(f"{name}={parts[name]};".encode())
        return {"hash": digest.hexdigest()[:16], "parts": parts}

    def merged(self) -> Data:
        """Training and validation data as one training set (for ``tunecb retrain``): arrays
        concatenated, datasets chained; no validation data, the same test data."""
        if self.validation is None:
            return self
        if isinstance(self.train, tuple) and isinstance(self.validation, tuple):
            import numpy as np

            if len(self.train) != len(self.validation):
                raise ConfigError(
                    "train and validation data have different parts (with and without "
                    "sample weights); cannot merge them"
                )
            joined = tuple(
                _concat(a, b, np) for a, b in zip(self.train, self.validation, strict=True)
            )
            return Data(train=joined, validation=None, test=self.test)
        if hasattr(self.train, "concatenate") and hasattr(self.validation, "concatenate"):
            return Data(self.train.concatenate(self.validation), None, self.test)
        raise ConfigError(
            "cannot merge this training and validation data (one is a dataset of a kind "
            "that does not concatenate); retrain with --no-merge, on the training data only"
        )

    def rows(self, part: str) -> int | None:
        """The number of samples in ``part`` (``"train"``, ...) when it is arrays."""
        value = getattr(self, part)
        if not isinstance(value, tuple):
            return None
        x = value[0]
        if isinstance(x, dict):
            x = next(iter(x.values()), None)
        shape = getattr(x, "shape", None)
        return int(shape[0]) if shape else None


def _tuple(part: Any) -> Any:
    return tuple(part) if isinstance(part, list) else part


def _concat(a: Any, b: Any, np: Any) -> Any:
    if isinstance(a, dict):
        return {k: np.concatenate([a[k], b[k]]) for k in a}
    return np.concatenate([np.asarray(a), np.asarray(b)])


def _fingerprint_item(item: Any, digest: Any) -> str:
    """Describe one array (or dict of arrays, or dataset) and feed a sample of it to
    ``digest``."""
    if isinstance(item, dict):
        return "{" + ",".join(f"{k}:{_fingerprint_item(v, digest)}" for k, v in item.items()) + "}"
    shape, dtype = getattr(item, "shape", None), getattr(item, "dtype", None)
    if shape is not None and dtype is not None and hasattr(item, "__getitem__"):
        import numpy as np

        array = item if isinstance(item, np.ndarray) else None
        if array is None:
            try:
                array = np.asarray(item)
            except Exception:  # a tensor that will not convert: its shape says enough
                array = None
        text = f"{np.dtype(dtype) if not hasattr(dtype, 'name') else dtype.name}" + (
            f"[{','.join(str(d) for d in shape)}]"
        )
        if array is not None and array.ndim:
            step = max(1, array.shape[0] // 512)
            digest.update(np.ascontiguousarray(array[::step][:512]).tobytes())
        digest.update(text.encode())
        return text
    spec = getattr(item, "element_spec", None)
    text = type(item).__name__
    if spec is not None:
        cardinality = getattr(item, "cardinality", None)
        try:
            n = int(cardinality()) if callable(cardinality) else None
        except Exception:
            n = None
        text = f"{text}({n} batches)" if n is not None and n >= 0 else text
        digest.update(repr(spec).encode())
    digest.update(text.encode())
    return text


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


def check_lengths(data: Data, where: str) -> None:
    """Refuse arrays that cannot be right, once, before any trial is spent: a split with
    no samples, or inputs, targets and weights of different lengths.

    >>> import numpy as np
    >>> check_lengths(Data.from_return(((np.zeros((4, 2)), np.zeros(3)), None), "f()"), "f()")
    Traceback (most recent call last):
    ...
    tunecb.errors.StudyFileError: f() returned train data of different lengths: x has 4 ...
    """
    for name in ("train", "validation", "test"):
        part = getattr(data, name)
        if not isinstance(part, tuple):
            continue
        lengths = [
            (label, _length(item))
            for label, item in zip(("x", "y", "sample_weight"), part, strict=False)
        ]
        known = [(label, n) for label, n in lengths if n is not None]
        if any(n == 0 for _, n in known):
            raise StudyFileError(
                f"{where} returned empty {name} data "
                f"({', '.join(f'{k} has {n} samples' for k, n in known)}); "
                f"return at least one sample{'' if name == 'train' else f', or None for {name}'}"
            )
        if len({n for _, n in known}) > 1:
            shown = ", ".join(
                f"{k} has {n} samples" if i == 0 else f"{k} {n}" for i, (k, n) in enumerate(known)
            )
            raise StudyFileError(
                f"{where} returned {name} data of different lengths: {shown}; every array "
                "of a split needs one row per sample"
            )


def _length(item: Any) -> int | None:
    if isinstance(item, dict):
        lengths = {_length(v) for v in item.values()} - {None}
        return lengths.pop() if len(lengths) == 1 else None
    shape = getattr(item, "shape", None)
    if shape is not None and len(shape):
        return None if shape[0] is None else int(shape[0])
    if isinstance(item, list):
        return len(item)
    return None


def load_data(loaded: LoadedStudy, settings: Settings) -> Data:
    """Call the study's data function once and check what it returned."""
    from tunecb.study.data_checks import check_labelled, check_reusable, data_function

    fn = loaded.study.data_fn
    where = data_function(loaded)
    try:
        value = fn()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit too: the search cannot start without data
        interrupts.raise_if_interrupted(exc)  # a Ctrl-C the data pipeline wrapped: stop
        at = raised_at(exc, loaded.path)
        raise StudyFileError(
            f"{where} raised {type(exc).__name__}: {cause_line(exc)}"
            f"{f' (at {at})' if at else ''}{missing_backend_hint(exc)}"
        ) from exc
    data = Data.from_return(value, where)
    check_lengths(data, where)
    check_reusable(data, where)
    check_labelled(data, where)
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
