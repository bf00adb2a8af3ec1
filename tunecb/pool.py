"""``--jobs N``: worker processes on this machine sharing one study, supervised.

The launcher (``tunecb search``) creates the storage and the study, then starts N worker
processes (``spawn``: a fresh interpreter each, so TensorFlow is set up per worker with
its own thread count and GPU). Each worker loads the study file and the data once and
runs :func:`tunecb.worker.run_trials` until the study's budget is spent.

The supervisor (this process) watches the workers:

- a worker that reaches ``worker_trials`` trials or ``worker_memory_mb`` of memory exits
  and is replaced (a long search keeps a flat memory profile);
- a worker that dies (SIGKILL, out of memory, segfault) has its running trial marked
  FAIL (``worker_died``) and queued again with the same parameters; it is replaced;
- Ctrl-C stops every worker; running trials are marked FAIL (``interrupted``).

Only standard ``multiprocessing`` is used here, not joblib's loky pool: loky cannot
replace one worker (a dead worker breaks the whole pool and kills the others' trials) nor
recycle a worker after some tasks. joblib serves the Dask backend (:mod:`tunecb.dask`).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import optuna
from optuna.trial import TrialState

from tunecb import budget
from tunecb.errors import ConfigError, SearchFailed, TunecbError
from tunecb.worker import (
    RECYCLE_MEMORY,
    RECYCLE_TRIALS,
    STOP_BUDGET,
    STOP_TIMEOUT,
    Limits,
    retry,
    tell_failed,
)

log = logging.getLogger("tunecb")

EXIT_FATAL = 3  # a worker met a problem the user must fix: stop the search
PR_SET_PDEATHSIG = 1  # linux/prctl.h
MAX_DEATHS_WITHOUT_PROGRESS = 3  # per slot: a worker that keeps dying at start is a bug


@dataclass(frozen=True)
class Execution:
    """How the trials are spread over processes (CLI flags, not study settings)."""

    jobs: int
    gpus: tuple[str, ...] = ()
    threads_per_worker: int | None = None
    worker_trials: int | None = 50
    worker_memory_mb: float | None = 4096.0
    dask: str | None = None  # a Dask scheduler address: run the workers there

    def threads(self) -> int:
        """CPU threads each worker may use: its share of the cores, unless set."""
        if self.threads_per_worker is not None:
            return self.threads_per_worker
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
        return max(1, cores // self.jobs)

    def worker_env(self, slot: int) -> dict[str, str]:
        """Environment of the worker in ``slot``: its threads and, with ``--gpus``, its GPU.

        >>> Execution(jobs=2, gpus=("0", "1")).worker_env(1)["CUDA_VISIBLE_DEVICES"]
        '1'
        """
        n = str(self.threads())
        env = {
            "TF_NUM_INTRAOP_THREADS": n,
            "TF_NUM_INTEROP_THREADS": "1" if self.jobs > 1 else "2",
            "OMP_NUM_THREADS": n,
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        }
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        return env


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


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs; plain data (pickled to a fresh interpreter)."""

    study_path: str
    overrides: dict[str, Any]
    slot: int
    generation: int
    env: dict[str, str]
    threads: int
    limits: Limits
    debug: bool = False


def worker_main(spec: WorkerSpec, events: Any, stop: Any) -> None:
    """Entry point of a worker process. Sends events; exits 0 when done or recycled,
    ``EXIT_FATAL`` on a problem the user must fix, 130 when interrupted."""
    os.environ.update(spec.env)
    code = 0
    try:
        _stop_with_launcher()
        reason = _work(spec, events, stop)
        events.put(("end", os.getpid(), reason))
    except KeyboardInterrupt:
        code = 130
    except TunecbError as exc:
        events.put(("fatal", os.getpid(), str(exc), exc.exit_code))
        code = EXIT_FATAL
    except BaseException as exc:
        detail = traceback.format_exc() if spec.debug else ""
        from tunecb.errors import first_line
        from tunecb.search import _is_storage_failure, storage_reason
        from tunecb.storage import redact_text

        if _is_storage_failure(exc):
            message = f"the storage failed during the search: {storage_reason(exc)}"
        else:
            message = f"worker error: {first_line(redact_text(f'{type(exc).__name__}: {exc}'))}"
        events.put(("fatal", os.getpid(), message, 1))
        if detail:
            events.put(("debug", os.getpid(), detail))
        code = EXIT_FATAL
    finally:
        events.close()
        events.join_thread()
    os._exit(code)  # skip interpreter teardown (TensorFlow's can hang or print)


