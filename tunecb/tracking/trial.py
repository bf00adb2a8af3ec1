"""A trial's child run, from a worker process: opened when its fit begins, every epoch
logged as it ends, completed from the trial's records when the trial is over.

The trial runner holds one :class:`TrialTracking` per process (``None`` without
``--mlflow``). Nothing here fails a trial: a tracker that fails is logged at debug level,
paused (:data:`tunecb.tracking.mlflow_tracker.PAUSE`), and the trial's run is left without
its ``tunecb.recorded`` tag, which the launcher counts as the gap at the end.

Example (the trial runner does this)::

    tracking = TrialTracking.from_settings(settings)
    callbacks.append(tracking.callback(trial))
    ...
    tracking.trial_ended(trial, outcome, study_dir)
"""

from __future__ import annotations

import logging
from typing import Any

import keras

from tunecb.oracle import attrs as keys
from tunecb.results import StudyDir
from tunecb.study.settings import Settings
from tunecb.tracking._base import PARENT_RUN, TRIAL_RUN
from tunecb.tracking.records import trial_record

log = logging.getLogger("tunecb")


class TrialTracking:
    """The child runs of the trials this process runs."""

    def __init__(self, uri: str, experiment: str) -> None:
        self.uri, self.experiment = uri, experiment
        self._tracker: Any = None
        self._runs: dict[int, tuple[str, list[int]]] = {}  # number -> (run id, [last epoch])

    @classmethod
    def from_settings(cls, settings: Settings) -> TrialTracking | None:
        if not settings.mlflow:
            return None
        return cls(settings.mlflow, settings.mlflow_experiment or settings.name)

    def tracker(self) -> Any:
        if self._tracker is None:
            from tunecb.tracking.mlflow_tracker import MlflowTracker

            self._tracker = MlflowTracker(self.uri, self.experiment)
        return self._tracker

    def callback(self, trial: Any) -> keras.callbacks.Callback:
        """The Keras callback that opens the trial's run and logs its epochs."""
        return _EpochLogger(self, trial)

    def begin(self, trial: Any, resumed: int) -> None:
        """Open (or, for a resumed trial, reopen) the trial's child run."""
        study = getattr(trial, "study", None)  # a FixedTrial (tunecb rerun) has none
        if study is None or trial.number in self._runs:
            return
        tracker = self.tracker()
        parent = (study.user_attrs.get(PARENT_RUN) or {}).get("run_id")
        if not parent or not tracker.available():
            return
        try:
            previous = _previous_run(trial)
            run_id = tracker.start_trial(parent, trial.number, previous)
            trial.set_user_attr(TRIAL_RUN, run_id)
        except Exception as exc:
            self._failed(trial.number, "open its run", exc)
            return
        # a resumed trial's first epochs are in the run it continues; a new run gets them all
        self._runs[trial.number] = (run_id, [resumed if run_id == previous else 0])

    def log_epoch(self, number: int, epoch: int, logs: dict[str, Any]) -> None:
        run = self._runs.get(number)
        if run is None or not self.tracker().available():
            return
        values = {}
        for key, value in logs.items():
            try:
                values[key] = float(value)
            except (TypeError, ValueError):
                continue
        try:
            self.tracker().log_epoch(run[0], epoch, values)
            run[1][0] = epoch
        except Exception as exc:
            self._failed(number, f"log epoch {epoch}", exc)

    def trial_ended(self, trial: Any, outcome: Any, study_dir: StudyDir) -> None:
        """Complete the trial's run from its records (opened here if its fit never began)."""
        self.begin(trial, 0)
        run = self._runs.pop(trial.number, None)
        if run is None:
            return
        run_id, (last,) = run
        tracker = self.tracker()
        if not tracker.available():  # failed a moment ago: the gap is named at the end
            return
        try:
            if not tracker.flush(run_id):
                last = tracker.logged_epochs(run_id)
            tracker.finish_trial(run_id, trial_record(study_dir, trial.number, outcome), last)
        except Exception as exc:
            self._failed(trial.number, "record its end", exc)

    def _failed(self, number: int, what: str, exc: BaseException) -> None:
        from tunecb.tracking.mlflow_tracker import reason

        tracker = self.tracker()
        tracker.failed()
        log.debug("MLflow %s: trial %d: cannot %s: %s", tracker.shown, number, what,
                  reason(exc, self.uri))  # fmt: skip


def _previous_run(trial: Any) -> str | None:
    """The run of the attempt this trial resumes (a rerun of a trial whose worker died)."""
    attrs = getattr(trial, "system_attrs", None)
    if attrs is None:
        attrs = trial.storage.get_trial_system_attrs(trial._trial_id)
    previous = attrs.get(keys.FAILED_TRIAL)
    if previous is None:
        return None
    for other in trial.study.get_trials(deepcopy=False):
        if other.number == previous:
            return other.user_attrs.get(TRIAL_RUN)
    return None


class _EpochLogger(keras.callbacks.Callback):
    """Opens the trial's run when training begins and logs each epoch (no batch hook)."""

    def __init__(self, tracking: TrialTracking, trial: Any) -> None:
        super().__init__()
        self.tracking, self.trial = tracking, trial

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.trial.number not in self.tracking._runs:
            self.tracking.begin(self.trial, epoch)  # epoch: where a resumed fit starts

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.tracking.log_epoch(self.trial.number, epoch + 1, dict(logs or {}))
