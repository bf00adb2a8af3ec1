"""One simulated worker of ``benchmarks/scale.py``: tunecb's real trial loop
(:func:`tunecb.execution.loop.run_trials`, after the dead-trial recovery a worker runs at its
start) with a stand-in for training, against a real storage whose methods are timed.

The stand-in (:class:`StandInRunner`) does what :class:`tunecb.training.runner.TrialRunner`
does to the storage, without Keras: it draws the parameters, writes the attributes a trial
starts with, sleeps ``epoch_s`` per epoch and reports a synthetic value each epoch followed by
the pruner's decision (``trial.report`` + ``trial.should_prune``, as the pruning callback
does), and records the outcome's attributes at the end; the loop then tells the trial.
Heartbeats (an RDB storage opened with one) and Optuna's stale-trial check run as in a search.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
import traceback
from collections.abc import Callable
from typing import Any

import optuna
import scale_trace

from tunecb.execution import loop
from tunecb.execution._base import Limits
from tunecb.oracle import attempts, attrs, budget, pruning
from tunecb.oracle.outcome import COMPLETE, PRUNED, TrialOutcome
from tunecb.storage import scan_turns

# The storage methods a search calls, timed one by one (the name of the op in the output).
TIMED = (
    "create_new_trial", "set_trial_param", "set_trial_intermediate_value",
    "set_trial_user_attr", "set_trial_system_attr", "set_trial_state_values",
    "get_all_trials", "get_trial", "get_trial_id_from_study_id_trial_number",
    "record_heartbeat", "get_study_user_attrs",
)  # fmt: skip


class Timers:
    """Latencies in ms per operation name."""

    def __init__(self) -> None:
        self.ms: dict[str, list[float]] = {}
        # per-epoch reports as (start, ms), start on time.monotonic (one clock for every
        # process of the machine): the parent tells those that overlapped an outage
        self.spans: list[tuple[float, float]] = []
        self.cpu_ms: dict[str, float] = {}  # this thread's CPU time in the op, summed
        # per-epoch reports as (start, wall, on a core, waiting for one, report alone), ms
        self.reports: list[tuple[float, float, float, float, float]] = []
        self.asks: list[tuple[float, float]] = []  # (start, end) of each ask, monotonic

    def add(self, name: str, started: float, cpu_started: float | None = None) -> None:
        self.ms.setdefault(name, []).append((time.perf_counter() - started) * 1000.0)
        if cpu_started is not None:
            cpu = (time.thread_time() - cpu_started) * 1000.0
            self.cpu_ms[name] = self.cpu_ms.get(name, 0.0) + cpu

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started, cpu_started = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name, started, cpu_started)

        return timed


def time_storage(storage: Any, timers: Timers) -> None:
    """Replace the storage object's methods by timed ones (instance attributes)."""
    for name in TIMED:
        method = getattr(storage, name, None)
        if method is not None:
            setattr(storage, name, timers.wrap(name, method))


class StandInRunner:
    """A trial without Keras: the storage traffic of a real one, ``epoch_s`` s per epoch."""

    def __init__(self, epochs: int, epoch_s: float, timers: Timers, rng: random.Random) -> None:
        self.epochs, self.epoch_s, self.timers, self.rng = epochs, epoch_s, timers, rng
        self.busy_path: str | None = None

    def run(self, trial: optuna.Trial) -> TrialOutcome:
        started = time.time()
        if self.busy_path is not None:  # the parent kills workers that are mid-trial
            with open(self.busy_path, "w") as handle:
                handle.write(str(trial.number))
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        units = trial.suggest_int("units", 8, 512)
        dropout = trial.suggest_float("dropout", 0.0, 0.5)
        trial.set_user_attr(attrs.N_PARAMS, units * 64)
        trial.set_user_attr(attrs.SEED, trial.number)
        best, best_epoch, state = -math.inf, 0, COMPLETE
        quality = -abs(math.log10(lr) + 2.5) - abs(units - 200) / 400 - dropout
        epoch = 0
        for epoch in range(1, self.epochs + 1):
            time.sleep(self.epoch_s * self.rng.uniform(0.8, 1.2))
            value = quality + 1.0 - 1.0 / epoch + self.rng.gauss(0, 0.02)
            if value > best:
                best, best_epoch = value, epoch
            s0 = scale_trace.sched_ms()
            t0, c0, m0 = time.perf_counter(), time.thread_time(), time.monotonic()
            trial.report(value, step=epoch)
            reported = (time.perf_counter() - t0) * 1000.0
            prune = pruning.should_prune(trial)  # as the pruning callback asks
            self.timers.add("epoch_report", t0, c0)  # what a trial waits per epoch
            wall = (time.monotonic() - m0) * 1000.0
            self.timers.spans.append((m0, wall))
            s1 = scale_trace.sched_ms()  # on a core, waiting for one (scale_trace)
            self.timers.reports.append((m0, wall, s1[0] - s0[0], s1[1] - s0[1], reported))
            if prune:
                state = PRUNED
                break
        outcome = TrialOutcome(
            number=trial.number, state=state, value=best if state == COMPLETE else None,
            best_epoch=best_epoch, epochs_run=epoch,
            stop_reason="completed" if state == COMPLETE else "pruned", error=None,
            checkpoint=None, duration_s=time.time() - started, n_params=units * 64,
            seed=trial.number, lr_schedule="none",
        )  # fmt: skip
        for key, value in outcome.attrs().items():  # as TrialRunner.record does
            trial.set_user_attr(key, value)
        return outcome


