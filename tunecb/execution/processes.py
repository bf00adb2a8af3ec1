"""``--jobs N``: worker processes on this machine sharing one study, supervised.

The launcher (``tunecb search``) opens the study, then starts N worker processes (forked
from a zygote that imported TensorFlow once, :mod:`.zygote`, else ``spawn``; each sets up
the backend with its own thread count and GPU). Each loads the study file and the data
once and runs the trial loop (:func:`tunecb.execution.worker.run_worker`) until the
budget is spent.

Each worker reports on **its own pipe**; nothing is shared between workers but the
storage. (All workers once wrote to one ``multiprocessing.Queue``: a worker SIGKILLed
while it held the queue's write lock blocked every other worker, and the search, for
ever.) The launcher waits on every pipe and every process sentinel at once, so a worker
that dies at any instruction is seen at once and costs nothing but its own trial:

- a worker that reaches ``worker_trials`` trials or ``worker_memory_mb`` exits and is
  replaced (a long search keeps a flat memory profile);
- a worker killed by a signal from outside (SIGKILL, the OOM killer, SIGTERM) has its
  running trial failed (``worker_died``) and queued again, and is replaced, however often;
  but a configuration whose worker dies again and again (the OOM killer's SIGKILL, a crash)
  fails for good after a stated number of deaths (:mod:`tunecb.oracle.deaths`);
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
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import optuna

from tunecb.errors import TunecbError, WorkerFault
from tunecb.execution._base import (
    RECYCLE_MEMORY,
    RECYCLE_TRIALS,
    STOP_BUDGET,
    STOP_TIMEOUT,
    Emit,
    Executor,
    Job,
    WorkerSpec,
)
from tunecb.execution.inline import EventSink, InlineExecutor
from tunecb.execution.sizing import (
    WORKER_MEMORY_MB,
    WORKER_TRIALS,
    auto_jobs,
    capped,
    cores,
    gpu_sharing_env,
)
from tunecb.execution.timeouts import LOADING, TrialClock
from tunecb.execution.zygote import Starts
from tunecb.oracle import attempts, attrs, budget, deaths
from tunecb.oracle.outcome import TrialOutcome
from tunecb.study.declaration import LoadedStudy
from tunecb.study.settings import Settings

log = logging.getLogger("tunecb")

EXIT_FATAL = 3  # a worker met a problem the user must fix: stop the search
PR_SET_PDEATHSIG = 1  # linux/prctl.h
MAX_CRASHES_WITHOUT_PROGRESS = 3  # per slot: a worker that keeps crashing by itself
STOP_GRACE_S = 1.0  # after Ctrl-C, how long a worker has to fail and requeue its trial
# Signals that say nothing about the study: someone (or the kernel's OOM killer) ended it.
OUTSIDE_SIGNALS = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


@dataclass
class ProcessExecutor:
    """The :class:`~tunecb.execution._base.Executor` of ``--jobs N``; see the module doc.
    ``jobs=None`` is ``--jobs auto``: :meth:`sized` picks the number (:func:`auto_jobs`)."""

    jobs: int | None
    gpus: tuple[str, ...] = ()
    threads_per_worker: int | None = None
    worker_trials: int | None = WORKER_TRIALS
    worker_memory_mb: float | None = WORKER_MEMORY_MB
    workers_per_gpu: int = 1  # --workers-per-gpu: workers sharing each of --gpus
    mode: ClassVar[str] = "processes"
    in_process: ClassVar[bool] = False

    @property
    def workers(self) -> int:
        return self.jobs

    def sized(
        self, left: int | None, settings: Settings, loaded: LoadedStudy
    ) -> tuple[Executor, list[str]]:
        """``--jobs auto``: one worker per core, or this process where that does not pay;
        ``--jobs N``: capped at the trials left and at this machine's cores (or GPUs).

        >>> ProcessExecutor(jobs=1).sized(left=None, settings=None, loaded=None)[1]
        []
        """
        if self.jobs is None:
            return self._auto(left, settings, loaded)
        room = max(cores(), len(self.gpus) * self.workers_per_gpu)
        jobs, notes = capped(self.jobs, left, room=room)
        return (self if jobs == self.jobs else replace(self, jobs=jobs)), notes

    def _auto(
        self, left: int | None, settings: Settings, loaded: LoadedStudy
    ) -> tuple[Executor, list[str]]:
        jobs, why = auto_jobs(left, settings.storage)
        if jobs >= 2 and loaded.in_code:
            try:
                loaded.portable()
            except TunecbError as exc:
                jobs, why = 1, f"trials run one at a time in this process: {exc}"
        notes = [f"--jobs auto: {why}"] if why and left != 0 else []
        if jobs < 2:
            return InlineExecutor(), notes
        return replace(self, jobs=jobs), notes

    def threads(self) -> int:
        """CPU threads each worker may use: its share of the cores, unless set."""
        if self.threads_per_worker is not None:
            return self.threads_per_worker
        return max(1, cores() // (self.jobs or 1))

    def worker_env(self, slot: int, backend: str = "tensorflow") -> dict[str, str]:
        """Environment of the worker in ``slot``: its backend and threads and, with
        ``--gpus``, its GPU (round robin; shared on demand with ``--workers-per-gpu N``).

        >>> ProcessExecutor(jobs=2, gpus=("0", "1")).worker_env(1)["CUDA_VISIBLE_DEVICES"]
        '1'
        """
        from tunecb.training.backends import worker_env

        env = worker_env(backend, self.threads())
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
            env.update(gpu_sharing_env(self.workers_per_gpu))
        return env

    def spec(self, job: Job, slot: int) -> WorkerSpec:
        """The spec of the worker in ``slot``; its environment names the search's tracker
        process, if one runs (:func:`tunecb.tracking.remote.shared_env`): the worker's
        trackers share it."""
        from tunecb.tracking.remote import shared_env

        return job.worker_spec(
            max_trials=self.worker_trials, max_rss_mb=self.worker_memory_mb,
            env={**self.worker_env(slot, job.backend), **shared_env()}, threads=self.threads(),
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
    rss_mb: float | None = None  # the worker's resident memory, last seen
    oom_kills: int | None = None  # the cgroup's OOM-kill count when it started
    clock: TrialClock | None = None  # its running trial's time (--trial-timeout)
    timed_out: tuple[int, str] | None = None  # (trial, why) when the clock ended it


class _Supervisor:
    def __init__(self, executor: ProcessExecutor, study: optuna.Study, job: Job, emit: Emit):
        self.executor, self.study, self.job, self.emit = executor, study, job, emit
        self.ctx = mp.get_context("spawn")
        self.starts = Starts(self.ctx, job.backend, job.debug)  # forked from a zygote, or spawned
        self.slots = [_Slot(i) for i in range(executor.jobs)]
        self.stopping = False
        settings = job.settings
        for slot in self.slots:
            slot.clock = TrialClock(
                getattr(settings, "trial_timeout", None), getattr(settings, "epoch_timeout", None)
            )

    def run(self) -> str:
        try:
            for slot in self.slots:
                self._start(slot)
            while any(s.process is not None for s in self.slots):
                self._step(0.5)
                self._end_overdue()
        except BaseException:
            self.stopping = True
            self._stop_all()
            raise
        finally:
            self.starts.close()
        reasons = {s.last_reason for s in self.slots}
        return STOP_TIMEOUT if STOP_TIMEOUT in reasons else STOP_BUDGET

    def _start(self, slot: _Slot) -> None:
        read, write = self.ctx.Pipe(duplex=False)
        spec = self.executor.spec(self.job, slot.index)
        process = self.starts.start(
            worker_main, (spec,), f"tunecb-worker-{slot.index}", channel=write, env=spec.env
        )  # never runs the parent's __main__ (a script without the __name__ guard)
        write.close()  # only the worker holds the write end: its death is our EOF
        slot.process, slot.conn, slot.wid = process, read, attrs.worker_id(process.pid)
        slot.last_reason = None
        slot.rss_mb, slot.oom_kills, slot.timed_out = None, deaths.oom_kills(), None
        slot.clock.stop()
        log.debug("worker %d (pid %d) started", slot.index, process.pid)

    def _step(self, timeout: float) -> None:
        """Wait for a message or an exit, and handle what arrived."""
        waits = {}
        for slot in self.slots:
            if slot.conn is not None:
                waits[slot.conn] = slot
            if slot.process is not None:
                waits[slot.process.sentinel] = slot
                slot.rss_mb = deaths.rss_of(slot.process.pid) or slot.rss_mb  # before it dies
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
        """A worker's message: a :class:`Sink` report (replayed as events), its end, or
        the one-line fault that stops the search."""
        kind = message[0]
        if kind in ("started", "epoch", "finished"):
            if kind == "finished":
                slot.crashes = 0
            _time(slot.clock, kind, message)
            getattr(EventSink(self.emit, slot.wid, self.job.epochs), kind)(*message[1:])
        elif kind == "loading":  # its backend is up; the study and data load: timed
            slot.clock.loading(time.monotonic())
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
        elif slot.timed_out is not None:  # ended here: its trial ran past its time limit
            number, why = slot.timed_out
            if number == LOADING:  # every new worker would hang the same way
                raise WorkerFault(f"{why} The search stops; fix the data function")
            attempts.fail(self.study, number, attrs.TIME_LIMIT, why)
            log.warning("trial %d failed: %s", number, why)
        elif code == EXIT_FATAL:  # its one-line reason was lost with its pipe
            raise WorkerFault(
                f"worker {slot.index} stopped on an error it could not report; "
                "run with --debug, or without --jobs, to see it"
            )
        else:
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            judged = self._bury(slot, code)
            rerun = [n for n, what in judged.items() if what == "requeued"]
            log.warning("worker %d (pid %d) died (%s); trials run again: %s",
                        slot.index, process.pid, how, rerun)  # fmt: skip
            if "failed" in judged.values():
                slot.crashes = 0  # a configuration failed for good: a trial finished
            elif code not in (130, EXIT_FATAL) and (code > 0 or -code not in OUTSIDE_SIGNALS):
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

    def _end_overdue(self) -> None:
        """End the worker of a trial past its time limit whose epochs no longer end
        (:mod:`.timeouts`); :meth:`_exited` fails the trial and starts a new worker."""
        now = time.monotonic()
        for slot in self.slots:
            why = slot.clock.overdue(now) if slot.process is not None else None
            if why is not None and slot.timed_out is None:
                slot.timed_out = (slot.clock.number, why)
                slot.process.kill()

    def _bury(self, slot: _Slot, code: int) -> dict[int, str]:
        """The dead worker's trials: run again, or failed for good when their configuration
        died too often (:mod:`tunecb.oracle.deaths`), judged with what this machine saw."""
        now = deaths.oom_kills()
        oom = None if now is None or slot.oom_kills is None else now > slot.oom_kills
        limit = deaths.memory_limit_mb()
        death = deaths.Death(
            signal.Signals(-code).name if code < 0 else f"exit code {code}",
            None if slot.rss_mb is None else round(slot.rss_mb, 1), oom,
            None if limit is None else round(limit, 1),
        )  # fmt: skip
        judged = attempts.bury_workers_trials(self.study, slot.wid, death)
        for number, what in judged.items():
            if what == "failed":
                error = self.study.get_trials(deepcopy=False)[number].user_attrs.get(attrs.ERROR)
                log.warning("trial %d failed: %s", number, error)
        return judged

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


def _time(clock: TrialClock, kind: str, message: tuple) -> None:
    """A worker's report, on its trial's clock (the supervisor's own time)."""
    if not clock.limited:
        return
    if kind == "started":
        clock.start(message[1], time.monotonic())
    elif kind == "epoch":
        clock.epoch(time.monotonic())
    else:
        clock.stop()


class _PipeSink:
    """The :class:`~tunecb.execution._base.Sink` of a worker process: each report, as
    ``(method, *arguments)``, on its own pipe. A pipe whose reader is gone means the launcher
    died: the worker stops as on Ctrl-C (its trial failed as interrupted and queued again),
    whichever comes first, the broken pipe or the parent-death signal."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def _send(self, message: tuple) -> None:
        try:
            self.conn.send(message)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise KeyboardInterrupt("the launcher is gone") from exc

    def loading(self) -> None:
        self._send(("loading",))

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
        from tunecb.tf_notices import tensorflow_filtered

        with tensorflow_filtered(show=spec.debug):  # a study file's own import too
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
