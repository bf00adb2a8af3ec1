"""Which executor runs a search: the one place that lists them.

The worker options (``--jobs``, ``--dask``, ``--gpus``, ``--threads-per-worker``,
``--worker-trials``, ``--worker-memory``; the same keywords of ``tunecb.search()``) become
an executor here; the launcher then lets it size itself for the trials left
(:meth:`tunecb.execution._base.Executor.sized`). Adding an executor: its module in
:mod:`tunecb.execution`, and its line in :func:`choose`.

>>> choose(WorkerOptions(jobs=0)).mode
'inline'
>>> choose(WorkerOptions(jobs=2, worker_trials=5)).worker_trials
5
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from tunecb.errors import TunecbError
from tunecb.execution._base import Executor
from tunecb.execution.sizing import WORKER_MEMORY_MB, WORKER_TRIALS


@dataclass(frozen=True)
class WorkerOptions:
    """How trials run, as both front ends take it; ``jobs=None`` is ``$TUNECB_JOBS``, else
    ``auto``; ``0`` for a limit means none."""

    jobs: int | str | None = None
    threads_per_worker: int | None = None
    worker_trials: int | None = WORKER_TRIALS
    worker_memory: float | None = WORKER_MEMORY_MB
    gpus: str | None = None
    dask: str | None = None
    workers_per_gpu: int = 1

    @classmethod
    def of(cls, options: Any) -> WorkerOptions:
        """From parsed arguments or a mapping (names missing there keep their default).

        >>> WorkerOptions.of({"jobs": 3, "gpus": "0"}).jobs
        3
        """
        if isinstance(options, Mapping):
            given = {f.name: options[f.name] for f in fields(cls) if f.name in options}
        else:
            given = {
                f.name: getattr(options, f.name) for f in fields(cls) if hasattr(options, f.name)
            }
        return cls(**given)


def jobs_setting(flag: int | str | None) -> int | str:
    """``--jobs``, else ``$TUNECB_JOBS``, else ``"auto"``.

    >>> jobs_setting(3), jobs_setting("auto")
    (3, 'auto')
    """
    if flag is not None:
        return flag
    text = os.environ.get("TUNECB_JOBS", "").strip().lower()
    if not text or text == "auto":
        return "auto"
    if text.isdigit():
        return int(text)
    raise TunecbError(f"TUNECB_JOBS={text!r}: expected auto or an integer >= 0; unset it or fix it")


def choose(options: WorkerOptions) -> Executor:
    """The executor of these options, not yet sized: trials in this process (``--jobs 0``),
    on a Dask cluster (``--dask``; checked to answer, in seconds, before any study is
    touched), or in worker processes on this machine (``--jobs N``, ``--jobs auto``)."""
    jobs = jobs_setting(options.jobs)
    workers = {
        "worker_trials": options.worker_trials or None,
        "worker_memory_mb": options.worker_memory or None,
        "threads_per_worker": options.threads_per_worker,
    }
    if options.dask:
        if not isinstance(jobs, int) or jobs < 1:
            raise TunecbError("--dask needs --jobs N: how many workers to run on the cluster")
        from tunecb.execution.dask import DaskExecutor, connect

        connect(options.dask).close()  # fail in seconds, before any study is touched
        return DaskExecutor(options.dask, jobs=jobs, **workers)
    if options.gpus and not (isinstance(jobs, int) and jobs >= 1):
        raise TunecbError("--gpus needs --jobs N: each worker process gets its GPU")
    if (options.workers_per_gpu or 1) > 1 and not options.gpus:
        raise TunecbError(
            f"--workers-per-gpu {options.workers_per_gpu} needs --gpus: say which GPUs they share"
        )
    if jobs == 0:
        from tunecb.execution.inline import InlineExecutor

        return InlineExecutor()
    from tunecb.execution.processes import ProcessExecutor
    from tunecb.execution.sizing import parse_gpus

    return ProcessExecutor(
        jobs=None if jobs == "auto" else jobs,
        gpus=parse_gpus(options.gpus, jobs) if isinstance(jobs, int) else (),
        workers_per_gpu=options.workers_per_gpu or 1,
        **workers,
    )


def where_it_can_be_ended(executor: Any, settings: Any, loaded: Any) -> tuple[Any, list[str]]:
    """With a time limit, trials the launcher would run in its own process (``--jobs 0``,
    ``--jobs auto`` on one core, ``jobs=0`` in a notebook) run in one worker process
    instead, where a stuck one can be ended; the note that says so. A study that cannot be
    sent to a worker process keeps running here, with the epoch-end stop only (said too).

    >>> where_it_can_be_ended("executor", None, None)
    ('executor', [])
    """
    limited = settings is not None and (
        settings.trial_timeout is not None or settings.epoch_timeout is not None
    )
    if not limited or not getattr(executor, "in_process", False):
        return executor, []
    from tunecb.errors import TunecbError
    from tunecb.execution.processes import ProcessExecutor

    flag = "--trial-timeout" if settings.trial_timeout is not None else "--epoch-timeout"
    if loaded.in_code:
        try:
            loaded.portable()
        except TunecbError as exc:
            return executor, [
                f"{flag}: trials run in this process, stopped at an epoch end past the limit "
                f"but not if stuck inside one ({exc})"
            ]
    return ProcessExecutor(jobs=1), [
        f"{flag}: trials run one at a time in a worker process, where a trial stuck past "
        "its limit can be ended"
    ]


def within_memory(executor: Any, auto: bool, data_print: object) -> tuple[Any, list[str]]:
    """``--jobs auto``'s worker processes (sized for the cores) capped at what this machine's memory
    holds, each with its own copy of the data: its size from the study's data fingerprint
    (recorded by its first trial; nothing is capped before), the note that says so.

    >>> within_memory(object(), True, None)
    (<object object at ...>, [])
    """
    if not auto or getattr(executor, "mode", "") != "processes":
        return executor, []
    from dataclasses import replace

    from tunecb.execution.sizing import available_mb, data_mb, memory_cap

    jobs, note = memory_cap(executor.jobs, data_mb(data_print), available_mb())
    if not note:
        return executor, []
    return replace(executor, jobs=jobs), [note]
