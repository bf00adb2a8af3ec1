"""Resume a trial whose worker died from its last backed-up epoch, not from epoch 0.

Keras' ``BackupAndRestore`` restores weights, optimizer and epoch, but not the other
callbacks' state (early-stopping patience, best value and checkpoint, plateau scheduler,
pruning history), and it hooks every batch (which makes Keras sync the logs after each
batch). :class:`TrialBackup` saves, at the end of an epoch, the weights with the
optimizer state and the state of our callbacks; :func:`restore` puts all of it back.

One backup folder per original trial (``results/<study>/backups/<number>/``), stamped
with a fingerprint of the parameters and the study file: a rerun of the same trial with
the same parameters resumes; anything else starts from epoch 0 and the stale backup is
removed. The folder is removed when the trial ends (it is kept only when its worker dies
or the search is interrupted, for the rerun).

Backups are written at most every ``every`` seconds (``--backup-every``), so short epochs
do not pay for a save each; at most that much training is redone after a crash.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import keras

from tunecb.oracle.attrs import RETRY_HISTORY
from tunecb.results import atomic_write, atomic_write_text, read_history, read_json
from tunecb.training.callbacks import EpochLRSchedule, TrialCallbacks, model_bytes

log = logging.getLogger("tunecb")

STATE = "state.json"
CHECKPOINT_STATE = "checkpoint.json"


def fingerprint(params: dict[str, Any], study_sha256: str, epochs: int) -> str:
    """What a backup must match to be resumed: the trial's parameters, the study file and
    the epoch budget (schedules and pruning depend on it).

    >>> fingerprint({"lr": 0.1}, "abc", 10) == fingerprint({"lr": 0.1}, "abc", 10)
    True
    """
    text = json.dumps(
        {"params": params, "study": study_sha256, "epochs": epochs}, sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def origin(trial: Any) -> int:
    """The number of the first attempt of a trial (itself unless it is a rerun)."""
    attrs = getattr(trial, "system_attrs", None)  # a FrozenTrial has them; a Trial does not
    if attrs is None:
        attrs = trial.storage.get_trial_system_attrs(trial._trial_id)
    history = attrs.get(RETRY_HISTORY) or []
    return int(history[0]) if history else int(trial.number)


class TrialBackup(keras.callbacks.Callback):
    """Saves weights, optimizer and our callbacks' state at the end of an epoch, at most
    every ``every`` seconds (``0``: every epoch). No per-batch hook."""

    def __init__(
        self, folder: Path, stamp: str, attempt: int, cbs: TrialCallbacks, every: float
    ) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.stamp = stamp
        self.attempt = attempt
        self.cbs = cbs
        self.every = every
        self._last = time.monotonic()

    pending: tuple[dict, dict | None, Path] | None = None  # state to put back at train begin

    def on_train_begin(self, logs: dict | None = None) -> None:
        # Keras has just called every callback's on_train_begin, which resets early stopping
        # and the plateau scheduler: put the saved state back now.
        if self.pending is not None:
            _restore_callbacks(self.cbs, *self.pending)
            self.pending = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        ckpt = self.cbs.checkpoint
        if ckpt.best_epoch == epoch + 1:  # best.keras was just written: say what it holds
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(
                self.folder / CHECKPOINT_STATE,
                json.dumps({"best": ckpt.best, "best_epoch": ckpt.best_epoch,
                            "attempt": self.attempt, "file": _identity(ckpt.path)}),
                durable=False,
            )  # fmt: skip
        if time.monotonic() - self._last < self.every:
            return
        self.save(epoch + 1)
        self._last = time.monotonic()

    def save(self, epochs_done: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        # A whole-model .keras file, not save_weights' .weights.h5: Keras writes that through
        # an HDF5 file on disk, which HDF5 cannot close once a write failed (a full disk), and
        # the process then dies of a segmentation fault at exit. A .keras file is built in
        # memory and written as a zip; model.load_weights reads both (optimizer included).
        weights = f"weights-{epochs_done}.keras"
        atomic_write(
            self.folder / weights, lambda tmp: self.model.save(tmp), suffix=".keras",
            needed=lambda: max(model_bytes(self.model), _size(self.cbs.checkpoint.path)),
        )  # fmt: skip
        state = {
            "stamp": self.stamp,
            "attempt": self.attempt,
            "epoch": epochs_done,
            "weights": weights,
            "callbacks": _callback_state(self.cbs),
        }
        atomic_write_text(self.folder / STATE, json.dumps(state))
        for old in self.folder.glob("weights-*"):
            if old.name != weights:
                old.unlink(missing_ok=True)


def _size(path: Path) -> int:
    """The size of ``path`` (the trial's best checkpoint: the same model), 0 if missing."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _callback_state(cbs: TrialCallbacks) -> dict[str, Any]:
    state: dict[str, Any] = {"epochs_run": cbs.watch.epochs_run}
    es = cbs.early_stopping
    if es is not None:
        state["early_stopping"] = {"wait": es.wait, "best": _num(es.best),
                                   "best_epoch": es.best_epoch}  # fmt: skip
    schedule = cbs.schedule
    if isinstance(schedule, keras.callbacks.ReduceLROnPlateau):
        state["plateau"] = {"wait": schedule.wait, "best": _num(schedule.best),
                            "cooldown_counter": schedule.cooldown_counter}  # fmt: skip
    elif isinstance(schedule, EpochLRSchedule):
        state["base_lr"] = schedule.base_lr
    return state


def _num(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def restore(
    model: keras.Model,
    backup: TrialBackup,
    trial_dir: Path,
    attempt_dir: Any,
    trial: Any,
    monitor: str,
) -> int:
    """Put a matching backup back into ``model`` (now) and the callbacks (when training
    begins); return the epochs already done (0 when there is no usable backup).
    ``attempt_dir(number)`` is the folder of the attempt that wrote the backup, whose
    history and best checkpoint are carried over."""
    folder, stamp = backup.folder, backup.stamp
    state = read_json(folder / STATE)
    if not state:
        return 0
    if state.get("stamp") != stamp:
        log.info("backup in %s is for other parameters or study file; starting over", folder)
        discard(folder)
        return 0
    epochs = int(state["epoch"])
    try:
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(folder / state["weights"])
    except Exception as exc:  # a backup that does not fit this model: start over
        log.warning("cannot restore the backup in %s (%s); starting over", folder, exc)
        discard(folder)
        return 0
    source = Path(attempt_dir(int(state["attempt"])))
    if source != trial_dir:
        _carry_over(source, trial_dir, epochs)
    backup.pending = (state["callbacks"], read_json(folder / CHECKPOINT_STATE), trial_dir)
    for step, value in _monitored(trial_dir / "history.csv", monitor):
        if step <= epochs:
            trial.report(value, step=step)  # the pruner sees the whole curve
    return epochs


def _carry_over(source: Path, target: Path, epochs: int) -> None:
    """Copy the dead attempt's history (its first ``epochs`` rows) and best checkpoint."""
    target.mkdir(parents=True, exist_ok=True)
    if (source / "best.keras").exists():
        shutil.copy2(source / "best.keras", target / "best.keras")
    history = source / "history.csv"
    if history.exists():
        with open(history, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        keep = [rows[0]] + [r for r in rows[1:] if r and int(float(r[0])) <= epochs]
        with open(target / "history.csv", "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows(keep)


def _identity(path: Path) -> list[int] | None:
    """``[size, mtime_ns]`` of a file (kept by the copy that carries it over), or None."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def _restore_callbacks(
    cbs: TrialCallbacks, state: dict, checkpoint: dict | None, trial_dir: Path
) -> None:
    cbs.watch.epochs_run = int(state["epochs_run"])
    best_file = trial_dir / "best.keras"
    # The best value is put back only with the very file it describes: the record can be
    # another attempt's (a rerun killed before its first backup leaves its record beside
    # the older attempt's state), or older than the file (killed between the two writes).
    if checkpoint and checkpoint.get("file") and checkpoint.get("file") == _identity(best_file):
        cbs.checkpoint.best = checkpoint["best"]
        cbs.checkpoint.best_epoch = checkpoint["best_epoch"]
    elif best_file.exists():
        log.info("the carried-over %s has no matching record; its best is found anew", best_file)
    es = cbs.early_stopping
    if es is not None and "early_stopping" in state:
        saved = state["early_stopping"]
        es.wait, es.best_epoch = saved["wait"], saved["best_epoch"]
        if saved["best"] is not None:
            es.best = saved["best"]
        if es.restore_best_weights and (trial_dir / "best.keras").exists():
            es.best_weights = keras.saving.load_model(
                trial_dir / "best.keras", compile=False
            ).get_weights()
    schedule = cbs.schedule
    if isinstance(schedule, keras.callbacks.ReduceLROnPlateau) and "plateau" in state:
        saved = state["plateau"]
        schedule.wait, schedule.cooldown_counter = saved["wait"], saved["cooldown_counter"]
        if saved["best"] is not None:
            schedule.best = saved["best"]
    elif isinstance(schedule, EpochLRSchedule) and state.get("base_lr") is not None:
        schedule.base_lr = state["base_lr"]  # the optimizer's rate is already decayed
    history = trial_dir / "history.csv"
    if history.exists():
        with open(history, newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), None)
        cbs.history._columns = header


def _monitored(history: Path, monitor: str) -> list[tuple[int, float]]:
    return [
        (row["epoch"], row[monitor])
        for row in read_history(history)
        if isinstance(row.get("epoch"), int) and row.get(monitor) is not None
    ]


def discard(folder: Path) -> None:
    """Remove a trial's backup folder (the trial ended, or the backup does not match)."""
    shutil.rmtree(folder, ignore_errors=True)
