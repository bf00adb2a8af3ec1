"""tunecb's Keras callbacks, and the factory that puts them in order for one trial.

Order (first to last): epoch seed (:mod:`~tunecb.training.epoch_seed`, set by the runner),
epoch watch (metric check + non-finite termination), learning-rate
schedule, best checkpoint, early stopping, history log, TensorBoard logs (``--tensorboard``),
the user's callbacks, pruning, then the epoch notice (the search's live progress).

The stateful ones (watch, schedule, checkpoint, early stopping, history) implement
``get_state``/``set_state`` (:mod:`tunecb.training.state`); :meth:`TrialCallbacks.stateful`
names them, and a trial's backup is their states by name. The monitored value is read
through one :class:`~tunecb.training.monitor.Monitor`.

None of them overrides a per-batch hook, so none runs Python per batch (on JAX, Keras then
also dispatches batch events asynchronously; its TensorFlow backend is not thread-safe and
never does). Non-finite values are therefore caught at the end of the epoch they appear in.

Example (a trial runner does this for you)::

    cbs = make_callbacks(trial, settings, schedule, folder, user_callbacks=[])
    model.fit(x, y, epochs=settings.epochs, callbacks=cbs.as_list())
    cbs.checkpoint.best, cbs.checkpoint.best_epoch, cbs.stop_reason()
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from tunecb import interrupts
from tunecb.errors import MonitorError
from tunecb.oracle import attrs as keys
from tunecb.oracle.pruning import should_prune
from tunecb.results import space_for
from tunecb.study import schedules
from tunecb.study.settings import Settings
from tunecb.training.best_checkpoint import BestCheckpoint
from tunecb.training.keras_state import TrialEarlyStopping, TrialReduceLROnPlateau
from tunecb.training.monitor import Monitor
from tunecb.training.rates import EpochLRSchedule, current_lr
from tunecb.training.state import Stateful

log = logging.getLogger("tunecb")


class EpochWatch(keras.callbacks.Callback):
    """Fails fast on a monitored metric the model does not log, counts epochs, stops
    training at the first epoch whose loss or monitored value is NaN or infinite, and
    raises a Ctrl-C that was lost inside the epoch."""

    def __init__(self, monitor: str) -> None:
        super().__init__()
        self.monitor = Monitor(monitor)
        self.epochs_run = 0
        self.non_finite_epoch: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        interrupts.check()  # a Ctrl-C whose KeyboardInterrupt was lost inside the epoch
        logs = logs or {}
        missing = self.monitor.missing_from(logs) if self.epochs_run == 0 else None
        if missing:
            raise MonitorError(missing)
        self.epochs_run += 1
        if self.monitor.usable(logs) is None:
            self.non_finite_epoch = epoch + 1
            self.model.stop_training = True

    def get_state(self) -> dict[str, Any]:
        return {"epochs_run": self.epochs_run}

    def set_state(self, state: dict[str, Any]) -> None:
        self.epochs_run = int(state["epochs_run"])


class HistoryLog(keras.callbacks.Callback):
    """Appends one CSV row per epoch (epoch, logged metrics, learning rate) to ``path``.

    Each row is flushed when its epoch ends, so a crash keeps the finished epochs.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._columns: list[str] | None = None
        self._lr: float | None = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._lr = current_lr(self.model)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        row = {k: v for k, v in (logs or {}).items() if k != "learning_rate"}
        row = {"epoch": epoch + 1, **row, "learning_rate": self._lr}
        new = self._columns is None
        if new:
            self._columns = list(row)
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=self._columns, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: _plain(v) for k, v in row.items()})
        data = text.getvalue().encode("utf-8")
        with space_for(self.path), open(self.path, "ab", buffering=0) as handle:
            start = handle.seek(0, io.SEEK_END)
            try:
                view = memoryview(data)
                while view:  # a raw write may write part of it
                    view = view[handle.write(view) :]
            except OSError:
                with contextlib.suppress(OSError):
                    handle.truncate(start)  # no half row: a resumed trial reads this file
                raise

    def get_state(self) -> dict[str, Any]:
        return {"columns": self._columns}

    def set_state(self, state: dict[str, Any]) -> None:
        # The file is the truth: new rows follow the header of the rows already in it (the
        # carried-over epochs); without a file, the next row writes the header again.
        try:
            with open(self.path, newline="", encoding="utf-8") as handle:
                self._columns = next(csv.reader(handle), None)
        except OSError:
            self._columns = None


