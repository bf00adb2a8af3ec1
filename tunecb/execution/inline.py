"""Trials in this process (``--jobs 0``): the launcher's own study, data loaded once.

>>> InlineExecutor().run(study, job, print)  # doctest: +SKIP
'budget'
"""

from __future__ import annotations

import optuna

from tunecb.execution._base import Emit, Executor, Job
from tunecb.execution.events import EpochEnded, TrialFinished, TrialStarted
from tunecb.oracle.attrs import worker_id
from tunecb.oracle.outcome import TrialOutcome
from tunecb.study.declaration import LoadedStudy
from tunecb.study.settings import Settings


class InlineExecutor:
    """The :class:`~tunecb.execution._base.Executor` that runs one trial at a time here,
    with the launcher's loaded study and settings (``job.loaded``, ``job.settings``)."""

    mode = "inline"
    workers = 1
    in_process = True

    def sized(
        self, left: int | None, settings: Settings, loaded: LoadedStudy
    ) -> tuple[Executor, list[str]]:
        """One trial at a time, whatever is left."""
        return self, []

    def run(self, study: optuna.Study, job: Job, emit: Emit) -> str:
        from tunecb.execution.worker import prepare_backend, run_trials_of

        if job.loaded is None or job.settings is None:
            raise ValueError("InlineExecutor needs the job's loaded study and settings")
        prepare_backend(None, job.debug)
        sink = EventSink(emit, worker_id(), job.epochs)
        return run_trials_of(study, job.loaded, job.settings, job.limits, sink)


class EventSink:
    """The :class:`~tunecb.execution._base.Sink` that turns reports into events, sent to
    ``emit`` as they happen.

    >>> EventSink(print, "host:1", epochs=3).started(7)
    TrialStarted(number=7, worker='host:1')
    """

    def __init__(self, emit: Emit, worker: str, epochs: int) -> None:
        self.emit, self.worker, self.epochs = emit, worker, epochs

    def started(self, number: int) -> None:
        self.emit(TrialStarted(number, self.worker))

    def epoch(self, number: int, epoch: int, value: float | None) -> None:
        self.emit(EpochEnded(number, epoch, self.epochs, value, self.worker))

    def finished(self, outcome: TrialOutcome) -> None:
        self.emit(TrialFinished(outcome, self.worker))