class NullSink:
    """Counts the finished trials, and when this worker's last one ended (its CPU then):
    what it spent after, waiting at the end of the search, is the idle workers' cost."""

    def __init__(self) -> None:
        self.finished_trials = 0
        self.idle_since: tuple[float, float] | None = None  # (monotonic, CPU s) at the last

    def started(self, number: int) -> None:
        self.idle_since = None

    def epoch(self, number: int, epoch: int, value: float | None) -> None: ...

    def finished(self, outcome: TrialOutcome) -> None:
        self.finished_trials += 1
        self.idle_since = (time.monotonic(), _cpu_s())


def _cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def memory_kib() -> dict[str, int]:
    """This process's Rss, Pss and USS (private pages) in KiB, from /proc/self/smaps_rollup."""
    found: dict[str, int] = {}
    try:
        with open("/proc/self/smaps_rollup") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                    found[parts[0][:-1]] = int(parts[1])
    except OSError:
        return {}
    uss = found.get("Private_Clean", 0) + found.get("Private_Dirty", 0)
    return {"rss": found.get("Rss", 0), "pss": found.get("Pss", 0), "uss": uss}


def time_recovery(timers: Timers) -> None:
    """Time the loop's stale-trial check, its light reads, and the idle workers' turns and
    wakes (in this process: the loop reads the modules)."""
    for module, name in (
        (attempts, "fail_stale_trials"), (attempts, "recover_dead_trials"),
        (attempts, "light_trials"), (scan_turns, "take"), (scan_turns, "status"),
        (loop, "_wait_idle"),
    ):  # fmt: skip
        original = getattr(module, f"_scale_{name}", None) or getattr(module, name)
        setattr(module, f"_scale_{name}", original)
        setattr(module, name, timers.wrap(name.lstrip("_"), original))


def old_ask() -> None:
    """The ask before issue 24's last cut (``--ask old``): Optuna's ``study.ask``, which
    first looks for queued trials (a whole read of every running trial), then the sampler
    reads them all again."""
    import warnings

    def ask(study: optuna.Study) -> optuna.Trial:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
            return study.ask()

    loop._queued = lambda trials: False
    loop._ask_new = ask


def old_idle() -> None:
    """The end of a search before issue 24's idle turns (``--idle old``): every idle worker
    looks for stale and dead trials at each wake, every heartbeat interval (jittered)."""
    scan_turns.take = lambda study, every_s, now=None: True

    def wait_idle(study: Any, interval: float, idle: Any, stop: Any) -> None:
        time.sleep(interval * random.uniform(0.5, 1.5))

    loop._wait_idle = wait_idle


ONE_PER_PROCESS = False  # set by process_main: this process is one worker


class Beats:
    """How late each heartbeat of this worker came: the gap between two beats of one trial
    beyond the interval (a trial is failed as stale when a gap passes the grace period,
    3 intervals here), and how often another worker failed a trial of this live one."""

    def __init__(self) -> None:
        self.last: dict[int, float] = {}
        self.late_s: list[float] = []
        self.taken = 0

    def watch(self, storage: Any, interval: int) -> None:
        beat = storage.record_heartbeat

        def record_heartbeat(trial_id: int) -> None:
            beat(trial_id)
            now = time.monotonic()
            if trial_id in self.last:
                self.late_s.append(now - self.last[trial_id] - interval)
            self.last[trial_id] = now

        storage.record_heartbeat = record_heartbeat
        if not ONE_PER_PROCESS or hasattr(attempts.taken, "counted"):
            return  # a Dask worker's thread (its process's count would be every thread's)
        taken = attempts.taken

        def counted(exc: BaseException, number: int) -> bool:
            found = taken(exc, number)
            self.taken += found
            return found

        counted.counted = True  # type: ignore[attr-defined]
        attempts.taken = counted


def open_study(storage_url: str, study_name: str, heartbeat: int, pruner: str) -> optuna.Study:
    from pathlib import Path

    from tunecb.storage.reconnect import opening
    from tunecb.storage.urls import study_storage
    from tunecb.study.samplers_pruners import make_pruner, make_sampler

    storage = opening(lambda: study_storage(storage_url, Path("."), heartbeat or None))
    return optuna.load_study(
        study_name=study_name, storage=storage, sampler=make_sampler("tpe", 0),
        pruner=make_pruner(pruner, 10),
    )  # fmt: skip