def _plain(value: Any) -> Any:
    if isinstance(value, int | float | str) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback reduced to what a search compares: epoch scalars (step =
    epoch, from 0) in the ``train`` and ``validation`` runs under ``log_dir``; no graph,
    histograms, profiling or per-batch hook (Keras' own batch hook makes a summary call per
    metric at every batch even with ``update_freq="epoch"``, and turns off asynchronous batch
    dispatch on the backends that have it).

    A trial resumed from a backup (``fit(initial_epoch=k)``) first writes the ``k`` epochs
    of the dead attempt from its history (:meth:`resume_from`), into the same files.

    Example::

        model.fit(x, y, epochs=5, callbacks=[EpochTensorBoard("logs/trial_0")])
    """

    def __init__(self, log_dir: Path | str) -> None:
        super().__init__(
            log_dir=str(log_dir), histogram_freq=0, write_graph=False,
            update_freq="epoch", profile_batch=0,
        )  # fmt: skip
        self.carried: list[dict[str, float]] = []

    on_train_batch_begin = keras.callbacks.Callback.on_train_batch_begin
    on_train_batch_end = keras.callbacks.Callback.on_train_batch_end
    on_test_batch_begin = keras.callbacks.Callback.on_test_batch_begin

    def on_test_end(self, logs: dict | None = None) -> None:
        """Nothing: Keras' ``evaluation_*_vs_iterations`` repeat the validation scalars."""

    def resume_from(self, history: Path, epochs: int) -> None:
        """Log the first ``epochs`` rows of ``history`` (a :class:`HistoryLog` file) when
        training begins."""
        if not Path(history).exists():
            return
        with open(history, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                values = {k: _float(v) for k, v in row.items()}
                epoch = values.pop("epoch", None)
                if epoch is not None and 1 <= epoch <= epochs:
                    self.carried.append({"epoch": epoch, **values})

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        for row in self.carried:
            step = int(row["epoch"]) - 1
            for name, value in row.items():
                if name == "epoch" or value is None:
                    continue
                val = name.startswith("val_")
                with (self._val_writer if val else self._train_writer).as_default():
                    self.summary.scalar(f"epoch_{name[4:] if val else name}", value, step=step)
        self.carried = []

    def close(self) -> None:
        """Flush and close the files (``fit`` closes them, unless it raised)."""
        self._close_writers()


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class OptunaPruning(keras.callbacks.Callback):
    """Reports the monitored value to the Optuna trial every epoch (step = epochs done)
    and, when the pruner says so, stops training cleanly with ``stop_training``.

    It never raises inside ``fit``: every callback's ``on_train_end`` still runs (early
    stopping restores, the history is complete). The runner marks the trial PRUNED after
    ``fit`` returns, when ``pruned_at`` is set.
    """

    def __init__(self, trial: Any, monitor: str) -> None:
        super().__init__()
        self.trial = trial
        self.monitor = Monitor(monitor)
        self.pruned_at: int | None = None
        self.paused = False  # the pruner paused the trial at pruned_at (its backup is kept)
        # Called with the epochs done when the trial pauses, before any on_train_end (early
        # stopping's restore_best_weights) changes the weights: the runner saves the backup.
        self.on_pause: Any = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = self.monitor.value(logs)
        if value is None:
            return
        self.trial.report(value, step=epoch + 1)
        if should_prune(self.trial):  # Optuna's decision; finished trials read cheaply
            # A pruner that pauses (tunecb.study.promotion) means "stop here, resume later",
            # unless the fit stops here anyway (early stopping, NaN): nothing to resume.
            pruner = getattr(getattr(self.trial, "study", None), "pruner", None)
            self.paused = bool(getattr(pruner, "pauses", False))
            if self.paused and self.model.stop_training:
                self.paused = False
                return
            self.pruned_at = epoch + 1
            self.model.stop_training = True
            if self.paused and self.on_pause is not None:
                self.on_pause(epoch + 1)


class EpochNotice(keras.callbacks.Callback):
    """Calls ``notify(epochs_done, monitored_value)`` at the end of every epoch (the value is
    ``None`` when missing or not finite): the search's live progress. One call per epoch,
    no batch hook."""

    def __init__(self, monitor: str, notify: Any) -> None:
        super().__init__()
        self.monitor = Monitor(monitor)
        self.notify = notify

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.notify(epoch + 1, self.monitor.value(logs))


@dataclass
class TrialCallbacks:
    """The callbacks of one trial, in fit order, with handles on the ones we read back."""

    watch: EpochWatch
    checkpoint: BestCheckpoint
    history: HistoryLog
    pruning: OptunaPruning
    schedule: EpochLRSchedule | TrialReduceLROnPlateau | None = None
    early_stopping: TrialEarlyStopping | None = None
    user: list = field(default_factory=list)
    backup: keras.callbacks.Callback | None = None  # tunecb.training.backup.TrialBackup
    tensorboard: EpochTensorBoard | None = None
    notice: EpochNotice | None = None  # after pruning: it only reports progress
    time_limit: keras.callbacks.Callback | None = None  # tunecb.training.time_limit.TimeLimit
    seeder: keras.callbacks.Callback | None = None  # first: tunecb.training.epoch_seed

    def as_list(self) -> list[keras.callbacks.Callback]:
        ours = [self.seeder, self.watch, self.schedule, self.checkpoint, self.early_stopping,
                self.history, self.tensorboard]  # fmt: skip
        last = [c for c in (self.backup, self.time_limit, self.pruning, self.notice) if c]
        return [c for c in ours if c is not None] + list(self.user) + last

    def stateful(self) -> dict[str, Stateful]:
        """Our callbacks that carry state across a pause, by name (a backup's keys).

        >>> sorted(TrialCallbacks(EpochWatch("loss"), BestCheckpoint(Path("b"), "loss", False),
        ...        HistoryLog(Path("h")), OptunaPruning(None, "loss")).stateful())
        ['checkpoint', 'history', 'watch']
        """
        # The schedule's name says its kind: a backup of one never restores the other.
        lr = "plateau" if isinstance(self.schedule, TrialReduceLROnPlateau) else "lr_schedule"
        named = {"watch": self.watch, lr: self.schedule, "checkpoint": self.checkpoint,
                 "early_stopping": self.early_stopping, "history": self.history,
                 "time_limit": self.time_limit}  # fmt: skip
        return {name: cb for name, cb in named.items() if cb is not None}

    def stop_reason(self, epochs: int) -> str:
        """``nan``, ``paused``, ``pruned``, ``time_limit``, ``early_stopped`` or ``completed``."""
        if self.watch.non_finite_epoch is not None:
            return keys.NAN
        if self.pruning.pruned_at is not None:
            return keys.PAUSED if getattr(self.pruning, "paused", False) else keys.PRUNED
        if self.time_limit is not None and self.time_limit.hit is not None:
            return keys.TIME_LIMIT
        if self.watch.epochs_run < epochs:
            return keys.EARLY_STOPPED
        return keys.COMPLETED


def make_callbacks(
    trial: Any,
    settings: Settings,
    schedule: schedules.Schedule,
    checkpoint_path: Path,
    history_path: Path,
    user_callbacks: list | None = None,
    tensorboard_dir: Path | None = None,
) -> TrialCallbacks:
    """Our callbacks for one trial, configured from the resolved settings (with
    ``tensorboard_dir``: Keras' epoch scalars logged there)."""
    mode = "max" if settings.maximize else "min"
    lr_callback: EpochLRSchedule | TrialReduceLROnPlateau | None = None
    if isinstance(schedule, schedules.ReduceOnPlateau):
        lr_callback = TrialReduceLROnPlateau(
            monitor=settings.monitor,
            mode=mode,
            factor=schedule.factor,
            patience=schedule.patience,
            min_lr=schedule.min_lr,
            verbose=0,
        )
    elif isinstance(schedule, schedules.PerEpoch):
        lr_callback = EpochLRSchedule(schedule, settings.epochs)
    early = None
    if settings.patience is not None:
        early = TrialEarlyStopping(
            checkpoint_path,
            monitor=settings.monitor,
            mode=mode,
            patience=settings.patience,
            min_delta=settings.min_delta,
            restore_best_weights=True,
            verbose=0,
        )
    return TrialCallbacks(
        watch=EpochWatch(settings.monitor),
        schedule=lr_callback,
        checkpoint=BestCheckpoint(checkpoint_path, settings.monitor, settings.maximize),
        early_stopping=early,
        history=HistoryLog(history_path),
        user=list(user_callbacks or []),
        pruning=OptunaPruning(trial, settings.monitor),
        tensorboard=EpochTensorBoard(tensorboard_dir) if tensorboard_dir is not None else None,
    )
