"""The check of each study setting, declared beside it in :data:`tunecb.study.fields.FIELDS`.

A check takes the value given (by a flag, the study file or the default) and returns the
value to use, or raises :class:`Invalid` with the one line that says what the setting takes;
:func:`tunecb.study.settings.resolve` names the flag or field and the value in front of it.

>>> positive = integer(1, "must be a positive integer")
>>> positive(3)
3
>>> positive(0)
Traceback (most recent call last):
    ...
tunecb.study.checks.Invalid: must be a positive integer
>>> name_in(("maximize", "minimize"), "use ...", aliases={"max": "maximize"})(" MAX ")
'maximize'
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunecb.errors import ConfigError
from tunecb.study.schedules import parse_schedule

Check = Callable[[Any], Any]

# fit() arguments that tunecb sets itself; the study declares them another way.
RESERVED_FIT_KWARGS = {
    "x": "the data function",
    "y": "the data function",
    "validation_data": "the data function",
    "epochs": "epochs=",
    "batch_size": "batch_size=",
    "callbacks": "@study.callbacks",
    "verbose": "verbose=",
    "initial_epoch": "nothing (tunecb starts every trial at epoch 0)",
}
NAME_RULE = "a study name is letters, digits, '_', '-' and '.', not first, e.g. 'digits'"


class Invalid(ValueError):
    """A setting's value is not one it takes: ``expected`` says what it takes. With
    ``quote=False`` the text says itself what is wrong, and the value is not quoted."""

    def __init__(self, expected: str, *, quote: bool = True) -> None:
        super().__init__(expected)
        self.expected, self.quote = expected, quote


def integer(low: int, expected: str, *, none: bool = False) -> Check:
    """Whole numbers ``>= low`` (``True`` is not one); ``None`` too when ``none``.

    >>> integer(0, "an integer >= 0", none=True)(None), integer(0, "...")(5)
    (None, 5)
    """

    def check(value: Any) -> int | None:
        if value is None and none:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise Invalid(expected)
        return value

    return check


def auto_or_integer(low: int, expected: str) -> Check:
    """``"auto"``, or a whole number ``>= low`` (also as text, as a flag gives it).

    >>> check = auto_or_integer(1, "auto or a positive integer")
    >>> check("auto"), check(" AUTO "), check(8), check("8")
    ('auto', 'auto', 8, 8)
    """
    whole = integer(low, expected)

    def check(value: Any) -> int | str:
        if isinstance(value, str):
            text = value.strip().lower()
            if text == "auto":
                return "auto"
            if not text.isdigit():
                raise Invalid(expected)
            value = int(text)
        return whole(value)

    return check


def number(
    low: float, expected: str, *, above: bool = False, finite: bool = False, none: bool = False
) -> Check:
    """Real numbers ``>= low`` (``> low`` when ``above``; not infinite when ``finite``; never
    NaN), as a float; ``None`` too when ``none``.

    >>> number(0, "seconds", above=True)(2), number(0, "a number >= 0")(0)
    (2.0, 0.0)
    """

    def check(value: Any) -> float | None:
        if value is None and none:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (value > low if above else value >= low)  # NaN is neither
            or (finite and not math.isfinite(value))
        ):
            raise Invalid(expected)
        return float(value)

    return check


def name_in(
    names: tuple[str, ...], expected: str, *, aliases: dict[str, str] | None = None,
    none: bool = False,
) -> Check:  # fmt: skip
    """One of ``names``, in any case and with spaces around (``aliases``: other names of
    them), lower case; ``None`` too when ``none``."""

    def check(value: Any) -> str | None:
        if value is None and none:
            return None
        if not isinstance(value, str):
            raise Invalid(expected)
        name = value.strip().lower()
        name = (aliases or {}).get(name, name)
        if name not in names:
            raise Invalid(expected)
        return name

    return check


def one_of(choices: tuple[Any, ...], expected: str) -> Check:
    """A value equal to one of ``choices``, kept as given.

    >>> one_of((0, 1, 2, "auto"), "...")("auto")
    'auto'
    """

    def check(value: Any) -> Any:
        if value not in choices:
            raise Invalid(expected)
        return value

    return check


def boolean(expected: str) -> Check:
    """``True`` or ``False`` (not ``1`` or ``"yes"``)."""

    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise Invalid(expected)
        return value

    return check


def text(expected: str, *, none: bool = False) -> Check:
    """A string that is not blank; ``None`` too when ``none``."""

    def check(value: Any) -> str | None:
        if value is None and none:
            return None
        if not isinstance(value, str) or not value.strip():
            raise Invalid(expected)
        return value

    return check


def wandb_project(value: Any) -> str | None:
    """A W&B project name (none of ``/ \\ # ? % :``, at most 128 characters), or ``None``.

    >>> wandb_project("digits-mlp")
    'digits-mlp'
    """
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise Invalid("must be a W&B project name, e.g. digits")
    if len(value) > 128 or any(c in value for c in "/\\#?%:"):
        raise Invalid(
            "is not a W&B project name (at most 128 characters, none of / \\ # ? % :); "
            "the entity comes from WANDB_ENTITY"
        )
    return value


def folder(expected: str) -> Check:
    """A path (a string or a :class:`~pathlib.Path`, not empty), as a ``Path``."""

    def check(value: Any) -> Path:
        if not isinstance(value, str | Path) or not str(value):
            raise Invalid(expected)
        return Path(value)

    return check


def optuna_choice(kind: str, names: tuple[str, ...], aliases: dict[str, str]) -> Check:
    """A sampler or pruner (``kind``) by name (``-`` as ``_``, any case), or an
    ``optuna.samplers`` / ``optuna.pruners`` instance, passed through."""
    module = f"optuna.{kind}s"
    expected = f"use one of {list(names)} or an {module} instance"

    def check(value: Any) -> Any:
        if isinstance(value, str):
            name = value.strip().lower().replace("-", "_")
            name = aliases.get(name, name)
            if name in names:
                return name
            raise Invalid(expected)
        import optuna

        base = optuna.samplers.BaseSampler if kind == "sampler" else optuna.pruners.BasePruner
        if isinstance(value, base):
            return value
        raise Invalid(expected)

    return check


def valid_name(name: object) -> bool:
    """Whether ``name`` can name a study (and its folder ``results/<name>/``): letters and
    digits of any script, ``_``, ``-`` and ``.``; not starting with ``.`` (a hidden folder)
    or ``-`` (it would read as a flag). Every Python identifier is one, so a study file
    ``données.py`` or ``模型.py`` names its study.

    >>> [valid_name(n) for n in ("digits", "données", "模型", "_tmp", "run-2.1")]
    [True, True, True, True, True]
    >>> [valid_name(n) for n in ("", ".hidden", "-x", "a b", "a/b", "a+b", "..")]
    [False, False, False, False, False, False, False]
    """
    return (
        isinstance(name, str)
        and bool(name)
        and name[0] not in ".-"
        and all(c.isalnum() or c in "_.-" for c in name)
        and len(name.encode("utf-8")) <= 200  # a folder name: 255 bytes on most filesystems
    )


def study_name(value: Any) -> str:
    """A name for the study and its folder (:func:`valid_name`)."""
    if not valid_name(value):
        raise Invalid(NAME_RULE)
    return value


def metric(value: Any) -> str:
    """The name of a metric the model logs: a string, not empty."""
    if not isinstance(value, str) or not value:
        raise Invalid("name a logged metric, e.g. 'val_accuracy'")
    return value


def fit_arguments(value: Any) -> dict[str, Any]:
    """Other ``model.fit`` arguments: a dict without the ones tunecb sets itself.

    >>> fit_arguments({"epochs": 3})
    Traceback (most recent call last):
        ...
    tunecb.study.checks.Invalid: has 'epochs': tunecb sets it; declare it with epochs=
    """
    if not isinstance(value, dict):
        raise Invalid("must be a dict of model.fit arguments")
    for key in value:
        if key in RESERVED_FIT_KWARGS:
            raise Invalid(
                f"has {key!r}: tunecb sets it; declare it with {RESERVED_FIT_KWARGS[key]}",
                quote=False,
            )
    return dict(value)


def schedule(value: Any) -> Any:
    """A learning-rate schedule (:func:`tunecb.study.schedules.parse_schedule`)."""
    try:
        return parse_schedule(value)
    except ConfigError as exc:  # its text names the value and the fix
        raise Invalid(str(exc), quote=False) from None