def disable_fixes() -> None:
    """tunecb as it was before this benchmark's fixes (``--compare``'s "before" runs)."""
    from tunecb.storage import urls
    from tunecb.storage.reconnect import ReconnectingRDBStorage

    urls._Journal.fsync_under_lock = True  # writers wait for each other's fsync

    ReconnectingRDBStorage.reconnect_s = 0.0  # a lost connection fails the call at once
    pruning.should_prune = lambda trial: trial.should_prune()  # every running trial read again


def old_reconnect() -> None:
    """tunecb's reconnect before issue 24's last round (``--reconnect-policy old``): a 20 s
    window, a backoff doubling from 0.1 s to 2 s without jitter (every worker knocks again
    at the same moments), and stale trials judged at once after an outage."""
    from tunecb.storage import reconnect

    reconnect.RECONNECT_S = 20.0  # opening()'s default
    reconnect.ReconnectingRDBStorage.reconnect_s = 20.0
    reconnect.backoff = lambda attempt: min(2.0, 0.1 * 2**attempt)
    stale_ids = optuna.storages.RDBStorage._get_stale_trial_ids
    reconnect.ReconnectingRDBStorage._get_stale_trial_ids = reconnect.retrying(stale_ids)


def work(config: dict[str, Any], out_path: str | None) -> dict[str, Any]:
    """Run the loop until the budget is spent; the measurements (also written to
    ``out_path`` as JSON when given)."""
    timers = Timers()
    cpu0, wall0, started_at = os.times(), time.time(), time.monotonic()
    result: dict[str, Any] = {"pid": os.getpid(), "error": None, "trials": 0}
    sink, beats = NullSink(), Beats()
    try:
        if not config.get("fixes", True):
            disable_fixes()
        if config.get("reconnect") == "old":
            old_reconnect()
        if config.get("loop_reads") == "old":  # the loop before issue 24's light rows:
            # every running trial read whole for the budget and the dead scans, a stale
            # check at every turn, idle workers asking for new trials past the budget
            attempts.light_trials = lambda study: study.get_trials(deepcopy=False)
            loop.STALE_CHECK_SHARE = 0.0
            budget.only_waiting = lambda trials, n_trials: False
        if config.get("reads") == "old":  # the pruner's reads before the per-epoch cut
            import scale_old_reads

            scale_old_reads.use_old_reads()
        if config.get("idle") == "old":
            old_idle()
        if config.get("pending_s"):  # provoke claim takeovers (a copy slower than this)
            from tunecb.storage import stale

            stale.PENDING_S = config["pending_s"]
        time_recovery(timers)
        study = open_study(
            config["storage"], config["study"], config["heartbeat"], config["pruner"]
        )
        time_storage(study._storage, timers)
        if config.get("ask") == "old":  # Optuna's ask: a look for queued trials first
            old_ask()
        ask = loop._ask_new  # each ask, timed (the workers' starts end with their first)

        def timed_ask(study: optuna.Study) -> Any:
            started = time.monotonic()
            try:
                return ask(study)
            finally:
                timers.asks.append((started, time.monotonic()))

        loop._ask_new = timed_ask
        if config["heartbeat"]:
            beats.watch(study._storage, config["heartbeat"])
        attempts.recover_dead_trials(study)  # as run_worker does at its start
        result["ready_at"] = time.monotonic()
        if out_path is not None:  # started: the parent counts the workers still starting
            with open(f"{out_path}.ready", "w"):
                pass
        runner = StandInRunner(
            config["epochs"], config["epoch_s"], timers, random.Random(os.getpid())
        )
        if out_path is not None:
            runner.busy_path = f"{out_path}.busy"
        result["reason"] = loop.run_trials(
            study, runner, Limits(n_trials=config["trials"]), sink, seed=0
        )
    except BaseException as exc:  # counted as an error by the parent
        result["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        result["traceback"] = traceback.format_exc(limit=6)
    cpu1 = os.times()
    if sink.idle_since is not None:  # waited at the end, from its last trial to its exit
        result["idle_from"] = sink.idle_since[0]
        result["idle_wall_s"] = time.monotonic() - sink.idle_since[0]
        result["idle_cpu_s"] = _cpu_s() - sink.idle_since[1]
    result.update(
        trials=sink.finished_trials, wall_s=time.time() - wall0,
        cpu_s=(cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
        memory_kib=memory_kib(), ms=timers.ms, cpu_ms=timers.cpu_ms, report_spans=timers.spans,
        reports=timers.reports, asks=timers.asks, started_at=started_at,
        taken=beats.taken, beat_late_s=sorted(beats.late_s)[-20:],
    )  # fmt: skip
    if out_path is not None:
        tmp = f"{out_path}.tmp"
        with open(tmp, "w") as handle:
            json.dump(result, handle)
        os.replace(tmp, out_path)
    return result


def process_main(config: dict[str, Any], out_path: str) -> None:
    """A forked worker process: work, write the result, exit 0 (1 on an error)."""
    global ONE_PER_PROCESS
    ONE_PER_PROCESS = True
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    result = work(config, out_path)
    os._exit(1 if result["error"] else 0)
