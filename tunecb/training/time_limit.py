"""The per-trial and per-epoch time limits (``trial_timeout``, ``epoch_timeout``), where a
trial's epochs still end: stop at the first epoch end past a limit, as early stopping does
(``fit`` returns normally, every callback's ``on_train_end`` runs, the best checkpoint and
the history stay). The trial is COMPLETE with its best so far, stop reason ``time_limit``.

A trial whose epochs no longer end (stuck in user code or a C++ op) is ended from outside:
its worker process (:mod:`tunecb.execution.timeouts`).

A rerun does not get the full limit again when it resumes from its backup (a worker that
died, a Ctrl-C, a paused trial continued): the backup keeps the time the trial had run up to
it (:meth:`TimeLimit.get_state`), and the limit counts it. A rerun that starts over (no
backup) gets the whole limit, as its earlier work is lost too; so does the supervisor's
limit on a stuck attempt (it times each attempt alone).

>>> limit = TimeLimit(trial_timeout=None, epoch_timeout=None)
>>> limit.hit is None
True
"""

from __future__ import annotations

import time

import keras


class TimeLimit(keras.callbacks.Callback):
    """Sets ``model.stop_training`` at the first epoch end past ``trial_timeout`` seconds
    since ``started`` (``time.monotonic()`` when the trial began: building counts), or
    after an epoch that took longer than ``epoch_timeout``. ``hit`` says which, with the
    epoch (``"trial limit of 3 s passed after epoch 2"``), ``None`` while neither."""

    def __init__(
        self, trial_timeout: float | None, epoch_timeout: float | None, started: float | None = None
    ) -> None:
        super().__init__()
        self.trial_timeout, self.epoch_timeout = trial_timeout, epoch_timeout
        self.started = time.monotonic() if started is None else started
        self.epoch_started = self.started
        self.carried = 0.0  # seconds of earlier attempts, up to the backup resumed from
        self.hit: str | None = None

    def get_state(self) -> dict[str, float]:
        """The time the trial has run until now, earlier attempts' included: what its
        backup keeps."""
        return {"elapsed_s": round(time.monotonic() - self.started, 3)}

    def set_state(self, state: dict[str, float]) -> None:
        """Count the time of the attempts before the backup this trial resumes from."""
        elapsed = state.get("elapsed_s")
        if isinstance(elapsed, int | float) and elapsed > 0:
            self.carried += float(elapsed)
            self.started -= float(elapsed)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch_started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        now = time.monotonic()
        if self.trial_timeout is not None and now - self.started >= self.trial_timeout:
            self.hit = f"trial limit of {self.trial_timeout:g} s passed after epoch {epoch + 1}"
            if self.carried:
                self.hit += f" ({self.carried:.1f} s of it in earlier attempts)"
        elif self.epoch_timeout is not None and now - self.epoch_started >= self.epoch_timeout:
            took, limit = now - self.epoch_started, self.epoch_timeout
            self.hit = f"epoch limit of {limit:g} s passed: epoch {epoch + 1} took {took:.1f} s"
        if self.hit is not None:
            self.model.stop_training = True
