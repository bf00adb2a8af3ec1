"""What a search shows while it runs on a terminal or in a notebook: the live view's state.

Prints nothing (the front ends do): :class:`LiveState` follows the search events and renders a
``rich`` view (trials done / total, elapsed and remaining time, the best value so far, each
running trial's epoch); JSON records are
:func:`tunecb.execution.events.record`'s.

Example::

    state = LiveState()
    for event in events:  # tunecb.execution.events
        state.update(event)
    state.eta()  # seconds left, or None when unknown
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tunecb.wording import short


@dataclass
class Running:
    """A trial in progress: its epochs done (0: starting) and last monitored value."""

    worker: Any
    epoch: int = 0
    epochs: int | None = None
    value: float | None = None


class LiveState:
    """The search as the live view shows it, updated from events (thread-safe: the view
    renders from its own thread)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.monitor = ""
        self.done = 0
        self.n_trials: int | None = None
        self.deadline: float | None = None
        self.finished = 0  # trials this run finished
        self.last_finish = self.started
        self.best_value: float | None = None
        self.best_number: int | None = None
        self.running: dict[int, Running] = {}
        self.workers = 1
        self._lock = threading.Lock()

    def update(self, event: object) -> None:
        from tunecb.execution.events import EpochEnded, SearchStarted, TrialFinished, TrialStarted

        with self._lock:
            if isinstance(event, SearchStarted):
                self.started = self.clock()
                self.monitor, self.done, self.n_trials = event.monitor, event.done, event.n_trials
                self.workers = event.workers
                self.best_value, self.best_number = event.best_value, event.best_number
                if event.timeout is not None:
                    self.deadline = self.started + event.timeout
            elif isinstance(event, TrialStarted):
                # A worker runs one trial at a time: whatever it ran before is over (a
                # worker that died leaves its trial behind without a TrialFinished).
                for number in [n for n, r in self.running.items() if r.worker == event.worker]:
                    del self.running[number]
                self.running[event.number] = Running(event.worker)
            elif isinstance(event, EpochEnded):
                trial = self.running.setdefault(event.number, Running(event.worker))
                trial.epoch, trial.epochs, trial.value = event.epoch, event.epochs, event.value
            elif isinstance(event, TrialFinished):
                self.running.pop(event.outcome.number, None)
                self.finished += 1
                self.last_finish = self.clock()
                self.done, self.n_trials = event.done, event.n_trials
                self.best_value, self.best_number = event.best_value, event.best_number

    def eta(self) -> float | None:
        """Seconds until the search ends: the trials left at this run's pace (counting down
        from the last finished trial), capped by the ``--timeout`` deadline; ``None`` when
        unknown (no trial finished yet and no deadline).

        >>> now = [0.0]
        >>> state = LiveState(clock=lambda: now[0])
        >>> state.n_trials, state.done, state.finished, now[0] = 10, 4, 4, 8.0
        >>> state.last_finish = 8.0
        >>> state.eta()  # 6 trials left at 2 s each
        12.0
        """
        now = self.clock()
        guesses = []
        if self.n_trials is not None and self.finished:
            pace = (self.last_finish - self.started) / self.finished
            left = max(0, self.n_trials - self.done) * pace
            guesses.append(max(0.0, left - (now - self.last_finish)))
        if self.deadline is not None:
            guesses.append(max(0.0, self.deadline - now))
        return min(guesses) if guesses else None

    def render(self) -> Any:
        """The view: a bar with the counts and times, then one line per running trial."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        with self._lock:
            running = sorted(self.running.items())
            done, total = self.done, self.n_trials
            best = (
                f"best {self.monitor} {_num(self.best_value)} (#{self.best_number})"
                if self.best_number is not None
                else "best -"
            )
        elapsed = self.clock() - self.started
        eta = self.eta()
        counts = f"{done}/{total} trials" if total else f"{done} trials"
        line = Table.grid(padding=(0, 2))
        line.add_row(
            ProgressBar(total=total, completed=min(done, total or done), width=30),
            Text(counts, style="bold"),
            Text(f"{clock(elapsed)} elapsed"),
            Text(f"remaining {clock(eta) if eta is not None else '-'}", style="cyan"),
            Text(best, style="green"),
        )
        rows = [line]
        for number, trial in running:
            where = f"  pid {str(trial.worker).rpartition(':')[2]}" if self.workers > 1 else ""
            if trial.epoch == 0:
                rows.append(Text(f"  trial {number:>3}  starting{where}", style="dim"))
                continue
            budget = f"/{trial.epochs}" if trial.epochs else ""
            rows.append(
                Text(
                    f"  trial {number:>3}  epoch {trial.epoch:>3}{budget}  "
                    f"{self.monitor} {_num(trial.value)}{where}"
                )
            )
        return Group(*rows)


def clock(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``.

    >>> clock(65.4), clock(3725)
    ('1:05', '1:02:05')
    """
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _num(value: float | None) -> str:
    return short(value)
