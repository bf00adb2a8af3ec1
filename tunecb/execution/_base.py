"""The one contract every way of running trials implements.

An :class:`Executor` runs trials of a study that the launcher has opened, until the
budget (:class:`Limits`) is spent, and reports through one ``emit`` callable the typed
events of :mod:`tunecb.execution.events`: :class:`TrialStarted`, :class:`EpochEnded`,
:class:`TrialFinished` (with the whole outcome). ``emit`` may raise (the first trials all
failed): the executor then stops every trial it runs, fails and requeues them, and lets
the exception go on. Ctrl-C does the same. ``run`` returns why the search stopped.

Executors: :mod:`.inline` (this process), :mod:`.processes` (worker processes on this
machine), :mod:`.dask` (tasks on a Dask cluster). Several launchers or machines sharing
one storage are several executors on one study: the budget and the oracle rules
(:mod:`tunecb.oracle`) make them agree without talking to each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import optuna

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
class Job:
    """What every executor is given: the study file and the flags (each worker process
    loads the file and applies them again), and the limits."""

    study_path: str
    overrides: dict[str, Any]
    limits: Limits
    epochs: int
    debug: bool = False
    backend: str = "tensorflow"  # the Keras backend every worker imports
    study_blob: bytes | None = None  # a study declared in code, by value (LoadedStudy.portable)


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


Emit = Callable[[object], None]


class Executor(Protocol):
    """Runs trials of ``study`` until ``job.limits`` says stop; see the module docstring."""

    mode: str  # inline, processes, dask
    workers: int  # trials run at a time

    def run(self, study: optuna.Study, job: Job, emit: Emit) -> str:
        """Run trials, sending events to ``emit``; returns why the search stopped."""
        ...