def _stop_with_launcher() -> None:
    """Stop this worker as Ctrl-C does (its trial marked interrupted and queued again) when
    the launcher dies, even by SIGKILL: Linux's parent-death signal. Without it an orphaned
    worker would go on running trials that nobody watches. SIGINT is also restored, for a
    launcher started with it ignored (a background job of a script)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGINT)
    if os.getppid() == 1:  # the launcher died before the line above
        raise KeyboardInterrupt


def _work(spec: WorkerSpec, events: Any, stop: Any) -> str:
    pid = os.getpid()

    def on_outcome(outcome: Any) -> None:
        events.put(("trial", pid, vars(outcome).copy()))

    def on_progress(number: int, epoch: int, value: float | None) -> None:
        events.put(("progress", pid, number, epoch, value))

    return run_worker(
        spec, on_outcome, lambda study: stop.is_set(), lambda: events.put(("ready", pid)),
        on_progress,
    )  # fmt: skip


def run_worker(
    spec: WorkerSpec,
    on_outcome: Callable[[Any], None],
    should_stop: Callable[[optuna.Study], bool],
    on_ready: Callable[[], None] = lambda: None,
    on_progress: Callable[[int, int, float | None], None] | None = None,
) -> str:
    """The body of a worker, in whatever process it runs (ours, or a Dask worker's): set up
    TensorFlow, load the study file and the data once, run trials; returns why it stopped.
    ``on_progress``: see :data:`tunecb.trial.ProgressHook`."""
    if not spec.debug:
        from tunecb.tfimport import import_tensorflow_quietly

        import_tensorflow_quietly()
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):  # a Dask worker that ran TF keeps its setting
        tf.config.threading.set_intra_op_parallelism_threads(spec.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not spec.debug:  # as in the CLI: a lost connection is reported in one line
        logging.getLogger("optuna.storages._rdb.storage").setLevel(logging.ERROR)

    from tunecb.config import resolve
    from tunecb.opening import recover_dead_trials
    from tunecb.results import StudyDir
    from tunecb.retention import keeper
    from tunecb.search import load_data
    from tunecb.storage import study_storage
    from tunecb.strategies import make_pruner, make_sampler
    from tunecb.study import load_study_file
    from tunecb.trial import TrialRunner
    from tunecb.worker import run_trials

    loaded = load_study_file(spec.study_path)
    settings = resolve(
        loaded.study.settings, spec.overrides, default_name=loaded.default_name,
        study_path=loaded.path,
    )  # fmt: skip
    study_dir = StudyDir(settings.results / settings.name)
    storage = study_storage(settings.storage, study_dir.root, settings.heartbeat)
    # Each worker needs its own random stream, or seeded workers propose the same trials.
    seed = settings.seed
    if seed is not None:
        seed += 7919 * (spec.slot + 1) + spec.generation
    study = optuna.load_study(
        study_name=settings.name,
        storage=storage,
        sampler=make_sampler(settings.sampler, seed),
        pruner=make_pruner(settings.pruner, settings.epochs),
    )
    recover_dead_trials(study)  # e.g. a Dask worker on this machine that was killed
    runner = TrialRunner(loaded, settings, study_dir, load_data(loaded, settings), on_progress)
    on_ready()
    after_tell = keeper(study_dir, settings.keep_checkpoints)  # --keep-checkpoints K
    return run_trials(study, runner, spec.limits, on_outcome, should_stop, after_tell)


@dataclass
class _Slot:
    index: int
    process: Any = None
    generation: int = 0
    deaths_in_a_row: int = 0
    last_reason: str | None = None
    done: bool = False


@dataclass
class PoolResult:
    ran: Counter = field(default_factory=Counter)
    stopped_by: str = STOP_BUDGET


def run_pool(
    study: optuna.Study,
    execution: Execution,
    make_spec: Callable[[int, int, Limits], WorkerSpec],
    limits: Limits,
    on_trial: Callable[[Any], None],
    on_progress: Callable[[int, int, float | None, int], None] | None = None,
) -> PoolResult:
    """Run ``execution.jobs`` supervised worker processes until the budget is spent.

    ``make_spec(slot, generation, limits)`` describes a worker; ``on_trial(outcome)`` is
    called in this process for every finished trial (and may raise to stop the search);
    ``on_progress(number, epochs_done, value, slot)`` when a trial starts (0 epochs) and
    after each epoch.
    """
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    stop = ctx.Event()
    slots = [_Slot(i) for i in range(execution.jobs)]
    by_pid: dict[int, _Slot] = {}
    result = PoolResult()
    fatal: tuple[str, int] | None = None

    def start(slot: _Slot) -> None:
        spec = make_spec(slot.index, slot.generation, limits)
        process = ctx.Process(
            target=worker_main, args=(spec, events, stop), name=f"tunecb-worker-{slot.index}"
        )
        process.start()
        slot.process = process
        by_pid[process.pid] = slot
        log.debug("worker %d (pid %d) started", slot.index, process.pid)

    def handle(event: tuple) -> None:
        nonlocal fatal
        kind, pid = event[0], event[1]
        slot = by_pid.get(pid)
        if kind == "trial" and slot is not None:
            slot.deaths_in_a_row = 0
            outcome = SimpleNamespace(**event[2])
            result.ran[outcome.state] += 1
            on_trial(outcome)
        elif kind == "progress" and slot is not None and on_progress is not None:
            on_progress(event[2], event[3], event[4], slot.index)
        elif kind == "end" and slot is not None:
            slot.last_reason = event[2]
        elif kind == "fatal" and fatal is None:
            fatal = (event[2], event[3])
            stop.set()
        elif kind == "debug":
            log.error("%s", event[2])

    def drain(timeout: float) -> None:
        try:
            handle(events.get(timeout=timeout))
            while True:
                handle(events.get_nowait())
        except queue.Empty:
            pass

    try:
        for slot in slots:
            start(slot)
        while any(s.process is not None for s in slots):
            drain(0.2)
            if fatal is not None:
                message, code = fatal
                error = SearchFailed(message) if code == 1 else TunecbError(message)
                error.exit_code = code
                raise error
            for slot in slots:
                process = slot.process
                if process is None or process.is_alive():
                    continue
                process.join()
                drain(0.05)  # events the worker sent just before it exited
                slot.process = None
                _after_exit(study, slot, process, stop.is_set())
                if not slot.done and not stop.is_set() and work_left(study, limits):
                    slot.generation += 1
                    start(slot)
    except KeyboardInterrupt:
        stop.set()
        _interrupt(slots)
        _mark_orphans(study, by_pid, "interrupted", "interrupted by the user (SIGINT)")
        raise
    except BaseException:
        stop.set()
        _interrupt(slots)
        _mark_orphans(study, by_pid, "interrupted", "the search stopped")
        raise
    reasons = {s.last_reason for s in slots}
    result.stopped_by = STOP_TIMEOUT if STOP_TIMEOUT in reasons else STOP_BUDGET
    return result


def work_left(study: optuna.Study, limits: Limits) -> bool:
    """Whether a replacement worker would find a trial to run (no TensorFlow start for
    nothing)."""
    if limits.deadline is not None and time.time() >= limits.deadline:
        return False
    return budget.may_ask(study.get_trials(deepcopy=False), limits.n_trials)


def _after_exit(study: optuna.Study, slot: _Slot, process: Any, stopping: bool) -> None:
    """Decide what a worker's exit means: finished, recycled, or dead (rerun its trial)."""
    code = process.exitcode
    if code == 0 and slot.last_reason in (RECYCLE_TRIALS, RECYCLE_MEMORY) and not stopping:
        log.info("worker %d recycled (%s)", slot.index, slot.last_reason)
        slot.last_reason = None
        return
    if code == 0 or code == EXIT_FATAL or stopping:
        slot.done = True
        return
    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
    slot.deaths_in_a_row += 1
    orphans = _mark_orphans(study, {process.pid: slot}, "worker_died", f"worker {how}")
    log.warning("worker %d (pid %d) died (%s); trials run again: %s",
                slot.index, process.pid, how, orphans)  # fmt: skip
    if slot.deaths_in_a_row > MAX_DEATHS_WITHOUT_PROGRESS:
        raise TunecbError(
            f"worker {slot.index} died {slot.deaths_in_a_row} times without finishing a trial "
            f"(last: {how}); run with --debug, or without --jobs, to see why"
        )
    slot.last_reason = None


def _mark_orphans(study: optuna.Study, by_pid: dict[int, Any], reason: str, error: str) -> list:
    """Mark RUNNING trials of these worker processes FAIL and queue them again."""
    import socket

    ids = {f"{socket.gethostname()}:{pid}" for pid in by_pid}
    rerun = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get("worker") in ids:
            tell_failed(study, trial.number, reason, error)
            retry(study, study._storage.get_trial(trial._trial_id))
            rerun.append(trial.number)
    return rerun


def _interrupt(slots: list[_Slot], wait: float = 30.0) -> None:
    """Ask every live worker to stop (SIGINT, as a terminal's Ctrl-C does), then end it."""
    live = [s.process for s in slots if s.process is not None and s.process.is_alive()]
    for process in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGINT)
    deadline = time.monotonic() + wait
    for process in live:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
