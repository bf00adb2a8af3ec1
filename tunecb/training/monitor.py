"""The monitored metric, read in one place: its value in an epoch's logs, whether that value
is finite, and whether it improves on a best (as Keras' ``MonitorCallback`` does for its
callbacks). No Keras here: the logs are a plain dict.

>>> m = Monitor("val_accuracy", maximize=True)
>>> m.value({"val_accuracy": 0.9}), m.value({"val_accuracy": float("nan")}), m.value({})
(0.9, None, None)
>>> m.usable({"val_accuracy": 0.9, "loss": float("inf")}) is None
True
>>> m.improves(0.91, 0.9), m.improves(0.9, 0.9), m.improves(0.5, None)
(True, False, True)
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any


def is_finite(value: Any) -> bool:
    """Whether ``value`` is a number that is neither NaN nor infinite.

    >>> is_finite(1), is_finite("x"), is_finite(None), is_finite(float("-inf"))
    (True, False, False, False)
    """
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def finite_or_none(value: Any) -> float | None:
    """``value`` as a float when finite, else ``None`` (a JSON-safe best: strict JSON has no
    NaN or infinity).

    >>> finite_or_none(2), finite_or_none(float("inf")), finite_or_none(None)
    (2.0, None, None)
    """
    return float(value) if is_finite(value) else None


@dataclass(frozen=True)
class Monitor:
    """The study's monitored metric and its direction."""

    name: str
    maximize: bool = False

    def value(self, logs: dict | None) -> float | None:
        """The monitored value in ``logs``, ``None`` when missing or not finite."""
        return finite_or_none((logs or {}).get(self.name))

    def usable(self, logs: dict | None) -> float | None:
        """The monitored value, ``None`` unless both it and the loss are finite (an epoch
        that may become a best checkpoint or an objective value)."""
        logs = logs or {}
        return self.value(logs) if is_finite(logs.get("loss", 0.0)) else None

    def improves(self, value: float, best: float | None) -> bool:
        """Whether ``value`` is better than ``best`` (any value beats no best)."""
        if best is None:
            return True
        return value > best if self.maximize else value < best

    def missing_from(self, logs: dict) -> str | None:
        """A one-line error when ``logs`` lack the monitored metric, else ``None``.

        >>> print(Monitor("val_acc").missing_from({"loss": 1, "val_accuracy": 0.5}))
        monitor 'val_acc' is not logged by the model; it logs ['loss', 'val_accuracy']. \
Did you mean 'val_accuracy'? Set monitor= in the study file to one of them.
        """
        if self.name in logs:
            return None
        names = sorted(k for k in logs if k != "learning_rate")
        close = difflib.get_close_matches(self.name, names, n=1)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        if self.name.startswith("val_") and not any(k.startswith("val_") for k in names):
            hint += "(val_ metrics need validation data from the data function) "
        return (
            f"monitor {self.name!r} is not logged by the model; it logs {names}. "
            f"{hint}Set monitor= in the study file to one of them."
        )
