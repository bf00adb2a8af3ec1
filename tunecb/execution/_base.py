"""The contracts every way of running trials implements: :class:`Executor` and :class:`Sink`.

An :class:`Executor` runs trials of a study that the launcher has opened, until the
budget (:class:`Limits`) is spent, and reports through one ``emit`` callable the typed
events of :mod:`tunecb.execution.events`: :class:`TrialStarted`, :class:`EpochEnded`,
:class:`TrialFinished` (with the whole outcome). ``emit`` may raise (the first trials all
failed): the executor then stops every trial it runs, fails and requeues them, and lets
the exception go on. Ctrl-C does the same. ``run`` returns why the search stopped. Before
it runs, the launcher asks it to size itself (:meth:`Executor.sized`) for the trials left.

Wherever trials run (this process, a worker process, a Dask task), the trial loop reports
to a :class:`Sink`: a trial started, one of its epochs ended, it finished.

Executors: :mod:`.inline` (this process), :mod:`.processes` (worker processes on this
machine), :mod:`.dask` (tasks on a Dask cluster); :mod:`.choice` is the one place that
lists them. Several launchers or machines sharing one storage are several executors on one
study: the budget and the oracle rules (:mod:`tunecb.oracle`) make them agree without
talking to each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import optuna

from tunecb.oracle.outcome import TrialOutcome

if TYPE_CHECKING:
    from tunecb.study.declaration import LoadedStudy
    from tunecb.study.settings import Settings

STOP_BUDGET, STOP_TIMEOUT, STOP_REQUESTED = "budget", "timeout", "stopped"
RECYCLE_TRIALS, RECYCLE_MEMORY = "recycle_trials", "recycle_memory"


@dataclass(frozen=True)
class Limits:
    """When a worker stops asking for trials."""

    n_trials: int | None
    deadline: float | None = None  # time.time() after which no trial starts
    max_trials: int | None = None  # recycle the worker after this many trials
    max_rss_mb: float | None = None  # recycle the worker above this resident memory


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs; plain data (pickled to a fresh interpreter)."""

    study_path: str
    overrides: dict[str, Any]
    limits: Limits
    env: dict[str, str] = field(default_factory=dict)
    threads: int | None = None
    debug: bool = False
    study_blob: bytes | None = None  # instead of study_path: a study declared in code


@dataclass(frozen=True)
class Job:
    """What every executor is given: the study file and the flags (each worker process
    loads the file and applies them again), the limits, and the launcher's own loaded study
    and settings (for an executor that runs trials in this process)."""

    study_path: str
    overrides: dict[str, Any]
    limits: Limits
    epochs: int
    debug: bool = False
    backend: str = "tensorflow"  # the Keras backend every worker imports
    study_blob: bytes | None = None  # a study declared in code, by value (LoadedStudy.portable)
    loaded: LoadedStudy | None = None
    settings: Settings | None = None

    def worker_spec(
        self, *, max_trials: int | None, max_rss_mb: float | None, env: dict[str, str],
        threads: int | None,
    ) -> WorkerSpec:  # fmt: skip
        """The spec of one worker (a process, a Dask task) of this job: the job's budget
        and deadline with the worker's own recycling limits.

        >>> job = Job("s.py", {"epochs": 2}, Limits(10, deadline=5.0), epochs=2)
        >>> spec = job.worker_spec(max_trials=3, max_rss_mb=None, env={}, threads=1)
        >>> spec.limits
        Limits(n_trials=10, deadline=5.0, max_trials=3, max_rss_mb=None)
        """
        limits = Limits(
            n_trials=self.limits.n_trials, deadline=self.limits.deadline,
            max_trials=max_trials, max_rss_mb=max_rss_mb,
        )  # fmt: skip
        return WorkerSpec(
            study_path=self.study_path, study_blob=self.study_blob,
            overrides=dict(self.overrides), limits=limits, env=env, threads=threads,
            debug=self.debug,
        )  # fmt: skip


class Sink(Protocol):
    """Where the trial loop reports, in whatever process it runs (an executor turns these
    into events, a worker sends them on its pipe, a Dask task counts them). ``epoch`` is
    called by the trial runner after each epoch; ``value`` is ``None`` when not finite."""

    def started(self, number: int) -> None: ...

    def epoch(self, number: int, epoch: int, value: float | None) -> None: ...

    def finished(self, outcome: TrialOutcome) -> None: ...


Emit = Callable[[object], None]


class Executor(Protocol):
    """Runs trials of ``study`` until ``job.limits`` says stop; see the module docstring."""

    mode: str  # inline, processes, dask
    workers: int  # trials run at a time
    in_process: bool  # runs trials here, with the launcher's study (no copy for workers)

    def sized(
        self, left: int | None, settings: Settings, loaded: LoadedStudy
    ) -> tuple[Executor, list[str]]:
        """This executor fitted to ``left`` trials left (``None``: no limit), this machine
        and the study, and the notes that say why it changed (shown at the start)."""
        ...

    def run(self, study: optuna.Study, job: Job, emit: Emit) -> str:
        """Run trials, sending events to ``emit``; returns why the search stopped."""
        ...
