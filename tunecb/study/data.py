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


def _describe(value: Any) -> str:
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)} items"
    return type(value).__name__


def load_data(loaded: LoadedStudy, settings: Settings) -> Data:
    """Call the study's data function once and check what it returned."""
    fn = loaded.study.data_fn
    where = f"the data function {getattr(fn, '__name__', 'data')}() in {loaded.path}"
    try:
        value = fn()
    except Exception as exc:
        raise StudyFileError(f"{where} raised {type(exc).__name__}: {exc}") from exc
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
