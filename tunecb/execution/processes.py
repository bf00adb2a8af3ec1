"""``--jobs N``: worker processes on this machine sharing one study, supervised.

The launcher (``tunecb search``) opens the study, then starts N worker processes
(``spawn``: a fresh interpreter each, so the backend is set up per worker with its own
thread count and GPU). Each loads the study file and the data once and runs the trial
loop (:func:`tunecb.execution.worker.run_worker`) until the budget is spent.

Each worker reports on **its own pipe**; nothing is shared between workers but the
storage. (All workers once wrote to one ``multiprocessing.Queue``: a worker SIGKILLed
while it held the queue's write lock blocked every other worker, and the search, for
ever.) The launcher waits on every pipe and every process sentinel at once, so a worker
that dies at any instruction is seen at once and costs nothing but its own trial:

- a worker that reaches ``worker_trials`` trials or ``worker_memory_mb`` exits and is
  replaced (a long search keeps a flat memory profile);
- a worker killed by a signal from outside (SIGKILL, the OOM killer, SIGTERM) has its
  running trial failed (``worker_died``) and queued again, and is replaced, however often;
- a worker that fails on its own (an error in the study file: a one-line message on its
  pipe) stops the search with that message; one that crashes (a segfault) three times in
  a row without finishing a trial stops it with exit code 1;
- Ctrl-C (or an error in the launcher) sends every worker SIGINT: each fails and queues
  its trial (``interrupted``) and exits; one that has not within a second is killed, and
  the launcher does it for it.

Only standard ``multiprocessing`` is used, not joblib's loky pool: loky cannot replace
one worker (a dead worker breaks the whole pool) nor recycle a worker after some tasks.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

import optuna

from tunecb.errors import ConfigError, TunecbError, WorkerFault
from tunecb.execution._base import (
    RECYCLE_MEMORY,
    RECYCLE_TRIALS,
    STOP_BUDGET,
    STOP_TIMEOUT,
    Emit,
    Job,
    Limits,
    WorkerSpec,
)
from tunecb.execution.events import EpochEnded, TrialFinished, TrialStarted
from tunecb.execution.spawning import start_worker
from tunecb.oracle import attempts, attrs, budget
from tunecb.oracle.outcome import TrialOutcome

log = logging.getLogger("tunecb")

EXIT_FATAL = 3  # a worker met a problem the user must fix: stop the search
PR_SET_PDEATHSIG = 1  # linux/prctl.h
MAX_CRASHES_WITHOUT_PROGRESS = 3  # per slot: a worker that keeps crashing by itself
STOP_GRACE_S = 1.0  # after Ctrl-C, how long a worker has to fail and requeue its trial
# Signals that say nothing about the study: someone (or the kernel's OOM killer) ended it.
OUTSIDE_SIGNALS = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


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
        f"{jobs} worker processes, one per core ({threads} thread{'s' if threads > 1 else ''}"
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


@dataclass
class ProcessExecutor:
    """The :class:`~tunecb.execution._base.Executor` of ``--jobs N``; see the module doc.
    ``jobs=None`` is ``--jobs auto``: the launcher sizes it with :func:`auto_jobs`."""

    jobs: int | None
    gpus: tuple[str, ...] = ()
    threads_per_worker: int | None = None
    worker_trials: int | None = 50
    worker_memory_mb: float | None = 4096.0
    mode: str = "processes"

    @property
    def workers(self) -> int:
        return self.jobs

    def threads(self) -> int:
        """CPU threads each worker may use: its share of the cores, unless set."""
        if self.threads_per_worker is not None:
            return self.threads_per_worker
        return max(1, cores() // (self.jobs or 1))

    def worker_env(self, slot: int, backend: str = "tensorflow") -> dict[str, str]:
        """Environment of the worker in ``slot``: its backend and threads and, with
        ``--gpus``, its GPU.

        >>> ProcessExecutor(jobs=2, gpus=("0", "1")).worker_env(1)["CUDA_VISIBLE_DEVICES"]
        '1'
        """
        from tunecb.training.backends import worker_env

        env = worker_env(backend, self.threads())
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        return env

    def spec(self, job: Job, slot: int) -> WorkerSpec:
        limits = Limits(
            n_trials=job.limits.n_trials, deadline=job.limits.deadline,
            max_trials=self.worker_trials, max_rss_mb=self.worker_memory_mb,
        )  # fmt: skip
        return WorkerSpec(
            study_path=job.study_path, study_blob=job.study_blob, overrides=dict(job.overrides),
            limits=limits,
            env=self.worker_env(slot, job.backend),
            threads=self.threads(), debug=job.debug,
        )  # fmt: skip

    def run(self, study: optuna.Study, job: Job, emit: Emit) -> str:
        return _Supervisor(self, study, job, emit).run()


@dataclass
class _Slot:
    index: int
    process: Any = None
    conn: Any = None  # the read end of this worker's pipe
    wid: str = ""  # host:pid
    crashes: int = 0  # crashes in a row without a finished trial
    last_reason: str | None = None
    done: bool = False


class _Supervisor:
    def __init__(self, executor: ProcessExecutor, study: optuna.Study, job: Job, emit: Emit):
        self.executor, self.study, self.job, self.emit = executor, study, job, emit
        self.ctx = mp.get_context("spawn")
        self.slots = [_Slot(i) for i in range(executor.jobs)]
        self.stopping = False

    def run(self) -> str:
        try:
            for slot in self.slots:
                self._start(slot)
            while any(s.process is not None for s in self.slots):
                self._step(0.5)
        except BaseException:
            self.stopping = True
            self._stop_all()
            raise
        reasons = {s.last_reason for s in self.slots}
        return STOP_TIMEOUT if STOP_TIMEOUT in reasons else STOP_BUDGET

    def _start(self, slot: _Slot) -> None:
        read, write = self.ctx.Pipe(duplex=False)
        spec = self.executor.spec(self.job, slot.index)
        process = start_worker(
            self.ctx, worker_main, (spec,), f"tunecb-worker-{slot.index}", channel=write
        )  # never runs the parent's __main__ (a script without the __name__ guard)
        write.close()  # only the worker holds the write end: its death is our EOF
        slot.process, slot.conn, slot.wid = process, read, attrs.worker_id(process.pid)
        slot.last_reason = None
        log.debug("worker %d (pid %d) started", slot.index, process.pid)

    def _step(self, timeout: float) -> None:
        """Wait for a message or an exit, and handle what arrived."""
        waits = {}
        for slot in self.slots:
            if slot.conn is not None:
                waits[slot.conn] = slot
            if slot.process is not None:
                waits[slot.process.sentinel] = slot
        ready = mp.connection.wait(list(waits), timeout)
        for handle in ready:
            slot = waits[handle]
            if handle is slot.conn:
                self._drain(slot, block=False)
        for handle in ready:
            slot = waits[handle]
            if slot.process is not None and handle == slot.process.sentinel:
                self._exited(slot)

    def _drain(self, slot: _Slot, block: bool) -> None:
        """Handle what is in the slot's pipe (until it ends, with ``block``)."""
        conn = slot.conn
        try:
            while conn is not None and (block or conn.poll()):
                self._handle(slot, conn.recv())
        except (EOFError, OSError):  # the worker is gone (maybe mid-message)
            conn.close()
            slot.conn = None

    def _handle(self, slot: _Slot, message: tuple) -> None:
        kind = message[0]
        if kind == "started":
            self.emit(TrialStarted(message[1], slot.wid))
        elif kind == "epoch":
            _, number, epoch, value = message
            self.emit(EpochEnded(number, epoch, self.job.epochs, value, slot.wid))
        elif kind == "finished":
            slot.crashes = 0
            self.emit(TrialFinished(message[1], slot.wid))
        elif kind == "end":
            slot.last_reason = message[1]
        elif kind == "fatal":
            _, text, code, detail = message
            if detail:
                log.error("%s", detail)
            error = WorkerFault(text) if code == 1 else TunecbError(text)
            error.exit_code = code
            raise error

    def _exited(self, slot: _Slot) -> None:
        """A worker exited: finished, recycled, or dead (its trial runs again)."""
        process = slot.process
        process.join()
        self._drain(slot, block=True)  # what it sent before it exited; then EOF
        slot.process = None
        code = process.exitcode
        if code == 0 and slot.last_reason in (RECYCLE_TRIALS, RECYCLE_MEMORY):
            log.info("worker %d recycled (%s)", slot.index, slot.last_reason)
        elif code == 0 or self.stopping:
            slot.done = True
            return
        elif code == EXIT_FATAL:  # its one-line reason was lost with its pipe
            raise WorkerFault(
                f"worker {slot.index} stopped on an error it could not report; "
                "run with --debug, or without --jobs, to see it"
            )
        else:
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            rerun = attempts.fail_workers_trials(
                self.study, [slot.wid], attrs.WORKER_DIED, f"worker {how}"
            )
            log.warning("worker %d (pid %d) died (%s); trials run again: %s",
                        slot.index, process.pid, how, rerun)  # fmt: skip
            if code not in (130, EXIT_FATAL) and (code > 0 or -code not in OUTSIDE_SIGNALS):
                slot.crashes += 1
                if slot.crashes >= MAX_CRASHES_WITHOUT_PROGRESS:
                    raise WorkerFault(
                        f"worker {slot.index} crashed {slot.crashes} times without finishing "
                        f"a trial (last: {how}); run with --debug, or without --jobs, to see why"
                    )
        if budget.work_left(
            self.study.get_trials(deepcopy=False),
            self.job.limits.n_trials,
            self.job.limits.deadline,
        ):
            self._start(slot)
        else:
            slot.done = True

    def _stop_all(self) -> None:
        """Ctrl-C, an error: every worker fails and requeues its trial and exits (SIGINT,
        as a terminal's Ctrl-C); those that do not within ``STOP_GRACE_S`` are killed and
        their trials failed and requeued here."""
        live = [s for s in self.slots if s.process is not None]
        for slot in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.process.pid, signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_S
        while any(s.process.is_alive() for s in live) and time.monotonic() < deadline:
            for slot in live:  # keep their pipes flowing: a worker blocked on send can't exit
                with contextlib.suppress(Exception):
                    self._drain(slot, block=False)
            time.sleep(0.02)
        for slot in live:
            if slot.process.is_alive():
                slot.process.kill()
            slot.process.join()
            if slot.conn is not None:
                slot.conn.close()
                slot.conn = None
        with contextlib.suppress(Exception):  # a storage that is away: the next run recovers
            attempts.fail_workers_trials(
                self.study, [s.wid for s in live], attrs.INTERRUPTED, "the search stopped"
            )


