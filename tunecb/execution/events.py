"""The typed events of a search, the same in every execution mode.

Executors send :class:`TrialStarted`, :class:`EpochEnded` and :class:`TrialFinished`; the
launcher (:mod:`tunecb.launcher`) adds :class:`SearchStarted` first and :class:`SearchEnded`
last, and fills in each finished trial's study-wide numbers (best so far, trials done).
Printers (plain lines, the live view, JSON) read only these.

>>> record(EpochEnded(number=3, epoch=2, epochs=10, value=float("nan"), worker="h:1"))["value"]
>>> sorted(record(TrialStarted(number=1, worker="h:1")))
['event', 'time', 'trial', 'worker']
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

from tunecb.oracle.outcome import TrialOutcome


@dataclass(frozen=True)
class SearchStarted:
    """Once, before the first trial."""

    name: str
    storage: str
    study_dir: str
    created: bool
    done: int
    best_value: float | None
    best_number: int | None
    n_trials: int | None
    monitor: str
    direction: str
    epochs: int
    mode: str  # inline, processes or dask
    workers: int  # trials run at a time
    notes: list[str] = field(default_factory=list)
    timeout: float | None = None


@dataclass(frozen=True)
class TrialStarted:
    """A worker started a trial (before the model is built)."""

    number: int
    worker: str  # host:pid of the process that runs it


@dataclass(frozen=True)
class EpochEnded:
    """A running trial ended an epoch (1 is the first); ``value`` is the monitored value,
    ``None`` when not finite."""

    number: int
    epoch: int
    epochs: int
    value: float | None
    worker: str


@dataclass(frozen=True)
class TrialFinished:
    """A trial was told to Optuna, with its whole outcome, and the study's state after it."""

    outcome: TrialOutcome
    worker: str
    best_value: float | None = None
    best_number: int | None = None
    done: int = 0
    n_trials: int | None = None


@dataclass(frozen=True)
class SearchEnded:
    """The end of a search: what ran, why it stopped, the best trial, the checkpoints."""

    name: str
    study_dir: str
    elapsed_s: float
    ran: dict[str, int]
    done: int
    stopped_by: str
    best: dict[str, Any] | None
    monitor: str
    direction: str
    checkpoints: int = 0  # best.keras files in the results folder at the end
    checkpoint_bytes: int = 0  # their total size
    checkpoints_removed: int = 0  # by --keep-checkpoints during this run (any process)
    keep_checkpoints: int | None = None


Event = SearchStarted | TrialStarted | EpochEnded | TrialFinished | SearchEnded

_NAMES = {
    SearchStarted: "start",
    TrialStarted: "trial_start",
    EpochEnded: "epoch",
    TrialFinished: "trial",
    SearchEnded: "summary",
}


def record(event: Event) -> dict[str, Any]:
    """An event as a JSON-ready dict: ``event`` (``start``, ``trial_start``, ``epoch``,
    ``trial``, ``summary``), its fields (a trial's number as ``trial``; a finished trial's
    outcome flattened, its best so far as ``best``) and ``time`` (Unix seconds);
    non-finite numbers become ``None``."""
    kind = _NAMES.get(type(event))
    if kind is None:
        raise TypeError(f"not a search event: {event!r}")
    if isinstance(event, TrialFinished):
        outcome = dataclasses.asdict(event.outcome)
        data = {
            "trial": outcome.pop("number"), **outcome, "worker": event.worker,
            "done": event.done, "n_trials": event.n_trials,
            "best": {"trial": event.best_number, "value": event.best_value},
        }  # fmt: skip
    else:
        data = dataclasses.asdict(event)
        if "number" in data:
            data = {"trial": data.pop("number"), **data}
    return _plain({"event": kind, **data, "time": round(time.time(), 3)})


def _plain(value: Any) -> Any:
    """JSON-friendly: non-finite floats → None, NumPy scalars → Python, the rest → str."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    item = getattr(value, "item", None)  # a NumPy scalar
    if callable(item):
        return _plain(item())
    return str(value)
