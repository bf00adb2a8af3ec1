"""Hundreds of workers on one study: throughput, latency, memory and the budget's guarantees,
per storage, with and without faults.

Run it from the repository root (Linux; PostgreSQL's server binaries for ``postgresql``)::

    python benchmarks/scale.py --workers 20 50 --storage journal postgresql dask [--quick]
        [--faults none kill] [--trials-per-worker 3 --epochs 8 --epoch-s 0.25] [--json PATH]

Each simulated worker is a real process (``dask``: a thread of a Dask worker process on a
LocalCluster on loopback) running tunecb's real trial loop (:mod:`benchmarks.scale_worker`):
the dead-trial recovery a worker starts with, ask, claim, per-epoch report and pruning
decision, attributes, heartbeats (PostgreSQL), tell, Optuna's stale-trial check. Training is
a stand-in that sleeps ``--epoch-s`` per epoch, so hundreds of workers fit in memory: the
processes are forked from this one after it imported Optuna and tunecb, sharing those pages.

Storages: ``journal`` (tunecb's journal file, flock), ``postgresql`` (a server this script
starts and always stops; heartbeat 2 s), ``dask`` (a LocalCluster on 127.0.0.1 whose tasks
use the journal file; ``--dask-storage postgresql`` for PostgreSQL).

Faults (``--faults kill``): a share of the workers (``--kill-share``) SIGKILLed at random
moments and replaced; with PostgreSQL also a server restart (immediate stop, start) a third
of the way in; with Dask, whole Dask worker processes (each running several workers) killed
mid-trial and restarted by their nanny, their tasks rescheduled.

Measured per run: storage operations per second, p50/p99 of each timed storage method and
of the per-epoch ``report + should_prune`` (``epoch_report``: what a trial waits per epoch),
trials finished per minute, CPU per worker (share of a core; ms per trial), memory per worker
(USS/PSS from ``/proc/PID/smaps_rollup``), errors, and the invariants read back from the
storage: finished trials that count == the budget, no parameter set twice, none lost, none
left RUNNING/WAITING, no hang. The last lines are one summary per run::

    STORAGE workers=N trials=T errors=E repeated=R lost=L p99_report_ms=X faults=F

Writes everything as JSON to ``benchmarks/out/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import optuna
import scale_trace
import scale_worker
from common import ROOT
from optuna.trial import TrialState

from tunecb.oracle import attrs, budget
from tunecb.storage import judged, stale
from tunecb.storage.urls import open_storage

STORAGE_OPS = scale_worker.TIMED
KEY = "epoch_report"


def create_study(url: str, name: str) -> None:
    storage = open_storage(url, Path("."))
    optuna.create_study(study_name=name, storage=storage, direction="maximize")
    engine = getattr(getattr(storage, "_backend", storage), "engine", None)
    if engine is not None:
        engine.dispose()  # no connection crosses a fork


def meminfo_available_mib() -> float:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return math.nan


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot (/proc/stat)."""
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / tick, sum(fields) / tick


class Watch:
    """Samples the machine's available memory while a run goes; its CPU use over the run,
    and with ``server`` (a PostgreSQL data folder) that server's CPU, restarts included
    (:class:`scale_trace.ServerCpu`: only the benchmark's own server, not the machine's
    other ``postgres`` processes)."""

    def __init__(self, server: Path | None = None) -> None:
        self.min_available = meminfo_available_mib()
        self.cpu0 = machine_cpu_s()
        self.server = scale_trace.ServerCpu(server) if server is not None else None
        self.next_server = 0.0

    def sample(self) -> None:
        self.min_available = min(self.min_available, meminfo_available_mib())
        if self.server is not None and time.monotonic() >= self.next_server:
            self.next_server = time.monotonic() + 1.0  # a pass over /proc: once a second
            self.server.sample()

    def cpu(self) -> dict:
        busy, total = machine_cpu_s()
        found = {"machine_busy": round((busy - self.cpu0[0]) / max(1e-9, total - self.cpu0[1]), 3)}
        if self.server is not None:
            found["server_cpu_s"] = round(self.server.used(), 1)
        return found


