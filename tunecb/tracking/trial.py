"""A trial's child run, from a worker process: opened when its fit begins, its epochs
queued as they end and sent in batches by the tracker's own thread (:mod:`.shipper`),
completed from the trial's records when the trial is over, in that thread too (the next
trial starts meanwhile; the process's end waits for what is queued, :data:`END_WAIT`
seconds at most).

The trial runner holds one :class:`TrialTracking` per process and tracker (``None``
without ``--mlflow`` or ``--wandb``; :class:`Trackings` with both). Nothing here fails a
trial: a tracker that fails is logged at debug level, paused
(:class:`tunecb.tracking._base.Pausing`), and the trial's run is left without its
``tunecb.recorded`` mark, which the launcher counts as the gap at the end.

Example (the trial runner does this)::

    tracking = TrialTracking.from_settings(settings)
    callbacks.append(tracking.callback(trial))
    ...
    tracking.trial_ended(trial, outcome, study_dir)
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import keras

from tunecb.oracle import attrs as keys
from tunecb.results import StudyDir
from tunecb.study.settings import Settings
from tunecb.tracking._base import MLFLOW, Kind, TrialRecord
from tunecb.tracking.records import trial_record
from tunecb.tracking.shipper import Shipper
from tunecb.tracking.targets import Target, targets

log = logging.getLogger("tunecb")

END_WAIT = 30.0  # the most seconds a trial's end waits for its run to be open, and a
# process's end for its trials' runs to be completed
ASIDE = ".tracker"  # in the study's folder: checkpoints linked there until uploaded


class TrialTracking:
    """The child runs of the trials this process runs, through one :class:`Shipper`
    (started when the first fit begins, so opening the client and its first request overlap
    it; a ``tunecb rerun``, which tracks nothing, never starts it); the fit only queues."""

    def __init__(
        self, uri: str, experiment: str, make: Callable[[], Any] | None = None,
        kind: Kind = MLFLOW,
    ) -> None:  # fmt: skip
        self.uri, self.experiment, self.kind = uri, experiment, kind
        self._make = make or Target(kind, uri, experiment).tracker
        self.shipper: Shipper | None = None
        self._runs: dict[int, Future] = {}  # number -> the future of its run id

    @classmethod
    def from_settings(cls, settings: Settings) -> TrialTracking | Trackings | None:
        """The trackers' tracking (``None``: none is set)."""
        parts = [cls(t.uri, t.experiment, kind=t.kind) for t in targets(settings, settings.name)]
        return None if not parts else parts[0] if len(parts) == 1 else Trackings(parts)

    def callback(self, trial: Any) -> keras.callbacks.Callback:
        """The Keras callback that opens the trial's run and logs its epochs."""
        return _EpochLogger(self, trial)

    def begin(self, trial: Any, resumed: int) -> None:
        """Open (or, for a resumed trial, reopen) the trial's child run, in the thread."""
        study = getattr(trial, "study", None)  # a FixedTrial (tunecb rerun) has none
        if study is None or trial.number in self._runs:
            return
        parent = (study.user_attrs.get(self.kind.parent_attr) or {}).get("run_id")
        if not parent:
            return
        previous, number, kind = _previous_run(trial, self.kind.trial_attr), trial.number, self.kind

        def start(tracker: Any, shipper: Shipper) -> str:
            run_id = tracker.start_trial(parent, number, previous)
            # what the run holds already: the epochs of the attempt this one continues
            held = tracker.logged_epochs(run_id) if run_id == previous else 0
            shipper.state[run_id] = (held, resumed)
            shipper.held[run_id] = held  # a worker that died after its backup sent more
            _note(trial, kind.trial_attr, run_id)
            return run_id

        if self.shipper is None:
            self.shipper = Shipper(self._make)
        self._runs[number] = self.shipper.call(start)

    def log_epoch(self, trial: Any, epoch: int, logs: dict[str, Any]) -> None:
        """Queue one epoch (never waits)."""
        future = self._runs.get(trial.number)
        if future is None:
            return
        values = {}
        for key, value in logs.items():
            try:
                values[key] = float(value)
            except (TypeError, ValueError):
                continue
        self.shipper.epoch(future, epoch, values)  # type: ignore[union-attr]  # begun

    def trial_ended(self, trial: Any, outcome: Any, study_dir: StudyDir) -> None:
        """Complete the trial's run from its records (opened here if its fit never
        began), in the thread: the trial waits only for its run to be open (its id noted
        on it), :data:`END_WAIT` seconds at most. The checkpoint is linked aside first, so
        that ``--keep-checkpoints`` may delete it meanwhile."""
        self.begin(trial, 0)
        future = self._runs.pop(trial.number, None)
        if future is None:
            return
        record = _linked(trial_record(study_dir, trial.number, outcome), study_dir.root / ASIDE)

        def finish(tracker: Any, shipper: Shipper) -> bool:
            run_id = future.result()
            if run_id is None:
                return False
            held, resumed = shipper.state.pop(run_id, (0, 0))
            sent = shipper.sent(run_id, forget=True)
            if sent is None:  # some epochs were lost: ask the run what it holds
                sent, resumed = tracker.logged_epochs(run_id), -1
            rows = [row for row in record.history if _missing(row, held, resumed, sent)]
            tracker.finish_trial(run_id, dataclasses.replace(record, history=rows), 0)
            if self.kind.recorded_attr:  # a tracker that cannot be asked (W&B)
                _note_study(trial.study, self.kind.recorded_key(trial.number))
            return True

        done = self.shipper.call(finish)  # type: ignore[union-attr]  # begun
        if record.checkpoint is not None:  # sent, failed or skipped (a paused tracker)
            checkpoint = record.checkpoint
            done.add_done_callback(lambda _: _unlink_aside(checkpoint))
        try:  # its run's id noted on the trial before it is told (opened long ago, mostly)
            future.result(timeout=END_WAIT)
        except FutureTimeout:
            log.debug("tracker: trial %d's run not opened in %s s", trial.number, END_WAIT)

    def wait(self, timeout: float = END_WAIT) -> bool:
        """Wait for everything queued so far to be sent (``timeout`` seconds at most)."""
        if self.shipper is None:
            return True
        try:
            self.shipper.call(lambda tracker, shipper: True).result(timeout=timeout)
            return True
        except FutureTimeout:
            log.debug("tracker: what was queued not sent in %s s", timeout)
            return False

    def close(self, timeout: float = END_WAIT) -> bool:
        """Send what is queued and stop the thread (``timeout`` seconds at most)."""
        shipper, self.shipper = self.shipper, None
        return shipper is None or shipper.close(timeout)


