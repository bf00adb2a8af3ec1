"""Trials in this process (no ``--jobs``): the launcher's own study, data loaded once.

>>> InlineExecutor(loaded, settings, study_dir).run(study, job, print)  # doctest: +SKIP
'budget'
"""

from __future__ import annotations

import optuna

from tunecb.execution._base import Emit, Job
from tunecb.execution.events import EpochEnded, TrialFinished, TrialStarted
from tunecb.oracle.attrs import worker_id
from tunecb.oracle.outcome import TrialOutcome
from tunecb.results import StudyDir
from tunecb.study.declaration import LoadedStudy
from tunecb.study.settings import Settings


class InlineExecutor:
    """The :class:`~tunecb.execution._base.Executor` that runs one trial at a time here."""

    mode = "inline"
    workers = 1

    def __init__(self, loaded: LoadedStudy, settings: Settings, study_dir: StudyDir) -> None:
        self.loaded, self.settings, self.study_dir = loaded, settings, study_dir

    def run(self, study: optuna.Study, job: Job, emit: Emit) -> str:
        from tunecb.execution.loop import run_trials
        from tunecb.execution.worker import prepare_backend
        from tunecb.oracle.retention import keeper
        from tunecb.study.data import load_data

        prepare_backend(None, job.debug)
        from tunecb.training.runner import TrialRunner  # imports Keras: only when training

        me = worker_id()
        sink = _Sink(emit, me, job.epochs)
        data = load_data(self.loaded, self.settings)
        runner = TrialRunner(self.loaded, self.settings, self.study_dir, data, sink.epoch)
        after_tell = keeper(self.study_dir, self.settings.keep_checkpoints)
        return run_trials(
            study, runner, job.limits, sink, self.settings.seed, after_tell=after_tell
        )


class _Sink:
    def __init__(self, emit: Emit, worker: str, epochs: int) -> None:
        self.emit, self.worker, self.epochs = emit, worker, epochs

    def started(self, number: int) -> None:
        self.emit(TrialStarted(number, self.worker))

    def epoch(self, number: int, epoch: int, value: float | None) -> None:
        self.emit(EpochEnded(number, epoch, self.epochs, value, self.worker))

    def finished(self, outcome: TrialOutcome) -> None:
        self.emit(TrialFinished(outcome, self.worker))
