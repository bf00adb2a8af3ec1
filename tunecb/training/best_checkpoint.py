"""The best checkpoint of a trial (:class:`BestCheckpoint`): the whole model of its best
epoch so far as a ``.keras`` file, written lazily (kept in memory at each new best, written
once a fit and before every backup or pause), and the sizes a full disk must make room for.

>>> model_bytes(keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)]))
11328
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tunecb.results import atomic_write
from tunecb.training.monitor import Monitor
from tunecb.training.variables import all_variables, put_back, snapshot, variables_bytes

log = logging.getLogger("tunecb")


class BestCheckpoint(keras.callbacks.Callback):
    """Keeps the whole model of the best epoch so far as ``path`` (a ``.keras`` file).

    The file is written to a temporary name and renamed, so a crash never leaves a
    half-written checkpoint; epochs with a non-finite loss or value are never saved.
    ``best`` and ``best_epoch`` (1-based) are the trial's objective.

    Written lazily: a new best copies the model's and its optimizer's variables in memory
    (microseconds for a small model, where a ``.keras`` save costs about 0.1 s, as much as
    a short epoch), and :meth:`flush` writes that copy: when ``fit`` ends, and before every
    backup and pause (:class:`~tunecb.training.backup.TrialBackup`), so the file a resumed
    trial finds is its best as of its backed-up epoch. A model whose variables take more
    than :data:`LAZY_MAX_BYTES` is written at each new best instead (no second copy in
    memory). ``lazy=False`` writes at each new best too.
    """

    def __init__(self, path: Path, monitor: str, maximize: bool, lazy: bool = True) -> None:
        super().__init__()
        self.path = Path(path)
        self.monitor = Monitor(monitor, maximize)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.lazy = lazy
        self.saved_epoch: int | None = None  # the best epoch the file holds (this fit)
        self._pending: list[np.ndarray] | None = None  # the best's values, not yet written

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = self.monitor.usable(logs)
        if value is None or not self.monitor.improves(value, self.best):
            return
        variables = all_variables(self.model)
        if self.lazy and variables_bytes(variables) <= LAZY_MAX_BYTES:
            self._pending = snapshot(self.model, variables)
            self.best, self.best_epoch = value, epoch + 1
            return
        self._pending = None
        self._write()
        self.best, self.best_epoch = value, epoch + 1
        self.saved_epoch = self.best_epoch

    def on_train_end(self, logs: dict | None = None) -> None:
        self.flush()

    def flush(self) -> bool:
        """Write the best epoch's model if the file does not hold it yet; whether it wrote.
        The model's variables are the current epoch's again afterwards."""
        if self._pending is None:
            return False
        variables = all_variables(self.model)
        if len(variables) != len(self._pending):  # the copy was of another set of variables
            raise RuntimeError(
                f"cannot write {self.path}: the model has {len(variables)} variables (its "
                f"optimizer's included) now, {len(self._pending)} at its best epoch"
            )
        current = snapshot(self.model, variables)
        try:
            put_back(self.model, self._pending)
            self._write()
        finally:
            put_back(self.model, current)
        self._pending = None
        self.saved_epoch = self.best_epoch
        return True

    def _write(self) -> None:
        atomic_write(
            self.path, lambda tmp: self.model.save(tmp), suffix=".keras",
            needed=lambda: model_bytes(self.model),
        )  # fmt: skip

    def get_state(self) -> dict[str, Any]:
        """The best so far, with the identity of the file that holds it (written first, if
        it is pending: the state describes the file)."""
        self.flush()
        return {"best": self.best, "best_epoch": self.best_epoch, "file": file_identity(self.path)}

    def set_state(self, state: dict[str, Any]) -> None:
        # The best comes back only with the very file it describes: the state can be another
        # attempt's (a rerun killed before its first backup leaves its record beside the
        # older attempt's), or older than the file (killed between the two writes).
        if state.get("file") and state["file"] == file_identity(self.path):
            self.best, self.best_epoch = state["best"], state["best_epoch"]
            self.saved_epoch = self.best_epoch
        elif self.path.exists():
            log.info("the carried-over %s has no matching record; its best is found anew",
                     self.path)  # fmt: skip


LAZY_MAX_BYTES = 256 * 2**20
"""Above this size of a model's variables (its optimizer's included), the best checkpoint is
written at each new best rather than copied in memory."""


def file_identity(path: Path) -> list[int] | None:
    """``[size, mtime_ns]`` of a file (kept by a copy that preserves its times), or None."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def model_bytes(model: keras.Model) -> int:
    """About the size of ``model`` saved as ``.keras`` (what a full disk must make room for):
    its variables and its optimizer's, plus HDF5's ~1.5 KiB a variable and the config."""
    variables = all_variables(model)
    return 8192 + 1536 * len(variables) + variables_bytes(variables)
