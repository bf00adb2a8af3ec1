"""The contract of an experiment tracker, and the names tunecb stores about it.

A tracker records a search as one parent run (W&B: the search's run in the study's group)
and each trial as a child run. The launcher
opens it once (:meth:`Tracker.start_search`, which must fail fast when the tracker is
unreachable) and writes the parent run's id on the study, where every worker process reads
it; each worker's trial runner opens its own client on the same URI.

>>> TrialRecord(number=3, state="COMPLETE").tags()["tunecb.trial"]
'3'
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tunecb.errors import TunecbError

# Study user attr: {"uri": redacted URI, "experiment": name, "run_id": parent run id}.
PARENT_RUN = "mlflow_parent_run"
# Trial user attr: the trial's child run id (a resumed trial continues this run).
TRIAL_RUN = "mlflow_run"
# Tags on a child run; RECORDED is set last, so a run without it has a gap.
TAG_TRIAL, TAG_RECORDED, TAG_STUDY = "tunecb.trial", "tunecb.recorded", "tunecb.study"


@dataclass(frozen=True)
class Kind:
    """What the search's flow names differently per tracker: its messages, its flag and
    the study and trial attributes that hold its run ids.

    >>> WANDB.flag, WANDB.trial_attr
    ('--wandb', 'wandb_run')
    """

    label: str  # in messages: "MLflow 'uri' misses ..."
    flag: str  # the setting's flag, for the `tunecb sync` line
    parent_attr: str  # study user attr: {"uri", "experiment", "run_id"} of the search's run
    trial_attr: str  # trial user attr: the trial's run id
    # noted once a trial's run is complete, for a tracker that cannot be asked which runs
    # it holds (W&B offline): the study user attr "<it>.<number>" (a trial's run is
    # completed after the trial is told; older studies: a trial user attr); None: ask the
    # tracker (Tracker.recorded)
    recorded_attr: str | None = None

    def recorded_key(self, number: int) -> str:
        """The study user attr noting that trial ``number``'s run is complete.

        >>> WANDB.recorded_key(3)
        'wandb_recorded.3'
        """
        return f"{self.recorded_attr}.{number}"


MLFLOW = Kind("MLflow", "--mlflow", PARENT_RUN, TRIAL_RUN)
WANDB = Kind("W&B", "--wandb", "wandb_search_run", "wandb_run", "wandb_recorded")


class TrackingError(TunecbError):
    """The tracker cannot be reached or refuses (a fault from outside: exit code 1)."""

    exit_code = 1


@dataclass
class TrialRecord:
    """What a child run holds of one finished trial, read from tunecb's own records."""

    number: int
    state: str
    params: dict[str, Any] = field(default_factory=dict)
    value: float | None = None
    stop_reason: str | None = None
    seed: int | None = None
    best_epoch: int | None = None
    epochs_run: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch
    checkpoint: Path | None = None
    error: str | None = None

    def tags(self) -> dict[str, str]:
        """The run's tags: state, stop reason, seed, backend and versions."""
        tags = {TAG_TRIAL: str(self.number), "tunecb.state": self.state}
        for key in ("stop_reason", "seed", "best_epoch", "epochs_run"):
            value = getattr(self, key)
            if value is not None:
                tags[f"tunecb.{key}"] = str(value)
        for key, value in self.versions.items():
            tags[f"tunecb.{key}"] = str(value)
        if self.error:
            tags["tunecb.error"] = self.error[:4000]
        return tags


class Tracker(Protocol):
    """One tracking client (one per process)."""

    kind: Kind
    uri: str  # MLflow: the tracking URI; W&B: the project
    experiment: str  # MLflow: the experiment; W&B: the group (the study's name)
    shown: str  # the URI with its credentials redacted, for messages

    def start_search(self, name: str, previous: dict[str, Any] | None) -> str:
        """The parent run's id (``previous``'s run, reopened, when it still exists)."""
        ...

    def start_trial(self, parent: str, number: int, run_id: str | None) -> str:
        """The trial's child run id (``run_id`` reopened: a resumed trial)."""
        ...

    def log_epochs(self, run_id: str, rows: list[dict[str, Any]]) -> None:
        """Epoch rows ``{"epoch": n, metric: value}`` (step = epoch); called from the
        tracker's own thread (:mod:`tunecb.tracking.shipper`), so it may wait."""
        ...

    def finish_trial(self, run_id: str, record: TrialRecord, logged: int) -> None:
        """Params, tags, the epochs after ``logged``, the checkpoint; then RECORDED."""
        ...

    def end_search(self, parent: str, best: dict[str, Any] | None, report: Path | None) -> None:
        """The study's best and its HTML report on the parent run."""
        ...

    def abort(self, parent: str, status: str) -> None:
        """End the parent run with ``status`` (``KILLED``, ``FAILED``): the search stopped."""
        ...

    def available(self) -> bool:
        """False for a while after a request failed (the tracker is left alone)."""
        ...

    def failed(self) -> None:
        """A request failed: pause the tracker."""
        ...

    def recorded(self, parent: str) -> set[int]:
        """The numbers of the trials whose child run is complete (not asked when
        ``kind.recorded_attr`` is set: the trials note it)."""
        ...

    def logged_epochs(self, run_id: str) -> int:
        """The last epoch the run holds (0: none, or not known)."""
        ...

    def strays(self, parent: str, number: int) -> list[str]:
        """Runs of trial ``number`` never completed and whose id is not on the trial."""
        ...

    def discard(self, run_id: str) -> None: ...


class Pausing:
    """A tracker's pause after a failed request: :meth:`available` is False for ``PAUSE``
    seconds, so that a tracker that went away costs each trial one timeout at most."""

    PAUSE = 30.0
    _down_until = 0.0

    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def failed(self) -> None:
        self._down_until = time.monotonic() + self.PAUSE


def close_tracker(tracker: Any) -> None:
    """Close a tracker that holds something of its own (W&B's tracker process); others hold
    nothing. A failure to close is logged, never raised (the search's own work is done).

    >>> close_tracker(object())
    """
    close = getattr(tracker, "close", None)
    if close is not None:
        try:
            close()
        except Exception as exc:
            from tunecb.storage.urls import redact_text  # (imports Optuna: not at the top,
            # so that W&B's tracker process imports neither)

            logging.getLogger("tunecb").debug("tracker not closed: %s", redact_text(str(exc)))
