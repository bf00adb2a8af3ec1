"""How many trials run at once: the machine's cores and GPUs, ``--jobs auto``'s policy,
``--gpus``, and the cap every executor applies to an explicit ``--jobs N``; and how long a
worker lives (its defaults, one place for both front ends and every executor).

Each executor sizes itself with these (:meth:`tunecb.execution._base.Executor.sized`); the
notes they return are shown word for word at the start of a search.

>>> capped(4, left=2)
(2, ['--jobs 4 capped to 2: 2 trials left to run'])
"""

from __future__ import annotations

import os
import re

from tunecb.errors import ConfigError
from tunecb.wording import plural

WORKER_TRIALS = 50  # a worker process is replaced after this many trials (--worker-trials)
WORKER_MEMORY_MB = 4096.0  # ... and above this resident memory (--worker-memory)


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


WORKER_BASE_MB = 600.0  # a worker's own memory before its data: Python, Keras, the backend
DATA_COPIES = 2.0  # the arrays as loaded, and the backend's copy while a trial fits
_PART = re.compile(r"^(?P<dtype>[a-z]+\d*)\[(?P<dims>[\d,]*)\]$")


def data_mb(fingerprint: object) -> float | None:
    """The size in MiB of the arrays a data fingerprint describes (the study's ``data``
    attr: ``{"parts": {"train": "float32[1000,64] int64[1000]", ...}}``); ``None`` when it
    holds something else (a ``tf.data`` dataset, nothing recorded yet).

    >>> data_mb({"parts": {"train": "float32[1024,256] int64[1024]", "validation": None}})
    1.0078125
    """
    import numpy as np

    parts = fingerprint.get("parts") if isinstance(fingerprint, dict) else None
    if not isinstance(parts, dict):
        return None
    total = 0
    for text in parts.values():
        for item in str(text or "").split():
            match = _PART.match(item)
            if match is None:
                return None
            try:
                size = np.dtype(match["dtype"]).itemsize
            except TypeError:
                return None
            for dim in filter(None, match["dims"].split(",")):
                size *= int(dim)
            total += size
    return total / 2**20 if total else None


def available_mb() -> float | None:
    """Memory this machine can give new processes now (Linux ``MemAvailable``), within the
    cgroup's limit when there is one; ``None`` where it does not say."""
    available = None
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    try:
        with (
            open("/sys/fs/cgroup/memory.max") as limit,
            open("/sys/fs/cgroup/memory.current") as used,
        ):
            text = limit.read().strip()
            if text != "max":
                room = (int(text) - int(used.read().strip())) / 2**20
                available = room if available is None else min(available, room)
    except (OSError, ValueError):
        pass
    return available


def memory_cap(jobs: int, data: float | None, available: float | None) -> tuple[int, str]:
    """``jobs`` workers, or fewer when each one's copy of the data (``data`` MiB, times
    ``DATA_COPIES``, plus ``WORKER_BASE_MB``) would not fit in ``available`` MiB; the note
    that says so (``""`` when nothing changed).

    >>> memory_cap(8, data=1024.0, available=6000.0)[0]
    2
    >>> memory_cap(2, data=1.0, available=6000.0)
    (2, '')
    """
    if data is None or available is None or jobs < 2:
        return jobs, ""
    per_worker = WORKER_BASE_MB + DATA_COPIES * data
    fits = max(1, int(0.9 * available // per_worker))
    if fits >= jobs:
        return jobs, ""
    return fits, (
        f"--jobs auto: {plural(fits, 'worker')}, not {jobs}: each loads its own copy of the "
        f"data ({_gib(data)}; about {_gib(per_worker)} a worker) and {_gib(available)} of "
        "memory is available"
    )


def _gib(mb: float) -> str:
    return f"{mb / 1024:.1f} GiB" if mb >= 1024 else f"{mb:.0f} MiB"


def gpu_sharing_env(workers_per_gpu: int) -> dict[str, str]:
    """What each of ``workers_per_gpu`` (> 1) workers sharing one GPU is told, so that the
    first does not take the whole GPU: TensorFlow allocates on demand (memory growth), JAX
    allocates on demand up to its share, PyTorch allocates on demand by default.

    >>> gpu_sharing_env(2)["XLA_PYTHON_CLIENT_MEM_FRACTION"]
    '0.45'
    >>> gpu_sharing_env(1)
    {}
    """
    if workers_per_gpu < 2:
        return {}
    return {
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{0.9 / workers_per_gpu:.2f}",
    }
