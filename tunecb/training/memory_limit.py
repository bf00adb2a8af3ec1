"""``--worker-memory`` within a trial: a worker whose memory grows past its limit while a
trial trains stops that trial at the epoch end where it is seen.

Between trials, a worker above ``--worker-memory`` MiB is replaced by a fresh one
(:data:`tunecb.execution._base.RECYCLE_MEMORY`). A model that grows past the limit within
one trial (a leak per epoch, a cache that keeps growing) would go on until the kernel's
out-of-memory killer took the worker. So at each epoch end this callback reads the worker's
resident memory and, past the limit, raises :class:`WorkerMemoryExceeded`: the trial is a
memory death (:func:`tunecb.oracle.deaths.from_error`). The first time it runs again, in a
fresh worker (the memory may have been left by earlier trials in this one); the second time
it FAILs (``killed``: "out of memory 2 times (WorkerMemoryExceeded: ...)"). A worker already
above its limit when the fit begins (its data alone is that large) is not the trial's doing:
that trial is not stopped, and the worker is replaced after it, as before.

>>> MemoryLimit(limit_mb=None).limit_mb is None
True
"""

from __future__ import annotations

import os

import keras

from tunecb.oracle.deaths import rss_of


class WorkerMemoryExceeded(Exception):
    """The worker's resident memory passed ``--worker-memory`` while a trial trained."""


class MemoryLimit(keras.callbacks.Callback):
    """Raises :class:`WorkerMemoryExceeded` at the first epoch end where this process's
    resident memory is above ``limit_mb`` MiB (``None``: no limit), unless it was above it
    already when the fit began."""

    def __init__(self, limit_mb: float | None) -> None:
        super().__init__()
        self.limit_mb = limit_mb
        self.armed = False  # whether the worker was within its limit when the fit began

    def on_train_begin(self, logs: dict | None = None) -> None:
        rss = rss_of(os.getpid()) if self.limit_mb is not None else None
        self.armed = rss is not None and rss <= self.limit_mb  # type: ignore[operator]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.limit_mb is None or not self.armed:
            return
        rss = rss_of(os.getpid())
        if rss is not None and rss > self.limit_mb:
            raise WorkerMemoryExceeded(
                f"the worker grew to {rss:.0f} MiB RSS by epoch {epoch + 1}, over "
                f"--worker-memory {self.limit_mb:g} MiB"
            )
