"""A trial past its time limit whose epochs no longer end: its worker process is ended.

The trial's own callback (:class:`tunecb.training.time_limit.TimeLimit`) stops it at the
first epoch end past ``trial_timeout`` (or after an epoch longer than ``epoch_timeout``).
A trial stuck in a builder, a data step or a C++ op never reaches an epoch end: the
process that watches it (the ``--jobs`` supervisor) ends its worker once the limit has
passed by a grace (:class:`TrialClock`), fails the trial (``time_limit``: FAIL, counted,
not run again) and starts a new worker. Trials in the launcher's process cannot be ended
that way: with a time limit they run in one worker process
(:func:`tunecb.execution.choice.where_it_can_be_ended`).

>>> clock = TrialClock(trial_timeout=3.0, epoch_timeout=None)
>>> clock.start(7, now=100.0)
>>> clock.overdue(now=104.0) is None, clock.overdue(now=105.5)
(True, 'no epoch ended within the trial limit of 3 s (5.5 s): its process was ended')
"""

from __future__ import annotations

from dataclasses import dataclass

LOADING = -1  # the clock's "trial" while a new worker loads the study and the data
GRACE_S = 2.0  # past a limit, how long an epoch end may take to come before the process ends
EPOCHS_OF_GRACE = 2.0  # ... or this many of the trial's longest epochs, if longer


@dataclass
class TrialClock:
    """The running trial of one worker, timed from the supervisor's side: when it started
    and when its epochs ended (as the worker reported them)."""

    trial_timeout: float | None
    epoch_timeout: float | None
    number: int | None = None
    started: float = 0.0
    last_end: float = 0.0  # the last epoch end (or the start)
    longest_epoch: float = 0.0

    @property
    def limited(self) -> bool:
        return self.trial_timeout is not None or self.epoch_timeout is not None

    def loading(self, now: float) -> None:
        """A new worker's backend is up: it must load the study and its data and start its
        first trial within one trial's limit."""
        if self.limited:
            self.start(LOADING, now)

    def start(self, number: int, now: float) -> None:
        self.number, self.started, self.last_end, self.longest_epoch = number, now, now, 0.0

    def epoch(self, now: float) -> None:
        self.longest_epoch = max(self.longest_epoch, now - self.last_end)
        self.last_end = now

    def stop(self) -> None:
        self.number = None

    def overdue(self, now: float) -> str | None:
        """Why the running trial must be ended now (its limit passed, and no epoch end
        came within the grace), else ``None``.

        >>> clock = TrialClock(trial_timeout=None, epoch_timeout=1.0)
        >>> clock.start(0, now=0.0); clock.epoch(now=0.5)
        >>> clock.overdue(now=3.0) is None, clock.overdue(now=3.6) is not None
        (True, True)
        """
        if self.number is None:
            return None
        grace = max(GRACE_S, EPOCHS_OF_GRACE * self.longest_epoch)
        ran = now - self.started
        if self.number == LOADING:  # loading study and data may take as long as one trial
            limit = self.trial_timeout or self.epoch_timeout or 0.0
            if ran <= limit + GRACE_S:
                return None
            return (
                f"a worker did not load the study and its data within {limit:g} s (the limit "
                f"of one trial; {ran:.1f} s): the data function never returned?"
            )
        if self.trial_timeout is not None and ran > self.trial_timeout + grace:
            return (
                f"no epoch ended within the trial limit of {self.trial_timeout:g} s "
                f"({ran:.1f} s): its process was ended"
            )
        epoch = now - self.last_end
        if self.epoch_timeout is not None and epoch > self.epoch_timeout + GRACE_S:
            return (
                f"an epoch ran past the epoch limit of {self.epoch_timeout:g} s "
                f"({epoch:.1f} s): its process was ended"
            )
        return None
