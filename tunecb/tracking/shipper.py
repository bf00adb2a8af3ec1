"""A tracker off the fit's critical path: one background thread owns the tracker (it
imports and connects there, while the first trial already trains), epoch metrics go
through a queue and leave in batches (one request per run every :data:`INTERVAL` seconds),
and every other call runs in that thread in order, behind the epochs queued before it.

A call that fails pauses the tracker (:meth:`Tracker.failed`); while it is paused, calls
and epochs are dropped (the gap is counted at the end of the search), so a tracker that
went away never holds a trial up. Nothing here raises into the caller's thread.

>>> class Fake:
...     def available(self): return True
...     def failed(self): pass
...     def log_epochs(self, run_id, rows): sent.append((run_id, [r["epoch"] for r in rows]))
>>> sent = []
>>> shipper = Shipper(Fake, interval=60)
>>> shipper.epoch("run", 1, {"loss": 0.5}); shipper.epoch("run", 2, {"loss": 0.4})
>>> shipper.call(lambda tracker, shipper: "done").result(timeout=10)
'done'
>>> sent
[('run', [1, 2])]
>>> shipper.close(timeout=10)
True
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from tunecb.storage.urls import redact_text
from tunecb.tracking._base import close_tracker

log = logging.getLogger("tunecb")

INTERVAL = 2.0  # seconds between two batches of a run's epochs
Task = Callable[[Any, "Shipper"], Any]  # (tracker, the shipper) -> result


class Shipper:
    """The thread that owns one tracker; ``make`` builds the tracker in that thread."""

    def __init__(self, make: Callable[[], Any], interval: float = INTERVAL) -> None:
        self.interval = interval
        self.state: dict[str, Any] = {}  # the thread's own: whatever tasks keep there
        self._make = make
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._pending: dict[Any, list[dict[str, Any]]] = {}  # run (id, future) -> rows
        self._sent: dict[str, int] = {}  # run id -> last epoch it holds (-1: some lost)
        self.held: dict[str, int] = {}  # run id -> epochs it held before (not sent again)
        self._thread = threading.Thread(target=self._loop, name="tunecb-tracker", daemon=True)
        self._thread.start()

    def epoch(self, run: str | Future, epoch: int, metrics: dict[str, float]) -> None:
        """Queue one epoch's metrics (step = ``epoch``) of a run: its id, or the future of
        the :meth:`call` that opens it (queued before); never waits."""
        self._queue.put(("epoch", (run, {"epoch": epoch, **metrics})))

    def call(self, task: Task) -> Future:
        """Run ``task(tracker, shipper)`` in the thread after everything queued before it
        (the epochs too); its future holds the result, or ``None`` when the tracker was
        paused or the task failed."""
        future: Future = Future()
        self._queue.put(("call", (task, future)))
        return future

    def sent(self, run_id: str, forget: bool = False) -> int | None:
        """The last epoch of ``run_id`` sent (``None``: some were lost; 0: none sent).
        Read it from a task (in the thread); ``forget``: the run is over."""
        last = self._sent.pop(run_id, 0) if forget else self._sent.get(run_id, 0)
        if forget:
            self.held.pop(run_id, None)
        return None if last < 0 else last

    def close(self, timeout: float) -> bool:
        """Send what is queued and stop, waiting ``timeout`` seconds at most."""
        self._queue.put(("stop", None))
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        try:
            tracker = self._make()
        except Exception as exc:
            log.debug("tracker not opened: %s", exc)
            tracker = None
        sent_at = time.monotonic()
        while True:
            wait = max(0.0, sent_at + self.interval - time.monotonic()) if self._pending else None
            try:
                kind, item = self._queue.get(timeout=wait)
            except queue.Empty:
                kind, item = "send", None
            if kind == "epoch":
                self._pending.setdefault(item[0], []).append(item[1])
                if time.monotonic() < sent_at + self.interval:
                    continue
            if self._pending:
                self._send(tracker)
                sent_at = time.monotonic()
            if kind == "call":
                task, future = item
                future.set_result(self._run(tracker, task))
            elif kind == "stop":
                close_tracker(tracker)
                return

    def _send(self, tracker: Any) -> None:
        pending, self._pending = self._pending, {}
        for run, rows in pending.items():
            run_id = run.result() if isinstance(run, Future) else run  # done: called before
            if run_id is None or self._sent.get(run_id, 0) < 0:
                continue  # lost some already: the run's end fills in from the server
            if tracker is None or not tracker.available():
                self._sent[run_id] = -1
                continue
            rows = [row for row in rows if row["epoch"] > self.held.get(run_id, 0)]
            if not rows:
                continue
            try:
                tracker.log_epochs(run_id, rows)
                self._sent[run_id] = max(int(r["epoch"]) for r in rows)
            except Exception as exc:
                self._sent[run_id] = -1
                tracker.failed()
                log.debug("tracker: epochs of run %s not logged: %s", run_id, redact_text(str(exc)))

    def _run(self, tracker: Any, task: Task) -> Any:
        if tracker is None or not tracker.available():
            return None
        try:
            return task(tracker, self)
        except Exception as exc:
            tracker.failed()
            log.debug("tracker: a call failed: %s", redact_text(str(exc)))
            return None