def run_processes(cfg: dict, n: int, kills: int, pg: Any, limit_s: float, out: Path) -> dict:
    """N forked workers; ``kills`` of them SIGKILLed at random and replaced; with ``pg``, a
    server restart a third of the way in. Returns the workers' results and the run's facts."""
    ctx = multiprocessing.get_context("fork")
    live: list[Any] = []
    busy: dict[int, Path] = {}  # pid -> the file its worker writes when it starts a trial
    started = 0

    def start() -> None:
        nonlocal started
        path = out / f"w{started}.json"
        started += 1
        proc = ctx.Process(target=scale_worker.process_main, args=(cfg, str(path)), daemon=True)
        proc.start()
        live.append(proc)
        busy[proc.pid] = Path(f"{path}.busy")
        ready[proc.pid] = Path(f"{path}.ready")
        begun[proc.pid] = [time.monotonic(), None]

    estimate = cfg["estimate_s"]
    # at random moments once workers run trials (the clock starts at the first one)
    kill_at = sorted(random.uniform(0.1, 0.7) * estimate for _ in range(kills))
    restart_at = estimate / 3 if pg is not None and kills else None
    data = pg.cluster.data if pg is not None else None
    watch, first_trial = Watch(data), None
    facts = {"killed": 0, "restarts": 0, "hang": False, "restart_s": None}
    timeline = scale_trace.Timeline(pg.dsn() if pg is not None else None)
    # pid -> [forked at, its start's end: its first trial seen, else its exit or its
    # entering the loop (a worker that found the budget spent)]
    begun: dict[int, list] = {}
    ready: dict[int, Path] = {}  # pid -> the file its worker writes when it enters the loop
    t0 = time.monotonic()
    try:
        for _ in range(n):
            start()
        while live:
            now = time.monotonic() - t0
            for proc in [p for p in live if not p.is_alive()]:
                proc.join()
                live.remove(proc)
                if begun[proc.pid][1] is None:
                    begun[proc.pid][1] = time.monotonic()
            mid_trial = [p for p in live if busy[p.pid].exists()]  # started a trial
            if mid_trial and first_trial is None:
                first_trial = now
            for proc in mid_trial:
                if begun[proc.pid][1] is None:
                    begun[proc.pid][1] = time.monotonic()
            starting = [p for p in live if not ready[p.pid].exists()]
            timeline.sample(time.monotonic(), len(starting), len(live))
            if kill_at and mid_trial and now - first_trial >= kill_at[0]:
                kill_at.pop(0)
                victim = random.choice(mid_trial)
                os.kill(victim.pid, signal.SIGKILL)
                victim.join()  # reaped: its pid is gone when the replacement looks
                live.remove(victim)
                if begun[victim.pid][1] is None:
                    begun[victim.pid][1] = time.monotonic()
                facts["killed"] += 1
                start()
            # a third of the way in, counted from the first trial, as the kills are (from
            # the start, it came while 200 workers still opened the storage)
            if (
                restart_at is not None
                and first_trial is not None
                and now - first_trial >= restart_at
            ):
                restart_at, r0 = None, time.monotonic()
                watch.sample()  # the stopped server's CPU, before its postmaster goes
                facts["restarts"] += pg.restart(cfg["down_s"]) == 0
                facts["restart_s"] = round(time.monotonic() - r0, 2)
                facts["outages"] = [*facts.get("outages", []), (r0, time.monotonic())]
            if now > limit_s:
                facts["hang"] = True
                break
            watch.sample()
            time.sleep(0.05)
    finally:
        for proc in live:  # only ours, by pid
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGKILL)
            proc.join()
        timeline.close()
    facts["wall_s"] = time.monotonic() - t0
    end = time.monotonic()
    # each worker's start: forked, until its first trial began (or it ended); a worker
    # that wrote its results: until its first ask ended, else until it entered the loop
    results = [json.loads(p.read_text()) for p in sorted(out.glob("w*.json"))]
    own = {r["pid"]: r for r in results}
    windows = []
    for pid, (forked, seen) in begun.items():
        r = own.get(pid, {})
        stop = r["asks"][0][1] if r.get("asks") else r.get("ready_at") or seen or end
        windows.append((forked, stop))
    facts["start_windows"] = windows
    facts["timeline"] = timeline.samples
    facts["t0"] = t0
    facts["min_available_mib"] = watch.min_available
    facts.update(watch.cpu())
    facts["started"] = started
    return {"results": results, **facts}


