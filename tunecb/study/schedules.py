"""Learning-rate schedules a study can declare, as plain settings (no TensorFlow here).

The Keras side lives in :mod:`tunecb.training.callbacks`; these classes only say *what* to do,
so that a study file and the CLI can name them without importing Keras.

>>> from tunecb.study.schedules import Cosine, parse_schedule
>>> parse_schedule("cosine") == Cosine()
True
>>> parse_schedule("search").choices
('none', 'plateau', 'cosine', 'step')

A schedule set per epoch computes its own rate (the callback only applies it):

>>> [StepDecay(every=2, factor=0.5).rate(e, base_lr=0.8, epochs=10) for e in range(5)]
[0.8, 0.8, 0.4, 0.4, 0.2]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tunecb.errors import ConfigError


@dataclass(frozen=True)
class Constant:
    """Keep the optimizer's learning rate as compiled."""

    name = "none"


@dataclass(frozen=True)
class ReduceOnPlateau:
    """Multiply the rate by ``factor`` after ``patience`` epochs without improvement
    of the study's monitored metric (Keras ``ReduceLROnPlateau``)."""

    factor: float = 0.5
    patience: int = 2
    min_lr: float = 0.0
    name = "plateau"


@dataclass(frozen=True)
class PerEpoch:
    """A schedule that sets the rate at the start of every epoch from the compiled rate
    (``tunecb.training.rates.EpochLRSchedule`` applies it). A new one subclasses this and
    implements :meth:`rate`."""

    name = "per-epoch"

    def rate(self, epoch: int, base_lr: float, epochs: int) -> float:
        """The rate of ``epoch`` (0-based) of an ``epochs`` budget, from ``base_lr``."""
        raise NotImplementedError


@dataclass(frozen=True)
class Cosine(PerEpoch):
    """Cosine decay from the compiled rate to ``min_ratio`` times it, over the trial's
    epoch budget (not the epochs it happens to run), after ``warmup_epochs`` of linear
    warm-up.

    >>> Cosine(min_ratio=0.1).rate(0, 1.0, 11), Cosine(min_ratio=0.1).rate(11, 1.0, 11)
    (1.0, 0.1)
    >>> [Cosine(warmup_epochs=2).rate(e, 1.0, 10) for e in range(3)]
    [0.5, 1.0, 1.0]
    """

    min_ratio: float = 0.0
    warmup_epochs: int = 0
    name = "cosine"

    def rate(self, epoch: int, base_lr: float, epochs: int) -> float:
        if epoch < self.warmup_epochs:
            return base_lr * (epoch + 1) / self.warmup_epochs
        span = max(1, epochs - self.warmup_epochs)
        progress = min(1.0, (epoch - self.warmup_epochs) / span)
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return base_lr * (self.min_ratio + (1 - self.min_ratio) * cosine)


@dataclass(frozen=True)
class StepDecay(PerEpoch):
    """Multiply the rate by ``factor`` every ``every`` epochs."""

    every: int = 10
    factor: float = 0.5
    name = "step"

    def rate(self, epoch: int, base_lr: float, epochs: int) -> float:
        return base_lr * self.factor ** (epoch // max(1, self.every))


@dataclass(frozen=True)
class Searched:
    """Let the search choose the schedule: the trial suggests ``lr_schedule`` among
    ``choices`` (names of the schedules above, used with their defaults)."""

    choices: tuple[str, ...] = ("none", "plateau", "cosine", "step")
    name = "search"

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        for choice in self.choices:
            if choice not in _BY_NAME:
                raise ConfigError(
                    f"lr_schedule choice {choice!r} is not a schedule; "
                    f"use some of {sorted(_BY_NAME)}"
                )
        if not self.choices:
            raise ConfigError("Searched(choices=()) is empty; name at least one schedule")


Schedule = Constant | ReduceOnPlateau | Cosine | StepDecay | Searched

_BY_NAME: dict[str, type] = {
    "none": Constant,
    "plateau": ReduceOnPlateau,
    "cosine": Cosine,
    "step": StepDecay,
}
NAMES = (*_BY_NAME, "search")


def parse_schedule(value: object) -> Schedule:
    """Turn a study file's ``lr_schedule`` (a name, ``None`` or a schedule) into a schedule."""
    if value is None:
        return Constant()
    if isinstance(value, Constant | ReduceOnPlateau | Cosine | StepDecay | Searched):
        return value
    if isinstance(value, str):
        key = value.strip().lower()
        if key == "search":
            return Searched()
        if key in _BY_NAME:
            return _BY_NAME[key]()
    raise ConfigError(
        f"lr_schedule={value!r} is not a schedule; use one of {list(NAMES)} "
        "or a tunecb.study.schedules object such as Cosine(min_ratio=0.1)"
    )
