"""How many trials run at once: the machine's cores and GPUs, ``--jobs auto``'s policy,
``--gpus``, and the cap every executor applies to an explicit ``--jobs N``.

Each executor sizes itself with these (:meth:`tunecb.execution._base.Executor.sized`); the
notes they return are shown word for word at the start of a search.

>>> capped(4, left=2)
(2, ['--jobs 4 capped to 2: 2 trials left to run'])
"""

from __future__ import annotations

import os

from tunecb.errors import ConfigError
from tunecb.wording import plural


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def gpu_visible() -> bool:
    """Whether an NVIDIA GPU is there for TensorFlow (without importing it): a driver device
    node, and ``CUDA_VISIBLE_DEVICES`` not hiding every GPU."""
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None and hidden.strip() in ("", "-1"):
        return False
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/gpus")


def auto_jobs(left: int | None, storage: str | None = None) -> tuple[int, str]:
    """``--jobs auto``: how many trials to run at once, and why, in a note.

    One worker process per core, each with one thread: the small models people tune on CPUs
    use a core far better one trial each than two threads on one fit (``benchmarks/
    scaling.py``: 1.5x the trials per hour on 2 cores). One trial at a time, in this
    process, on one core, with one trial left, with a GPU (one process should own it:
    ``--jobs N --gpus ...`` shares GPUs out), or with an in-memory database.

    >>> auto_jobs(1)[0]
    1
    """
    n = cores()
    if n < 2:
        return 1, "one core: trials run one at a time in this process"
    if gpu_visible():
        return 1, (
            "a GPU is visible: trials run one at a time in this process "
            "(--jobs N --gpus 0,1,... runs one worker per GPU)"
        )
    if storage is not None and ":memory:" in storage:
        return 1, "an in-memory storage: trials run one at a time in this process"
    if left is not None and left < 2:
        return 1, ""
    jobs = n if left is None else min(n, left)
    threads = max(1, n // jobs)
    return jobs, (
        f"{jobs} worker processes, one per core ({plural(threads, 'thread')}"
        " each); --jobs 0 runs trials one at a time in this process"
    )


def parse_gpus(text: str | None, jobs: int) -> tuple[str, ...]:
    """``--gpus 0,1`` → ``("0", "1")``; checked against ``--jobs``.

    >>> parse_gpus("0, 1", jobs=4)
    ('0', '1')
    """
    if not text:
        return ()
    gpus = tuple(g.strip() for g in text.split(",") if g.strip())
    if not gpus or not all(g.isdigit() for g in gpus):
        raise ConfigError(f"--gpus {text!r}: give GPU indexes separated by commas, e.g. 0,1")
    if len(set(gpus)) != len(gpus):
        raise ConfigError(f"--gpus {text!r}: a GPU is listed twice")
    return gpus


def capped(jobs: int, left: int | None, room: int | None = None) -> tuple[int, list[str]]:
    """``--jobs N`` capped at the ``room`` this machine has (its cores, for workers on it)
    and at the trials ``left``, with the note that says so.

    >>> capped(8, left=None, room=2)
    (2, ['--jobs 8 capped to 2: this machine has 2 cores'])
    >>> capped(3, left=0, room=4)
    (3, [])
    """
    limit, why = jobs, ""
    if room is not None and room < limit:
        limit, why = room, f"this machine has {room} cores"
    if left is not None and 0 < left < limit:
        limit, why = left, f"{plural(left, 'trial')} left to run"
    if limit == jobs:
        return jobs, []
    return limit, [f"--jobs {jobs} capped to {limit}: {why}"]