def run_dask(cfg: dict, n: int, kills: int, limit_s: float, procs: int) -> dict:
    """N workers as tasks on a LocalCluster of ``procs`` processes (threads: the rest);
    ``kills`` Dask worker processes SIGKILLed mid-run (their nanny restarts them)."""
    import dask
    from dask.distributed import Client, LocalCluster, wait

    procs = max(1, min(n, procs))
    threads = math.ceil(n / procs)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "benchmarks"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    )
    facts = {"killed": 0, "restarts": 0, "hang": False, "dask_processes": procs}
    watch = Watch()
    errors: list[str] = []
    with (
        dask.config.set(
            {"distributed.scheduler.allowed-failures": 100, "logging.distributed": "error"}
        ),
        LocalCluster(
            n_workers=procs, threads_per_worker=threads, processes=True, host="127.0.0.1",
            dashboard_address=None, memory_limit=None,
        ) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        t0 = time.monotonic()
        futures = [client.submit(scale_worker.work, cfg, None, pure=False) for _ in range(n)]
        kill_at = sorted(random.uniform(0.15, 0.6) * cfg["estimate_s"] for _ in range(kills))
        pids_seen: set[int] = set()
        memory: list[dict] = []
        while True:
            try:
                wait(futures, timeout=0.2)
                break
            except TimeoutError:
                pass
            now = time.monotonic() - t0
            if kill_at and now >= kill_at[0]:
                kill_at.pop(0)
                pids = client.run(os.getpid)
                pids_seen.update(pids.values())
                memory = list(client.run(scale_worker.memory_kib).values())
                os.kill(random.choice(list(pids.values())), signal.SIGKILL)
                facts["killed"] += 1
            if now > limit_s:
                facts["hang"] = True
                break
            watch.sample()
        facts["wall_s"] = time.monotonic() - t0
        if not memory:
            memory = list(client.run(scale_worker.memory_kib).values())
        results = []
        for future in futures:
            if future.status == "finished":
                results.append(future.result())
            elif future.status == "error":
                errors.append(repr(future.exception())[:200])
        for future in futures:
            future.cancel()
    facts["process_memory_kib"] = memory
    facts["min_available_mib"] = watch.min_available
    facts.update(watch.cpu())
    facts["task_errors"] = errors
    return {"results": results, **facts}


def check_study(url: str, name: str, n_trials: int) -> dict:
    """The invariants, read back from the storage."""
    study = optuna.load_study(study_name=name, storage=open_storage(url, Path(".")))
    trials = study.get_trials(deepcopy=False)
    again = budget.retried(trials)
    counted = [t for t in trials if t.state in attrs.FINISHED and budget.counts(t, again)]
    # a trial failed before it drew its parameters has none: no parameter set (it is lost)
    params = [tuple(sorted(t.params.items())) for t in counted if t.params]
    left = [
        (
            t.number,
            t.state.name,
            t.user_attrs.get(attrs.WORKER),
            t.system_attrs.get(attrs.FAILED_TRIAL),
        )
        for t in trials
        if t.state in (TrialState.RUNNING, TrialState.WAITING)
    ]
    bad = [
        t
        for t in trials
        if t.state == TrialState.FAIL
        and t.number not in again
        and t.user_attrs.get(attrs.STOP_REASON) not in attrs.NOT_COUNTED
    ]
    bad_fails = [
        (t.number, t.user_attrs.get(attrs.STOP_REASON), t.user_attrs.get(attrs.WORKER),
         judged.explain(t.system_attrs))
        for t in bad
    ]  # fmt: skip
    verdicts: dict[str, int] = {}  # trials failed from outside, by rule (judged.verdict)
    for t in trials:
        rule = (t.system_attrs.get(judged.JUDGED) or {}).get("rule")
        if t.state == TrialState.FAIL and rule:
            verdicts[rule] = verdicts.get(rule, 0) + 1
    failed = [t for t in trials if t.state == TrialState.FAIL]
    # each counted FAIL with every copy queued to rerun it: why none ran
    bad_chains = [
        {"attempt": record(t), "copies": [record(c) for c in trials
                                          if stale.rerun_of(c.system_attrs) == t._trial_id]}
        for t in bad
    ]  # fmt: skip
    same: dict[tuple, list] = {}
    for t in trials:
        same.setdefault(tuple(sorted(t.params.items())), []).append(t)
    twice = {key for key in params if params.count(key) > 1}
    repeats = [group for key, group in same.items() if key in twice]
    reasons = [t.user_attrs.get(attrs.STOP_REASON) for t in failed if t.number not in again]
    state = {t._trial_id: t.state for t in trials}
    dropped = [  # reruns discarded before they ran
        t
        for t in failed
        if t.user_attrs.get(attrs.STOP_REASON) == attrs.DISCARDED
        and stale.rerun_of(t.system_attrs) is not None
    ]
    # ... because another copy of the attempt held its claim (two recoverers at once)
    second_copies = [
        t for t in dropped if state.get(stale.rerun_of(t.system_attrs)) == TrialState.FAIL
    ]
    return {
        "finished": len(counted),
        "repeated": len(params) - len(set(params)),
        "lost": max(0, n_trials - len(counted)),
        "over_budget": max(0, len(counted) - n_trials),
        "left_unfinished": left,
        "failed_trials": len([r for r in reasons if r not in attrs.NOT_COUNTED]),
        "requeued": len([t for t in failed if t.number in again]),
        "discarded": reasons.count(attrs.DISCARDED),
        # reruns queued twice (two recoverers at once): discarded when popped, never run
        "second_copies": len(second_copies),
        # ... because their attempt finished by itself (a live trial judged stale)
        "reruns_of_finished": len(dropped) - len(second_copies),
        # failed by the stale-trial check (no stop reason written) and queued again
        "stale_failed": len(
            [t for t in failed if t.number in again and not t.user_attrs.get(attrs.STOP_REASON)]
        ),
        "stored_trials": len(trials),
        "failed_sample": bad_fails[:5],
        "repeated_sample": [[record(t) for t in group] for group in repeats][:10],
        "failed_chains": bad_chains[:20],
        "verdicts": verdicts,
        "trials_dump": [record(t) for t in trials] if twice or left else [],
    }


def record(t: Any) -> dict:
    """What the study keeps of a trial: enough to tell how its parameters came twice."""
    return {
        "number": t.number, "state": t.state.name, "counts": t.user_attrs.get(attrs.STOP_REASON),
        "worker": t.user_attrs.get(attrs.WORKER),
        "failed_trial": t.system_attrs.get(attrs.FAILED_TRIAL),
        "retry_history": t.system_attrs.get(attrs.RETRY_HISTORY),
        "start": str(t.datetime_start), "end": str(t.datetime_complete),
        "params": t.params, "worker_start": t.user_attrs.get(attrs.WORKER_START),
        "error": str(t.user_attrs.get(attrs.ERROR))[:200],
        "death": str(t.user_attrs.get(attrs.DEATH))[:200],
        "judged": t.system_attrs.get(judged.JUDGED), "claim": t.system_attrs.get(stale.CLAIM),
        "trial_id": t._trial_id, "rerun_of": stale.rerun_of(t.system_attrs),
    }  # fmt: skip


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def split_reports(results: list[dict], outages: list) -> dict[str, list[float]]:
    """The per-epoch reports' latencies (ms), split into those whose call overlapped a
    server outage (from the stop to the end of the start) and those outside every one."""
    found: dict[str, list[float]] = {"outage": [], "outside": []}
    for result in results:
        for start, ms in result.get("report_spans", []):
            end = start + ms / 1000.0
            hit = any(start < up and end > down for down, up in outages)
            found["outage" if hit else "outside"].append(ms)
    return found


def the_end(results: list[dict], ms: dict[str, list[float]], n: int) -> dict:
    """The end of the search, when workers whose trials ended wait for the last ones: the
    CPU they used waiting (from their last trial to their exit, summed), their looks for
    stale trials and their wakes, and the per-epoch reports made once a quarter of the
    workers waited (``p99_ms``: what the idle workers' polling costs the last trials)."""
    idle_from = sorted(r["idle_from"] for r in results if "idle_from" in r)
    quarter = idle_from[n // 4] if len(idle_from) > n // 4 else math.inf
    late = [
        wall for r in results for start, wall, *_ in r.get("reports", []) if start >= quarter
    ]  # fmt: skip
    wakes = len(ms.get("status", [])) or len(ms.get("wait_idle", []))
    return {
        "idle_cpu_s": round(sum(r.get("idle_cpu_s", 0.0) for r in results), 1),
        "idle_wall_s": round(sum(r.get("idle_wall_s", 0.0) for r in results), 1),
        "wakes": wakes,
        "looks": len(ms.get("fail_stale_trials", [])),
        "dead_scans": len(ms.get("recover_dead_trials", [])),
        "light_reads": len(ms.get("light_trials", [])),
        "reports": len(late),
        "p50_ms": round(pct(late, 0.5), 1) if late else None,
        "p99_ms": round(pct(late, 0.99), 1) if late else None,
    }


def summarize(run: dict, check: dict, n: int) -> dict:
    results = run["results"]
    ms: dict[str, list[float]] = {}
    cpu_ms: dict[str, float] = {}
    for result in results:
        for op, values in result["ms"].items():
            ms.setdefault(op, []).extend(values)
        for op, value in result.get("cpu_ms", {}).items():
            cpu_ms[op] = cpu_ms.get(op, 0.0) + value
    wall = run["wall_s"]
    ops = sum(len(ms.get(op, [])) for op in STORAGE_OPS)
    cpu = [r["cpu_s"] / r["wall_s"] for r in results if r["wall_s"] > 0]
    trials_run = sum(r["trials"] for r in results)
    mem = [r["memory_kib"] for r in results if r.get("memory_kib")]
    if "process_memory_kib" in run:  # Dask: per process, shared by its threads
        mem = run["process_memory_kib"]
    errors = [r["error"] for r in results if r["error"]] + run.get("task_errors", [])
    for part, spans in split_reports(results, run.get("outages", [])).items():
        ms[f"{KEY}_{part}"] = spans  # the per-epoch reports that overlapped an outage, or not
    late = [v for r in results for v in r.get("beat_late_s", [])]
    end = the_end(results, ms, n)
    traced = scale_trace.split(
        [tuple(x) for r in results for x in r.get("reports", [])],
        run.get("start_windows", []), run.get("outages", []), run.get("timeline", []),
        [tuple(x) for r in results for x in r.get("asks", [])], run.get("t0", 0.0),
    )  # fmt: skip
    return {
        "workers": n,
        "wall_s": round(wall, 1),
        "ops_per_s": round(ops / wall, 1),
        "server_cpu_ms_per_op": round(1000 * run["server_cpu_s"] / max(1, ops), 2)
        if "server_cpu_s" in run
        else None,
        "trials_per_min": round(check["finished"] / wall * 60, 1),
        "latency_ms": {
            op: {
                "n": len(v),
                "p50": round(pct(v, 0.5), 2),
                "p99": round(pct(v, 0.99), 2),
                "cpu": round(cpu_ms.get(op, math.nan) / len(v), 3),
            }
            for op, v in sorted(ms.items())
            if v
        },
        "cpu_core_share_per_worker": round(statistics.mean(cpu), 4) if cpu else None,
        "cpu_ms_per_trial": round(1000 * sum(r["cpu_s"] for r in results) / max(1, trials_run), 1),
        "memory_mib": {
            k: round(statistics.median(m[k] for m in mem) / 1024, 1) for k in ("uss", "pss", "rss")
        }
        if mem
        else {},
        "taken_live": sum(r.get("taken", 0) for r in results),
        "beat_late_max_s": round(max(late), 2) if late else None,
        "beat_late_p99_s": round(pct(late, 0.99), 2) if late else None,
        # a worker that stopped on an error (one that gave up on the storage: its trial is
        # recovered by the others), plus trials failed for good that count
        "errors": len(errors) + check["failed_trials"],
        "worker_errors": len(errors),
        "error_samples": errors[:5],
        "traceback_sample": next((r["traceback"] for r in results if r.get("traceback")), None),
        "trace": traced,
        "end": end,
        "idle_cpu_s": end["idle_cpu_s"],
        **{
            k: v
            for k, v in run.items()
            if k not in ("results", "process_memory_kib", "wall_s", "timeline", "start_windows")
        },
        **check,
    }


def one_run(
    storage: str,
    n: int,
    faults: str,
    args: argparse.Namespace,
    pg: Any,
    fixes: bool,
    policy: str = "new",
    reads: str = "new",
    epoch_s: float | None = None,
    loop_reads: str = "new",
    idle: str = "new",
    ask: str = "new",
) -> dict:
    epoch_s = args.epoch_s[0] if epoch_s is None else epoch_s
    trials = args.trials_per_worker * n
    name = f"scale_{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="tunecb-scale-"))
    try:
        backend = args.dask_storage if storage == "dask" else storage
        url = pg.create_database(name) if backend == "postgresql" else str(work / "optuna.journal")
        create_study(url, name)
        estimate = args.trials_per_worker * args.epochs * epoch_s
        cfg = {
            "storage": url, "study": name, "trials": trials, "epochs": args.epochs,
            "epoch_s": epoch_s, "heartbeat": 2 if backend == "postgresql" else 0,
            "pruner": args.pruner, "estimate_s": estimate, "fixes": fixes,
            "down_s": args.down_s, "reconnect": policy, "pending_s": args.pending_s,
            "reads": reads, "loop_reads": loop_reads, "idle": idle, "ask": ask,
        }  # fmt: skip
        limit = args.limit_s or estimate * 8 + 120
        kills = round(args.kill_share * n) if faults == "kill" else 0
        if storage == "dask":
            dask_kills = max(1, round(args.kill_share * args.dask_processes)) if kills else 0
            run = run_dask(cfg, n, dask_kills, limit, args.dask_processes)
        else:
            run = run_processes(cfg, n, kills, pg if backend == "postgresql" else None, limit, work)
        if storage != "dask" or backend == "journal":
            run["journal_mib"] = (
                round((work / "optuna.journal").stat().st_size / 2**20, 2)
                if backend == "journal" else None
            )  # fmt: skip
        summary = summarize(run, check_study(url, name, trials), n)
        tunecb = "after" if fixes else "before"
        return {
            "storage": storage, "faults": faults, "tunecb": tunecb, "trials": trials,
            "reconnect": policy, "down_s": args.down_s, "pruning_reads": reads,
            "loop_reads": loop_reads, "idle": idle, "ask": ask,
            "epoch_s": epoch_s, **summary,
        }  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


def replay_cost(trials: int, epochs: int = 10, repeats: int = 4) -> dict:
    """The journal's cost against its length: a journal of ``trials`` finished trials
    (``epochs`` reports and 12 attributes each, as the stand-in writes), then the time a new
    worker takes to open it (a full replay) and the time of one report + its read after that
    (the offset cache: only new records are read)."""
    work = Path(tempfile.mkdtemp(prefix="tunecb-replay-"))
    try:
        path = str(work / "optuna.journal")
        storage = open_storage(path, work)
        study = optuna.create_study(study_name="r", storage=storage, direction="maximize")
        for number in range(trials):
            trial = study.ask()
            trial.suggest_float("lr", 1e-4, 1e-1, log=True)
            for epoch in range(1, epochs + 1):
                trial.report(epoch / 10, step=epoch)
            for key in range(12):
                trial.set_user_attr(f"a{key}", number)
            study.tell(trial, 1.0)
        records = Path(path).read_bytes().count(b"\n")
        from tunecb.storage import journal_snapshot
        from tunecb.storage.urls import _Journal

        def open_s(snapshots: bool) -> float:
            _Journal.snapshots = snapshots
            t0 = time.perf_counter()
            optuna.load_study(study_name="r", storage=open_storage(path, work))
            return time.perf_counter() - t0

        t0 = time.perf_counter()
        open_s(True)  # the first opening replays all and writes the snapshot
        first = time.perf_counter() - t0
        full, snap = [], []
        for i in range(repeats):  # alternating, the order rotated
            for snapshots in (True, False) if i % 2 else (False, True):
                (snap if snapshots else full).append(open_s(snapshots))
        _Journal.snapshots = True
        snapshot_mib = journal_snapshot.snapshot_path(Path(path)).stat().st_size / 2**20
        fresh = optuna.load_study(study_name="r", storage=open_storage(path, work))
        opened = statistics.median(full)
        trial = fresh.ask()
        times = []
        for epoch in range(1, 21):
            t0 = time.perf_counter()
            trial.report(0.5, step=epoch)
            fresh.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            times.append((time.perf_counter() - t0) * 1000)
        return {
            "trials": trials, "records": records,
            "mib": round(Path(path).stat().st_size / 2**20, 1), "open_s": round(opened, 2),
            "open_full_s": [round(v, 3) for v in full],
            "open_snapshot_s": [round(v, 3) for v in snap],
            "open_snapshot_median_s": round(statistics.median(snap), 3),
            "first_open_with_write_s": round(first, 2), "snapshot_mib": round(snapshot_mib, 2),
            "report_read_ms_p50": round(pct(times, 0.5), 2),
        }  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


def line(r: dict) -> str:
    p99 = {
        part: r["latency_ms"].get(f"{KEY}{part}", {}).get("p99", math.nan)
        for part in ("", "_outside", "_outage")
    }
    return (
        f"{r['storage']} workers={r['workers']} trials={r['finished']} errors={r['errors']} "
        f"repeated={r['repeated']} lost={r['lost']} p99_report_ms={p99['']} faults={r['faults']} "
        f"tunecb={r['tunecb']} reconnect={r.get('reconnect', 'new')} "
        f"p99_report_outside_ms={p99['_outside']} p99_report_outage_ms={p99['_outage']}" + _extra(r)
    )


def _extra(r: dict) -> str:
    """The fields added after the line's first form (its earlier fields stay as they were)."""
    outside = r["latency_ms"].get(f"{KEY}_outside", {})
    return (
        f" pruning_reads={r.get('pruning_reads', 'new')} epoch_s={r.get('epoch_s')}"
        f" loop_reads={r.get('loop_reads', 'new')}"
        f" p50_report_outside_ms={outside.get('p50', math.nan)}"
        f" cpu_report_ms={r['latency_ms'].get(KEY, {}).get('cpu', math.nan)}"
        f" p99_report_steady_ms={r.get('trace', {}).get('p99_steady_ms', math.nan)}"
        f" server_cpu_ms_per_op={r.get('server_cpu_ms_per_op')}"
        f" idle={r.get('idle', 'new')} idle_cpu_s={r.get('idle_cpu_s')}"
        f" ask={r.get('ask', 'new')}"
        f" whole_reads={r['latency_ms'].get('get_all_trials', {}).get('n', 0)}"
        f" looks={r['latency_ms'].get('fail_stale_trials', {}).get('n', 0)}"
        f" p99_report_end_ms={r.get('end', {}).get('p99_ms')}"
    )


def detail(r: dict) -> str:
    ops = ", ".join(
        f"{op} {v['p50']}/{v['p99']} ({v['cpu']})" for op, v in r["latency_ms"].items() if v["n"]
    )
    return (
        f"  {r['storage']} N={r['workers']} faults={r['faults']} tunecb={r['tunecb']}: "
        f"wall {r['wall_s']} s, "
        f"{r['ops_per_s']} ops/s, {r['trials_per_min']} trials/min, machine busy "
        f"{r['machine_busy']}, server {r['server_cpu_ms_per_op']} CPU ms/op, cpu/worker "
        f"{r['cpu_core_share_per_worker']} core ({r['cpu_ms_per_trial']} ms/trial), mem/worker "
        f"{r['memory_mib']} MiB, killed {r['killed']}, restarts {r['restarts']}, "
        f"requeued {r['requeued']} ({r['stale_failed']} stale, {r['taken_live']} of live "
        f"workers; beats late by up to {r['beat_late_max_s']} s, p99 {r['beat_late_p99_s']} s), "
        f"discarded {r['discarded']} ({r['second_copies']} second copies, "
        f"{r['reruns_of_finished']} reruns of trials that finished), "
        f"failed from outside {r.get('verdicts')}, "
        f"left {r['left_unfinished']}, "
        f"hang {r['hang']}, min available {r['min_available_mib']:.0f} MiB, errors "
        f"{r.get('worker_errors')} workers + {r['failed_trials']} counted FAILs\n"
        f"    p50/p99 ms (CPU ms per call): {ops}\n"
        f"    reports outside outages: {_traced(r.get('trace', {}).get('all'))}\n"
        f"    slow (> {scale_trace.SLOW_MS:.0f} ms): {_traced(r.get('trace', {}).get('slow'))}; "
        f"by 10 s from the start: {r.get('trace', {}).get('slow_by_10s')}; steady p50/p99 "
        f"{r.get('trace', {}).get('p50_steady_ms')}/{r.get('trace', {}).get('p99_steady_ms')} "
        f"ms over {r.get('trace', {}).get('n_steady')}\n"
        f"    the end: {r.get('end')}"
    )


def _traced(part: dict | None) -> str:
    if not part:
        return "-"
    return (
        f"n {part['n']}, wall p50 {part['wall_ms_p50']} ms = on a core "
        f"{part['cpu_share']:.0%} + waiting for a core {part['runq_share']:.0%} + asleep "
        f"(server, locks) {part['other_share']:.0%} (p50 ms {part['cpu_ms_p50']}/"
        f"{part['runq_ms_p50']}/{part['other_ms_p50']}); then: runnable "
        f"{part['running_p50']}, load {part['load1_p50']}, starting {part['starting_p50']}, "
        f"asking {part['asking_p50']}, server active {part['pg_active_p50']}, "
        f"{part['overlapping_a_start']} overlapping a start, {part['after_outage']} in the "
        f"{scale_trace.AFTER_OUTAGE_S:.0f} s after an outage"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--storage", nargs="+", default=["journal", "postgresql", "dask"],
                        choices=["journal", "postgresql", "dask"])  # fmt: skip
    parser.add_argument("--faults", nargs="+", default=["none", "kill"], choices=["none", "kill"])
    parser.add_argument("--quick", action="store_true", help="short trials: a few minutes")
    parser.add_argument("--trials-per-worker", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--epoch-s", type=float, nargs="+", default=None,
                        help="seconds per epoch (0.5; --quick: 0.25); several: each case "
                        "with each")  # fmt: skip
    parser.add_argument("--pruner", default="median")
    parser.add_argument("--kill-share", type=float, default=0.2)
    parser.add_argument("--dask-processes", type=int, default=4)
    parser.add_argument("--dask-storage", default="journal", choices=["journal", "postgresql"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit-s", type=float, default=None, help="a run longer is a hang")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="run each case twice: tunecb before this benchmark's fixes, and after",
    )
    parser.add_argument("--down-s", type=float, default=0.0,
                        help="the PostgreSQL restart keeps the server down this long (a "
                        "failover: 30-60 s)")  # fmt: skip
    parser.add_argument("--reconnect-policy", nargs="+", default=["new"], choices=["old", "new"],
                        help="old: tunecb's reconnect before issue 24's last round (a 20 s "
                        "window, backoff without jitter, no stale pause after an outage); "
                        "several: each case with each, alternating")  # fmt: skip
    parser.add_argument("--pruning-reads", nargs="+", default=["new"], choices=["old", "new"],
                        help="old: the pruner's finished trials read as before issue 24's "
                        "per-epoch cut (benchmarks/scale_old_reads.py); several: each case "
                        "with each, alternating")  # fmt: skip
    parser.add_argument("--loop-reads", nargs="+", default=["new"], choices=["old", "new"],
                        help="old: the loop as before issue 24's light rows (every running "
                        "trial loaded whole through Optuna's cache for the budget and the dead "
                        "scans, a stale check at every turn, idle workers asking past the "
                        "budget); several: each case with each, alternating")  # fmt: skip
    parser.add_argument("--idle", nargs="+", default=["new"], choices=["old", "new"],
                        help="old: the end of a search before issue 24's idle turns (every "
                        "idle worker looks for stale and dead trials at each wake, every "
                        "heartbeat interval); several: each case with each, "
                        "alternating")  # fmt: skip
    parser.add_argument("--ask", nargs="+", default=["new"], choices=["old", "new"],
                        help="old: Optuna's study.ask, which first reads every running trial "
                        "whole for a queued one (before issue 24's last cut); several: each "
                        "case with each, alternating")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=1, help="each case this many times")
    parser.add_argument("--pending-s", type=float, default=None,
                        help="a recoverer's pending claim is taken over after this long "
                        "(tunecb: 30 s; shorter provokes takeovers)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "out" / "scale.json")
    parser.add_argument(
        "--replay",
        type=int,
        nargs="*",
        default=[],
        help="also: the journal's open and report cost at these lengths (trials)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs = 6
    if args.epoch_s is None:
        args.epoch_s = [0.25 if args.quick else 0.5]
    random.seed(args.seed)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    need_pg = "postgresql" in args.storage or (
        "dask" in args.storage and args.dask_storage == "postgresql"
    )
    import contextlib

    import scale_pg

    runs: list[dict] = []
    replays = []
    for n in args.replay:
        replays.append(replay_cost(n))
        print(f"journal replay: {replays[-1]}", flush=True)
    with scale_pg.server() if need_pg else contextlib.nullcontext() as pg:
        for storage in args.storage:
            for n in args.workers:
                for faults in args.faults:
                    cases = [
                        (fixes, policy, reads, epoch_s, loop_reads, idle, ask)
                        for epoch_s in args.epoch_s
                        for fixes in ([False, True] if args.compare else [True])
                        for policy in args.reconnect_policy
                        for reads in args.pruning_reads
                        for loop_reads in args.loop_reads
                        for idle in args.idle
                        for ask in args.ask
                    ]
                    rotated = [c for i in range(args.repeats) for c in cases[:: 1 - 2 * (i % 2)]]
                    for fixes, policy, reads, epoch_s, loop_reads, idle, ask in rotated:  # ABBA
                        r = one_run(
                            storage, n, faults, args, pg, fixes, policy, reads, epoch_s,
                            loop_reads, idle, ask,
                        )  # fmt: skip
                        runs.append(r)
                        print(detail(r), flush=True)
                        if r["errors"] or r["lost"] or r["repeated"]:
                            print(f"    errors: {r['error_samples']} {r['failed_sample']}")
                            print(f"    repeated: {json.dumps(r['repeated_sample'])}")
                        print(line(r), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                     "runs": runs, "replay": replays}, indent=1))  # fmt: skip
    print()
    for r in runs:
        print(line(r))
    bad = [r for r in runs if r["lost"] or r["repeated"] or r["errors"] or r["hang"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
