"""``--dask tcp://HOST:PORT --jobs N``: the workers run as tasks on an existing Dask cluster.

joblib's Dask backend sends N worker tasks to the cluster at a time; each runs
:func:`tunecb.execution.worker.run_worker` (load the study file and the data once, run
trials until the budget is spent or the worker's trial limit is reached; then the next
task starts). The storage must be reachable from every Dask worker: an RDB URL
(PostgreSQL), or the journal file on a folder they all see; the results folder likewise.

This process does not hear from the tasks while they run: it follows the study in the
storage and sends the same events as the other executors (a trial's start and epochs as
they are stored, its outcome rebuilt from its user attributes). To stop (Ctrl-C, the
first trials all failing) it marks the study so that every task stops after its current
trial.

Time limits (``trial_timeout``, ``epoch_timeout``): a trial stops itself at the first epoch
end past its limit; one whose epochs no longer end (stuck in its builder, its data or a C++
op) is timed here from its stored epochs, as the ``--jobs`` supervisor times its workers
(:class:`tunecb.execution.timeouts.TrialClock`): past the limit and its grace, the trial
FAILs (``time_limit``) and its Dask worker is restarted by its nanny; the task it ran is
rescheduled by Dask and goes on with the next trial. A data function that never returns is
not seen here (no trial is running yet): Dask's own timeouts apply.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import optuna
from optuna.trial import TrialState

from tunecb.errors import ConfigError
from tunecb.execution._base import STOP_BUDGET, STOP_TIMEOUT, Emit, Executor, Job, WorkerSpec
from tunecb.execution.events import EpochEnded, TrialFinished, TrialStarted
from tunecb.execution.sizing import WORKER_MEMORY_MB, WORKER_TRIALS, capped
from tunecb.execution.timeouts import TrialClock
from tunecb.oracle import attempts, attrs, budget
from tunecb.oracle.outcome import TrialOutcome

if TYPE_CHECKING:
    from tunecb.study.declaration import LoadedStudy
    from tunecb.study.settings import Settings

log = logging.getLogger("tunecb")

STOP_ATTR = "tunecb_stop_run"


def connect(address: str, timeout: float = 5.0) -> Any:
    """A Dask client for ``address``, or a one-line :class:`ConfigError` in seconds."""
    try:
        from dask.distributed import Client
    except ImportError as exc:
        raise ConfigError("--dask needs dask.distributed: pip install 'tunecb[dask]'") from exc
    if "://" not in address:
        raise ConfigError(f"--dask {address!r}: give the scheduler address, e.g. tcp://host:8786")
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"--dask {address!r}: no Dask scheduler answered within {timeout:.0f} s ({reason}); "
            "start one (dask scheduler) or fix the address"
        ) from exc


class _CountingSink:
    """The :class:`~tunecb.execution._base.Sink` of a Dask task: it counts the trials it
    finished (the launcher follows the study in the storage)."""

    def __init__(self) -> None:
        self.trials = 0

    def started(self, number: int) -> None: ...

    def epoch(self, number: int, epoch: int, value: float | None) -> None: ...

    def finished(self, outcome: TrialOutcome) -> None:
        self.trials += 1


def dask_task(spec: WorkerSpec, run_id: str) -> dict[str, Any]:
    """One worker task on a Dask worker: trials until done; returns what it did."""
    from tunecb.execution.worker import run_worker

    os.environ.update({k: v for k, v in spec.env.items() if k != "CUDA_VISIBLE_DEVICES"})
    sink = _CountingSink()
    reason = run_worker(spec, sink, lambda study: study.user_attrs.get(STOP_ATTR) == run_id)
    return {"reason": reason, "trials": sink.trials, "pid": os.getpid()}


@dataclass
class DaskExecutor:
    """The :class:`~tunecb.execution._base.Executor` of ``--dask ADDRESS --jobs N``."""

    address: str
    jobs: int
    worker_trials: int | None = WORKER_TRIALS
    worker_memory_mb: float | None = WORKER_MEMORY_MB
    threads_per_worker: int | None = None
    poll_s: float = 0.5
    mode: ClassVar[str] = "dask"
    in_process: ClassVar[bool] = False

    @property
    def workers(self) -> int:
        return self.jobs

    def sized(
        self, left: int | None, settings: Settings, loaded: LoadedStudy
    ) -> tuple[Executor, list[str]]:
        """``--jobs N`` capped at the trials left (the cluster's size is its own).

        >>> DaskExecutor("tcp://h:8786", jobs=4).sized(3, None, None)[1]
        ['--jobs 4 capped to 3: 3 trials left to run']
        """
        jobs, notes = capped(self.jobs, left)
        return (self if jobs == self.jobs else replace(self, jobs=jobs)), notes

    def run(self, study: optuna.Study, job: Job, emit: Emit) -> str:
        import joblib

        client = connect(self.address)
        run_id = uuid.uuid4().hex
        settings = job.settings
        follower = _Follower(study, job.epochs, emit, lambda: TrialClock(
            getattr(settings, "trial_timeout", None), getattr(settings, "epoch_timeout", None)
        ))  # fmt: skip
        errors: list[BaseException] = []
        reasons: list[str] = []
        env = {
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
            "KERAS_BACKEND": job.backend,
        }
        spec = job.worker_spec(
            max_trials=self.worker_trials, max_rss_mb=self.worker_memory_mb, env=env,
            threads=self.threads_per_worker,
        )  # fmt: skip

        def tasks():
            while not errors and budget.work_left(
                study.get_trials(deepcopy=False), job.limits.n_trials, job.limits.deadline
            ):
                yield joblib.delayed(dask_task)(spec, run_id)

        def drive() -> None:
            try:
                with joblib.parallel_config(
                    backend="dask", client=client, wait_for_workers_timeout=30
                ):
                    for done in joblib.Parallel(
                        n_jobs=self.jobs, pre_dispatch="n_jobs", return_as="generator_unordered"
                    )(tasks()):
                        reasons.append(done["reason"])
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=drive, name="tunecb-dask", daemon=True)
        thread.start()
        try:
            while thread.is_alive():
                thread.join(self.poll_s)
                follower.poll()
                for number, worker, why in follower.overdue():
                    _end_overdue(client, study, number, worker, why)
            follower.poll()
        except BaseException:
            study.set_user_attr(STOP_ATTR, run_id)  # tasks stop after their current trial
            raise
        finally:
            if thread.is_alive():
                thread.join(0.5)  # a daemon thread: Ctrl-C is answered at once
            client.close()
        if errors:
            raise errors[0]
        return STOP_TIMEOUT if STOP_TIMEOUT in reasons else STOP_BUDGET


def _end_overdue(client: Any, study: optuna.Study, number: int, worker: str, why: str) -> None:
    """Fail trial ``number`` (past its time limit, its epochs no longer ending) and restart
    the Dask worker that runs it (``worker``: the trial's ``host:pid``)."""
    if attempts.fail(study, number, attrs.TIME_LIMIT, why) is None:
        return  # it finished meanwhile
    log.warning("trial %d failed: %s", number, why)
    pid = worker.rpartition(":")[2]
    try:  # the worker's event loop answers while a task thread of it is stuck
        pids = client.run(os.getpid, on_error="return")
        found = [address for address, got in pids.items() if str(got) == pid]
        if found:
            client.restart_workers(found, timeout=60, raise_for_error=False)
    except Exception as exc:  # the trial is failed: its worker only holds a core
        log.warning("the Dask worker of trial %d was not restarted: %s", number, exc)


class _Follower:
    """Events from the storage: trials seen running, their stored epochs, their outcome;
    and each running trial's clock (``clock()`` makes one), when a time limit is set."""

    def __init__(
        self, study: optuna.Study, epochs: int, emit: Emit,
        clock: Any = None,
    ) -> None:  # fmt: skip
        self.study, self.epochs, self.emit = study, epochs, emit
        self.seen = {t.number for t in study.get_trials(deepcopy=False, states=attrs.FINISHED)}
        self.started: dict[int, int] = {}  # running trial → epochs sent
        self.clock = clock
        self.clocks: dict[int, tuple[TrialClock, str]] = {}  # running trial → (clock, worker)

    def overdue(self) -> list[tuple[int, str, str]]:
        """``(trial, worker, why)`` of the running trials past their limit and grace."""
        now = time.monotonic()
        found = []
        for number, (clock, worker) in list(self.clocks.items()):
            why = clock.overdue(now)
            if why is not None:
                del self.clocks[number]
                found.append((number, worker, why))
        return found

    def poll(self) -> None:
        for trial in self.study.get_trials(deepcopy=False):
            if trial.number in self.seen:
                continue
            worker = str(trial.user_attrs.get(attrs.WORKER, ""))
            if trial.state in (TrialState.RUNNING, *attrs.FINISHED) and worker:
                self._epochs(trial, worker)
            if trial.state not in attrs.FINISHED:
                continue
            self.seen.add(trial.number)
            self.clocks.pop(trial.number, None)
            if attrs.STOP_REASON not in trial.user_attrs:
                continue
            if trial.user_attrs[attrs.STOP_REASON] in attrs.NOT_COUNTED:
                continue  # a dead or discarded attempt: the others' summary does not list it
            self.emit(TrialFinished(TrialOutcome.from_trial(trial), worker))

    def _epochs(self, trial: Any, worker: str) -> None:
        if trial.number not in self.started:
            self.started[trial.number] = 0
            self.emit(TrialStarted(trial.number, worker))
            clock = self.clock() if self.clock is not None else None
            if clock is not None and clock.limited and trial.state == TrialState.RUNNING:
                clock.start(trial.number, time.monotonic())
                self.clocks[trial.number] = (clock, worker)
        for step in sorted(trial.intermediate_values):
            if step > self.started[trial.number]:
                self.started[trial.number] = step
                if trial.number in self.clocks:
                    self.clocks[trial.number][0].epoch(time.monotonic())
                value = trial.intermediate_values[step]
                self.emit(EpochEnded(trial.number, step, self.epochs, value, worker))