class Trackings:
    """Several trackers' :class:`TrialTracking` as one (``--mlflow`` and ``--wandb``)."""

    def __init__(self, parts: list[TrialTracking]) -> None:
        self.parts = parts

    def callback(self, trial: Any) -> keras.callbacks.Callback:
        return _Both([part.callback(trial) for part in self.parts])

    def trial_ended(self, trial: Any, outcome: Any, study_dir: StudyDir) -> None:
        for part in self.parts:
            part.trial_ended(trial, outcome, study_dir)

    def wait(self, timeout: float = END_WAIT) -> bool:
        return all([part.wait(timeout) for part in self.parts])

    def close(self, timeout: float = END_WAIT) -> bool:
        return all([part.close(timeout) for part in self.parts])


def _previous_run(trial: Any, attr: str) -> str | None:
    """The run of the attempt this trial resumes (a rerun of a trial whose worker died)."""
    attrs = getattr(trial, "system_attrs", None)
    if attrs is None:
        attrs = trial.storage.get_trial_system_attrs(trial._trial_id)
    previous = attrs.get(keys.FAILED_TRIAL)
    if previous is None:
        return None
    for other in trial.study.get_trials(deepcopy=False):
        if other.number == previous:
            return other.user_attrs.get(attr)
    return None


def _linked(record: TrialRecord, folder: Path) -> TrialRecord:
    """``record`` with its checkpoint hard-linked (copied where links fail) into a new
    folder under ``folder`` (the study's: same file system), which the run's completion
    deletes: the checkpoint as the trial left it, whatever happens to the original.

    >>> _linked(TrialRecord(number=0, state="FAIL"), Path(".")).checkpoint is None
    True
    """
    if record.checkpoint is None:
        return record
    try:
        folder.mkdir(exist_ok=True)
        aside = Path(tempfile.mkdtemp(prefix=f"{record.number}-", dir=folder))
    except OSError:
        aside = Path(tempfile.mkdtemp(prefix="tunecb-tracked-"))
    aside = aside / record.checkpoint.name
    try:
        os.link(record.checkpoint, aside)
    except OSError:
        try:
            shutil.copyfile(record.checkpoint, aside)
        except OSError as exc:  # gone already: the run goes without it
            log.debug("tracker: checkpoint of trial %d not kept: %s", record.number, exc)
            shutil.rmtree(aside.parent, ignore_errors=True)
            return dataclasses.replace(record, checkpoint=None)
    return dataclasses.replace(record, checkpoint=aside)


def _note_study(study: Any, key: str) -> None:
    """That a trial's run is complete, on the study (the trial is told by then)."""
    try:
        study.set_user_attr(key, True)
    except Exception as exc:  # counted in the gap at the end
        log.debug("%s not noted: %s", key, exc)


def _unlink_aside(checkpoint: Path) -> None:
    """Delete a checkpoint linked aside, and the study's aside folder once empty."""
    shutil.rmtree(checkpoint.parent, ignore_errors=True)
    if checkpoint.parent.parent.name == ASIDE:
        with contextlib.suppress(OSError):  # another trial's is there
            checkpoint.parent.parent.rmdir()


def _note(trial: Any, attr: str, value: Any) -> None:
    """The run's id on the trial (a rerun continues the run), from the tracker's thread."""
    try:
        trial.set_user_attr(attr, value)
    except Exception as exc:  # told already (its end did not wait that long)
        log.debug("trial %d: %s not noted: %s", trial.number, attr, exc)


def _missing(row: dict[str, Any], held: int, resumed: int, sent: int) -> bool:
    """Whether a history row is not in the run yet: the run held epochs up to ``held``
    when this attempt opened it, and this attempt (whose fit began after epoch
    ``resumed``) sent those up to ``sent``.

    >>> [e for e in range(1, 8) if _missing({"epoch": e}, 2, 4, 6)]
    [3, 4, 7]
    """
    epoch = int(row.get("epoch") or 0)
    return epoch > held and not resumed < epoch <= sent


class _EpochLogger(keras.callbacks.Callback):
    """Opens the trial's run when training begins and logs each epoch (no batch hook)."""

    def __init__(self, tracking: TrialTracking, trial: Any) -> None:
        super().__init__()
        self.tracking, self.trial = tracking, trial

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.trial.number not in self.tracking._runs:
            self.tracking.begin(self.trial, epoch)  # epoch: where a resumed fit starts

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.tracking.log_epoch(self.trial, epoch + 1, dict(logs or {}))


class _Both(keras.callbacks.Callback):
    """The epoch loggers of several trackers as one callback."""

    def __init__(self, loggers: list[keras.callbacks.Callback]) -> None:
        super().__init__()
        self.loggers = loggers

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        for logger in self.loggers:
            logger.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for logger in self.loggers:
            logger.on_epoch_end(epoch, logs)
