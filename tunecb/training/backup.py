"""Resume a trial whose worker died from its last backed-up epoch, not from epoch 0.

Keras' ``BackupAndRestore`` restores weights, optimizer and epoch, but not the other
callbacks' state (early-stopping patience, best value and checkpoint, plateau scheduler,
pruning history), and it hooks every batch (which makes Keras sync the logs after each
batch). :class:`TrialBackup` saves, at the end of an epoch, the weights with the
optimizer state and ``{name: callback.get_state()}`` of the trial's stateful callbacks
(:meth:`TrialCallbacks.stateful`); :func:`restore` puts all of it back, each callback
taking its own state (:mod:`tunecb.training.state`). Where the files go is
:class:`tunecb.results.BackupDir`'s to say.

One backup folder per original trial (``results/<study>/backups/<number>/``), stamped
with a fingerprint of the parameters and the study file: a rerun of the same trial with
the same parameters resumes; anything else starts from epoch 0 and the stale backup is
removed. The folder is removed when the trial ends (it is kept only when its worker dies
or the search is interrupted, for the rerun).

Backups are written at most every ``every`` seconds (``--backup-every``), so short epochs
do not pay for a save each; at most that much training is redone after a crash. The trial's
best checkpoint, kept in memory between backups
(:class:`~tunecb.training.best_checkpoint.BestCheckpoint`), is written before each backup: a
resume finds the best of its backed-up epochs in the file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tunecb.oracle.attrs import RETRY_HISTORY
from tunecb.results import (
    BackupDir,
    StudyDir,
    atomic_write,
    atomic_write_text,
    read_history,
    read_json,
)
from tunecb.training.best_checkpoint import model_bytes
from tunecb.training.callbacks import TrialCallbacks
from tunecb.training.state import collect_states, restore_states

log = logging.getLogger("tunecb")

FORMAT = 2
"""The layout of ``state.json``: 2 keeps the callbacks' states by name; 1 (no ``format``
key, tunecb before the state protocol) is still read."""


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
    """Saves weights, optimizer and our callbacks' states at the end of an epoch, at most
    every ``every`` seconds (``0``: every epoch). No per-batch hook.

    ``files`` is the trial's :class:`~tunecb.results.BackupDir` (or its folder)."""

    def __init__(
        self, files: BackupDir | Path, stamp: str, attempt: int, cbs: TrialCallbacks,
        every: float,
    ) -> None:  # fmt: skip
        super().__init__()
        self.files = files if isinstance(files, BackupDir) else BackupDir(Path(files))
        self.folder = self.files.folder
        self.stamp = stamp
        self.attempt = attempt
        self.cbs = cbs
        self.every = every
        self._last = time.monotonic()
        self.pending: dict[str, dict] | None = None  # states to put back at train begin

    def on_train_begin(self, logs: dict | None = None) -> None:
        # Keras has just called every callback's on_train_begin, which resets early stopping
        # and the plateau scheduler: put the saved states back now.
        if self.pending is not None:
            restore_states(self.cbs.stateful(), self.pending)
            self.pending = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.cbs.checkpoint.saved_epoch == epoch + 1:  # best.keras was just written (at
            self._record_checkpoint()  # once: a large model): say what it holds
        if time.monotonic() - self._last < self.every:
            return
        self.save(epoch + 1)
        self._last = time.monotonic()

    def _record_checkpoint(self) -> None:
        """Write what best.keras holds (``checkpoint.json``)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {"attempt": self.attempt, **self.cbs.checkpoint.get_state()}
        atomic_write_text(self.files.checkpoint_state, json.dumps(record), durable=False)

    def save(self, epochs_done: int) -> None:
        """Back up the model and the callbacks after ``epochs_done`` epochs, the best
        checkpoint written first (it is lazy: :class:`BestCheckpoint`), so that a resume
        from here finds the best of these epochs in its file."""
        if self.cbs.checkpoint.flush():
            self._record_checkpoint()
        self.folder.mkdir(parents=True, exist_ok=True)
        # A whole-model .keras file, not save_weights' .weights.h5: Keras writes that through
        # an HDF5 file on disk, which HDF5 cannot close once a write failed (a full disk), and
        # the process then dies of a segmentation fault at exit. A .keras file is built in
        # memory and written as a zip; model.load_weights reads both (optimizer included).
        weights = self.files.weights(epochs_done)
        atomic_write(
            weights, lambda tmp: self.model.save(tmp), suffix=".keras",
            needed=lambda: max(model_bytes(self.model), _size(self.cbs.checkpoint.path)),
        )  # fmt: skip
        state = {
            "format": FORMAT,
            "stamp": self.stamp,
            "attempt": self.attempt,
            "epoch": epochs_done,
            "weights": weights.name,
            "callbacks": collect_states(self.cbs.stateful()),
            "seeds": seed_states(self.model),
        }
        atomic_write_text(self.files.state, json.dumps(state))
        for old in self.files.stale_weights(keep=weights):
            old.unlink(missing_ok=True)


def seed_states(model: keras.Model) -> list[list[int]]:
    """The states of the model's random seed generators (dropout, noise layers), in layer
    order: ``model.save`` leaves them out, and a fit resumed without them draws its dropout
    masks from the start again."""
    return [
        np.asarray(keras.ops.convert_to_numpy(v.value)).reshape(-1).tolist()
        for v in model.variables
        if v.name == "seed_generator_state"
    ]


def set_seed_states(model: keras.Model, states: list[list[int]] | None) -> None:
    """Put saved seed-generator states back (none saved, or another layout: left as is)."""
    found = [v for v in model.variables if v.name == "seed_generator_state"]
    if not states or len(states) != len(found):
        return
    for variable, value in zip(found, states, strict=True):
        variable.assign(np.asarray(value, dtype=variable.dtype).reshape(variable.shape))


def _size(path: Path) -> int:
    """The size of ``path`` (the trial's best checkpoint: the same model), 0 if missing."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def written_at_pause(files: BackupDir, stamp: str, attempt: int, epoch: int) -> bool:
    """Whether the backup in ``files`` is the one trial ``attempt`` wrote when it paused
    after ``epoch`` epochs, for parameters ``stamp`` (a model kept in memory since then is
    the same model: :mod:`tunecb.training.kept_models`)."""
    state = read_json(files.state)
    return bool(state) and (state.get("stamp"), state.get("attempt"), state.get("epoch")) == (
        stamp, attempt, epoch,
    )  # fmt: skip


def restore(
    model: keras.Model,
    backup: TrialBackup,
    study_dir: StudyDir,
    number: int,
    trial: Any,
    monitor: str,
    put_back: Callable[[keras.Model], None] | None = None,
) -> int:
    """Put a matching backup back into ``model`` (now) and the callbacks (when training
    begins); return the epochs already done (0 when there is no usable backup). The
    history and best checkpoint of the attempt that wrote the backup are carried over to
    trial ``number``'s folder in ``study_dir``. ``put_back(model)``: the model is the one
    that wrote this backup, kept in memory (:func:`written_at_pause` said so); it puts its
    own copy of the variables back instead of reading the weights file."""
    files, stamp = backup.files, backup.stamp
    state = read_json(files.state)
    if not state:
        return 0
    if state.get("stamp") != stamp:
        log.info("backup in %s is for other parameters or study file; starting over", files.folder)
        discard(files.folder)
        return 0
    epochs = int(state["epoch"])
    if put_back is not None:
        put_back(model)
    else:
        try:
            if model.optimizer is not None and not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            model.load_weights(files.folder / state["weights"])
        except Exception as exc:  # a backup that does not fit this model: start over
            log.warning("cannot restore the backup in %s (%s); starting over", files.folder, exc)
            discard(files.folder)
            return 0
        set_seed_states(model, state.get("seeds"))
    source = int(state["attempt"])
    if study_dir.trial_dir(source) != study_dir.trial_dir(number):
        _carry_over(study_dir, source, number, epochs)
    backup.pending = callback_states(state, read_json(files.checkpoint_state))
    # A multi-objective study takes no report (tunecb.training.pareto_pruning records its own)
    single = len(getattr(getattr(trial, "study", None), "directions", ())) <= 1
    for step, value in _monitored(study_dir.history(number), monitor) if single else ():
        if step <= epochs:
            trial.report(value, step=step)  # the pruner sees the whole curve
    return epochs


def callback_states(state: dict, checkpoint: dict | None) -> dict[str, dict]:
    """The callbacks' states in a backup's ``state.json`` (of any :data:`FORMAT`), the best
    checkpoint's taken from its own, newer record ``checkpoint.json`` when there is one.

    >>> old = {"callbacks": {"epochs_run": 3, "base_lr": 0.1}}
    >>> callback_states(old, {"best": 0.9, "best_epoch": 2, "attempt": 0, "file": [1, 2]})
    ... # doctest: +NORMALIZE_WHITESPACE
    {'watch': {'epochs_run': 3}, 'history': {},
     'checkpoint': {'best': 0.9, 'best_epoch': 2, 'attempt': 0, 'file': [1, 2]},
     'lr_schedule': {'base_lr': 0.1}}
    """
    states = dict(state["callbacks"])
    if state.get("format") is None:  # format 1: a flat dict, written before get_state
        states = _from_format_1(states)
    if checkpoint:
        states["checkpoint"] = checkpoint
    return states


def _from_format_1(flat: dict[str, Any]) -> dict[str, dict]:
    states: dict[str, dict] = {"watch": {"epochs_run": flat["epochs_run"]}, "history": {},
                               "checkpoint": {}}  # fmt: skip
    if "early_stopping" in flat:
        states["early_stopping"] = flat["early_stopping"]
    if "plateau" in flat:
        states["plateau"] = flat["plateau"]
    elif flat.get("base_lr") is not None:
        states["lr_schedule"] = {"base_lr": flat["base_lr"]}
    return states


def _carry_over(study_dir: StudyDir, source: int, target: int, epochs: int) -> None:
    """Copy the dead attempt's history (its first ``epochs`` rows) and best checkpoint."""
    study_dir.trial_dir(target).mkdir(parents=True, exist_ok=True)
    if study_dir.checkpoint(source).exists():
        shutil.copy2(study_dir.checkpoint(source), study_dir.checkpoint(target))
    history = study_dir.history(source)
    if history.exists():
        with open(history, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        keep = [rows[0]] + [r for r in rows[1:] if r and int(float(r[0])) <= epochs]
        with open(study_dir.history(target), "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows(keep)


def _monitored(history: Path, monitor: str) -> list[tuple[int, float]]:
    return [
        (row["epoch"], row[monitor])
        for row in read_history(history)
        if isinstance(row.get("epoch"), int) and row.get(monitor) is not None
    ]


def discard(folder: Path) -> None:
    """Remove a trial's backup folder (the trial ended, or the backup does not match)."""
    shutil.rmtree(folder, ignore_errors=True)