class _PipeSink:
    """A worker's reports, on its own pipe. A pipe whose reader is gone means the launcher
    died: the worker stops as on Ctrl-C (its trial failed as interrupted and queued again),
    whichever comes first, the broken pipe or the parent-death signal."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def _send(self, message: tuple) -> None:
        try:
            self.conn.send(message)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise KeyboardInterrupt("the launcher is gone") from exc

    def started(self, number: int) -> None:
        self._send(("started", number))

    def epoch(self, number: int, epoch: int, value: float | None) -> None:
        self._send(("epoch", number, epoch, value))

    def finished(self, outcome: TrialOutcome) -> None:
        self._send(("finished", outcome))


def worker_main(spec: WorkerSpec, conn: Any) -> None:
    """Entry point of a worker process. Exits 0 when done or recycled, ``EXIT_FATAL`` on a
    problem the user must fix (after sending it), 130 when interrupted."""
    os.environ.update(spec.env)
    code = 0
    try:
        _stop_with_launcher()
        from tunecb.execution.worker import run_worker

        reason = run_worker(spec, _PipeSink(conn))
        conn.send(("end", reason))
    except KeyboardInterrupt:
        code = 130
    except TunecbError as exc:
        _send_fatal(conn, str(exc), exc.exit_code, "")
        code = EXIT_FATAL
    except BaseException as exc:
        detail = traceback.format_exc() if spec.debug else ""
        from tunecb.storage.failures import describe

        _send_fatal(conn, describe(exc), 1, detail)
        code = EXIT_FATAL
    os._exit(code)  # skip interpreter teardown (TensorFlow's can hang or print)


def _send_fatal(conn: Any, text: str, code: int, detail: str) -> None:
    # KeyboardInterrupt: the launcher is already stopping every worker (another one's fatal
    # error came first, e.g. two workers that found the disk full): exit without a traceback.
    with contextlib.suppress(OSError, KeyboardInterrupt):
        conn.send(("fatal", text, code, detail))


def _stop_with_launcher() -> None:
    """Stop this worker as Ctrl-C does (its trial failed and queued again) when the
    launcher dies, even by SIGKILL: Linux's parent-death signal. Without it an orphaned
    worker would go on running trials that nobody watches. SIGINT is also restored, for a
    launcher started with it ignored (a background job of a script)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGINT)
    if os.getppid() == 1:  # the launcher died before the line above
        raise KeyboardInterrupt
