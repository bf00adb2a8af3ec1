"""How tunecb scales with worker processes, and how a long search's memory behaves.

Run it from the repository root, on an otherwise idle machine (the default run takes about
seven and a half minutes on 2 cores)::

    python benchmarks/scaling.py [--trials N --repeats R --long-trials M] [--json PATH]

It measures, in one run:

1. Throughput. ``tunecb search benchmarks/scaling_study.py --n-trials N --jobs 1`` and the
   same with ``--jobs 2`` (a fixed MLP on scikit-learn's digits, 8 epochs, pruner and early
   stopping off, so every trial does the same work; a fresh results folder per run; each
   run a subprocess), alternating, R repeats each. ``--jobs 1`` is one worker process using
   all the cores (TensorFlow's intra-op threads = cores); ``--jobs 2`` is two workers with
   cores / 2 threads each. ``--one-thread`` adds ``--jobs 1 --threads-per-worker 1``. For
   each run it reports trials per minute two ways:

   - whole run: finished trials / wall time of the command (start-up included);
   - steady state: from first to last trial end, per worker process: (its trials - 1) /
     (its last trial end - its first trial end), summed over the workers (which run side
     by side for the whole search), from the trials' ``datetime_complete`` and ``worker``
     attribute in the study's journal (``<results>/scaling/optuna.journal``, read with
     Optuna). So the fixed start-up cost is shown apart: launch to the first worker process
     (the ``tunecb search`` process imports the study file, hence TensorFlow, and creates
     the study) and launch to the first trial start (the worker imports TensorFlow too and
     loads the data). (Per worker, because (trials - 1) / (last end - first end) over all
     trials overstates the rate of two workers that finish their trials in step by up to
     one trial per worker.)

   and the ratios jobs2 / jobs1 of the medians (goal >= 1.7).
2. Memory over a long search. M tiny trials (``benchmarks/scaling_long_study.py``: one epoch
   on 256 digits) with ``--jobs 1``, recycling on (``--worker-trials K``, default 25) and
   off (``--worker-trials 0 --worker-memory 0``). While each runs, the worker processes
   (the children of the ``tunecb search`` process started by ``multiprocessing``'s spawn;
   its resource tracker is left out) are found by walking ``/proc/*/stat`` and their
   ``VmRSS`` and ``VmHWM`` are read from ``/proc/PID/status`` every 0.2 s. Reported: the
   peak RSS per worker process and over the run, the worker's RSS at the end of every K-th
   trial (the last sample before that trial's ``datetime_complete``), the growth without
   recycling (RSS at the end of the last trial minus RSS at the end of the first), and the
   wall times (recycling pays a TensorFlow start-up per replacement worker).

Every run also records how much CPU other processes used meanwhile (busy time in
``/proc/stat`` minus the CPU time of this benchmark's subprocesses), shown as "other load":
above a few percent the run shared the machine and its numbers are doubtful.

It prints a table and writes the numbers as JSON to ``benchmarks/out/scaling.json``.
Linux only (``/proc``). Load averages before and after are printed: numbers taken on a
busy machine are not worth much.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import cmdline as _cmdline
from common import machine, write_result
from common import shown as _shown
from common import spread as _spread
from common import tunecb_command as _tunecb

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STUDY_FILE = HERE / "scaling_study.py"
LONG_STUDY_FILE = HERE / "scaling_long_study.py"
DEFAULT_JSON = HERE / "out" / "scaling.json"
STUDY_NAME, LONG_STUDY_NAME = "scaling", "scaling_long"  # the study files' names
EPOCHS, LONG_EPOCHS = 8, 1  # the study files' EPOCHS (not imported: no TensorFlow here)
SPEEDUP_GOAL = 1.7  # trials per minute, jobs 2 / jobs 1
NOISY_SPREAD = 0.10  # (max - min) / median above this: say the numbers are noisy
BUSY_LOAD = 0.05  # other processes' share of the CPUs during a run above this: warn
RUN_TIMEOUT_S = 900.0  # a search running longer than this is stopped and reported as a hang
MIB = 2**20
# per-run figures of which each side's median is reported
MEDIAN_KEYS = (
    "wall_s",
    "tpm_run",
    "tpm_steady",
    "startup_s",
    "first_worker_s",
    "first_end_s",
    "tail_s",
    "trial_mean_s",
)
NOT_COUNTED = ("worker_died", "interrupted", "discarded")  # tunecb.oracle.budget.NOT_COUNTED


@dataclass
class Sample:
    """One sweep over ``/proc``: the search process and its worker processes."""

    t: float  # time.time()
    launcher_rss: int  # bytes
    workers: dict[int, tuple[int, int]]  # pid -> (VmRSS, VmHWM) in bytes


@dataclass
class Monitored:
    """One ``tunecb search`` subprocess, timed and watched."""

    cmd: list[str]
    launched: float  # time.time() just before the process started
    wall_s: float
    exit_code: int
    stdout: str
    stderr: str
    samples: list[Sample] = field(default_factory=list)
    other_children: dict[int, str] = field(default_factory=dict)  # pid -> what it was
    timed_out: bool = False
    other_load: float = 0.0  # CPU time of other processes meanwhile / (wall time x cores)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--trials", type=int, default=24, help="trials per throughput run (24)")
    parser.add_argument("--repeats", type=int, default=2, help="throughput runs per side (2)")
    parser.add_argument("--one-thread", action="store_true",
                        help="also run --jobs 1 --threads-per-worker 1")  # fmt: skip
    parser.add_argument("--long-trials", type=int, default=200, help="trials of the long run")
    parser.add_argument("--worker-trials", type=int, default=25,
                        help="--worker-trials of the recycling run, and the step of the "
                        "RSS series (25)")  # fmt: skip
    parser.add_argument("--interval", type=float, default=0.2, help="RSS sampling period, s")
    parser.add_argument("--only", choices=("throughput", "memory"), help="run one part")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if min(args.trials, args.repeats, args.long_trials, args.worker_trials) < 1:
        parser.error("--trials, --repeats, --long-trials and --worker-trials must be >= 1")
    if args.trials < 2:
        parser.error("--trials must be >= 2 (the steady-state rate needs two trial ends)")
    if not Path("/proc/self/status").is_file():
        parser.error("this benchmark reads /proc (Linux only)")

    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="tunecb-scaling-"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    load_before = os.getloadavg()
    throughput = memory = None
    try:
        print(f"warming up (imports), temporary folder {tmp}", flush=True)
        _warm_up(env)
        if args.only in (None, "throughput"):
            throughput = measure_throughput(tmp, args, env)
        if args.only in (None, "memory"):
            memory = measure_memory(tmp, args, env)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()

    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(load_before, load_after),
        "settings": vars(args) | {"json": str(args.json), "epochs": EPOCHS},
        "throughput": throughput,
        "memory": memory,
        "total_s": round(time.perf_counter() - started, 1),
    }
    write_result(result, args.json, table(result))
    problems = _problems(result)
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


# --- 1. throughput -----------------------------------------------------------------------


def _variants(one_thread: bool) -> dict[str, list[str]]:
    """Name -> the worker flags of that side."""
    sides = {"jobs1": ["--jobs", "1"], "jobs2": ["--jobs", "2"]}
    if one_thread:
        sides["jobs1_1thread"] = ["--jobs", "1", "--threads-per-worker", "1"]
    return sides


def measure_throughput(tmp: Path, args: argparse.Namespace, env: dict[str, str]) -> dict:
    """Run the throughput study with each worker setting ``repeats`` times, alternating."""
    sides = _variants(args.one_thread)
    base = [
        *_tunecb(), "search", _shown(STUDY_FILE), "--results", "{results}",
        "--n-trials", str(args.trials),
    ]  # fmt: skip
    runs: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        order = list(sides) if repeat % 2 == 0 else list(reversed(sides))
        for side in order:
            folder = tmp / f"{side}-{repeat}"
            cmd = [a.replace("{results}", str(folder)) for a in base] + sides[side]
            run = run_monitored(cmd, env, args.interval)
            jobs = int(sides[side][1])
            details = run_details(run, folder / STUDY_NAME, args.trials, jobs)
            runs.append({"side": side, "repeat": repeat, **details})
            print(
                f"  throughput  repeat {repeat + 1}/{args.repeats}  {side:<13} "
                f"{details['wall_s']:6.2f} s  {details['finished']} trials  "
                f"{details['tpm_run']:6.1f}/min run  {details['tpm_steady']:6.1f}/min steady  "
                f"start-up {details['startup_s']:.2f} s  other load {details['other_load']:.0%}",
                flush=True,
            )
            shutil.rmtree(folder, ignore_errors=True)

    summary: dict[str, Any] = {}
    for side in sides:
        mine = [r for r in runs if r["side"] == side]
        summary[side] = {
            "flags": " ".join(sides[side]),
            **{f"{key}_median": _median([r[key] for r in mine]) for key in MEDIAN_KEYS},
            "tpm_run_all": [r["tpm_run"] for r in mine],
            "tpm_steady_all": [r["tpm_steady"] for r in mine],
            "wall_s_all": [r["wall_s"] for r in mine],
            "other_load_max": max(r["other_load"] for r in mine),
            "spread_tpm_run": round(_spread([r["tpm_run"] for r in mine]), 4),
            "spread_tpm_steady": round(_spread([r["tpm_steady"] for r in mine]), 4),
        }
    one, two = summary["jobs1"], summary["jobs2"]
    ratio_run = two["tpm_run_median"] / one["tpm_run_median"]
    ratio_steady = two["tpm_steady_median"] / one["tpm_steady_median"]
    return {
        "n_trials": args.trials,
        "repeats": args.repeats,
        "epochs": EPOCHS,
        "cmd": _cmdline(base) + " --jobs {1,2}",
        "sides": summary,
        "ratio_run": round(ratio_run, 3),
        "ratio_steady": round(ratio_steady, 3),
        "per_repeat_ratio_run": _pair_ratios(runs, "tpm_run"),
        "per_repeat_ratio_steady": _pair_ratios(runs, "tpm_steady"),
        "goal_ratio": SPEEDUP_GOAL,
        "ok_run": ratio_run >= SPEEDUP_GOAL,
        "ok_steady": ratio_steady >= SPEEDUP_GOAL,
        "all_runs_ok": all(r["ok"] for r in runs),
        "runs": runs,
    }


def _pair_ratios(runs: list[dict[str, Any]], key: str) -> list[float]:
    by = {(r["side"], r["repeat"]): r[key] for r in runs}
    repeats = sorted({r["repeat"] for r in runs})
    return [round(by["jobs2", i] / by["jobs1", i], 3) for i in repeats]


def run_details(
    run: Monitored, study_dir: Path, n_trials: int, jobs: int, epochs: int = EPOCHS
) -> dict:
    """What one search did and how fast: counts, rates and timings from its journal."""
    trials = load_trials(study_dir)
    counted = [t for t in trials if t["stop_reason"] not in NOT_COUNTED]
    finished = [t for t in counted if t["state"] in ("COMPLETE", "PRUNED", "FAIL")]
    ends = sorted(t["end"] for t in finished)
    starts = sorted(t["start"] for t in finished)
    exited = run.launched + run.wall_s
    first_worker = next((s.t for s in run.samples if s.workers), None)
    workers = {t["worker"] for t in finished}
    complete_full = [t for t in finished if t["state"] == "COMPLETE" and t["epochs_run"] == epochs]
    states: dict[str, int] = {}
    for t in trials:
        key = t["state"] if t["stop_reason"] not in NOT_COUNTED else t["stop_reason"]
        states[key] = states.get(key, 0) + 1
    trial_json = len(list((study_dir / "trials").glob("*/trial.json")))
    overall = (len(ends) - 1) / (ends[-1] - ends[0]) * 60 if len(ends) > 1 else float("nan")
    if len(workers) == jobs:  # the workers ran side by side: add up their rates
        steady = sum(_rate([t["end"] for t in finished if t["worker"] == w]) for w in workers)
    else:  # workers were replaced (they ran one after another): the rate over all trials
        steady = overall
    ok = (
        run.exit_code == 0
        and not run.timed_out
        and len(finished) == n_trials
        and len(complete_full) == n_trials
    )
    return {
        "ok": ok,
        "exit_code": run.exit_code,
        "timed_out": run.timed_out,
        "wall_s": round(run.wall_s, 3),
        "other_load": round(run.other_load, 4),
        "finished": len(finished),
        "complete_all_epochs": len(complete_full),
        "states": states,
        "trial_json_files": trial_json,
        "tpm_run": round(len(finished) / run.wall_s * 60, 2),
        "tpm_steady": round(steady, 2),
        "tpm_steady_how": "per worker, summed" if len(workers) == jobs else "all trials",
        "tpm_first_to_last_end": round(overall, 2),
        "startup_s": round(starts[0] - run.launched, 3) if starts else None,
        "first_worker_s": round(first_worker - run.launched, 3) if first_worker else None,
        "first_end_s": round(ends[0] - run.launched, 3) if ends else None,
        "tail_s": round(exited - ends[-1], 3) if ends else None,
        "trial_mean_s": round(statistics.mean(t["duration_s"] for t in finished), 3)
        if finished
        else None,
        "worker_processes": len(workers),
        "trials_per_worker": sorted(
            (sum(1 for t in finished if t["worker"] == w) for w in workers), reverse=True
        ),
        "peak_worker_rss_mib": _mib(max(_peaks(run).values(), default=0)),
        "cmd": _cmdline(run.cmd),
        "stdout_tail": run.stdout.splitlines()[-4:] if not ok else [],
        "stderr_tail": run.stderr.splitlines()[-20:] if not ok else [],
    }


def _rate(ends: list[float]) -> float:
    """Trials per minute between the first and the last of these trial ends."""
    ends = sorted(ends)
    return (len(ends) - 1) / (ends[-1] - ends[0]) * 60 if len(ends) > 1 else 0.0


def load_trials(study_dir: Path) -> list[dict[str, Any]]:
    """The trials of the study in ``study_dir``'s journal: state, times (epoch seconds) and
    the user attributes tunecb records."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    journal = study_dir / "optuna.journal"
    if not journal.is_file():
        return []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.load_study(study_name=study_dir.name, storage=storage)
    out = []
    for t in study.get_trials(deepcopy=False):
        out.append(
            {
                "number": t.number,
                "state": t.state.name,
                "start": t.datetime_start.timestamp() if t.datetime_start else None,
                "end": t.datetime_complete.timestamp() if t.datetime_complete else None,
                "stop_reason": t.user_attrs.get("stop_reason"),
                "epochs_run": t.user_attrs.get("epochs_run"),
                "duration_s": t.user_attrs.get("duration_s") or 0.0,
                "worker": t.user_attrs.get("worker"),
            }
        )
    return out


# --- 2. memory over a long search --------------------------------------------------------


def measure_memory(tmp: Path, args: argparse.Namespace, env: dict[str, str]) -> dict:
    """The long search with recycling on and off, worker RSS sampled throughout."""
    k = args.worker_trials
    base = [
        *_tunecb(), "search", _shown(LONG_STUDY_FILE), "--results", "{results}",
        "--n-trials", str(args.long_trials), "--jobs", "1",
    ]  # fmt: skip
    sides = {
        "recycling_on": ["--worker-trials", str(k)],
        "recycling_off": ["--worker-trials", "0", "--worker-memory", "0"],
    }
    out: dict[str, Any] = {"n_trials": args.long_trials, "epochs": LONG_EPOCHS, "step": k}
    for side, flags in sides.items():
        folder = tmp / side
        cmd = [a.replace("{results}", str(folder)) for a in base] + flags
        run = run_monitored(cmd, env, args.interval)
        details = run_details(run, folder / LONG_STUDY_NAME, args.long_trials, 1, LONG_EPOCHS)
        trials = load_trials(folder / LONG_STUDY_NAME)
        details |= memory_details(run, trials, k)
        details["flags"] = " ".join(flags)
        out[side] = details
        print(
            f"  memory  {side:<13}  {details['wall_s']:6.1f} s  {details['finished']} trials  "
            f"{details['worker_processes']} worker process(es)  peak worker RSS "
            f"{details['peak_worker_rss_mib']:.0f} MiB  growth "
            f"{details['growth_mib']:+.0f} MiB ({details['samples']} samples)  "
            f"other load {details['other_load']:.0%}",
            flush=True,
        )
        shutil.rmtree(folder, ignore_errors=True)
    return out


def memory_details(run: Monitored, trials: list[dict[str, Any]], step: int) -> dict[str, Any]:
    """Peaks per worker, the RSS series every ``step`` trials, the growth, a time series."""
    import socket

    host = socket.gethostname()
    done = sorted(
        (t for t in trials if t["end"] is not None and t["stop_reason"] not in NOT_COUNTED),
        key=lambda t: t["end"],
    )
    peaks = _peaks(run)
    per_worker = []
    for pid in sorted(peaks, key=lambda p: _first_seen(run, p)):
        mine = [t for t in done if t["worker"] == f"{host}:{pid}"]
        seen = [s.t for s in run.samples if pid in s.workers]
        per_worker.append(
            {
                "pid": pid,
                "trials": len(mine),
                "alive_s": round(seen[-1] - seen[0], 2) if seen else 0.0,
                "peak_rss_mib": _mib(peaks[pid]),
                "rss_after_first_trial_mib": _mib(_rss_at(run, mine[0]["end"], pid))
                if mine
                else None,
                "rss_last_sample_mib": _mib(_last_rss(run, pid)),
            }
        )
    series = []
    marks = sorted({*range(step, len(done) + 1, step), 1, len(done)}) if done else []
    for n in marks:
        end = done[n - 1]["end"]
        series.append(
            {
                "trials": n,
                "t_s": round(end - run.launched, 2),
                "worker_rss_mib": _mib(_rss_at(run, end)),
            }
        )
    first = series[0]["worker_rss_mib"] if series else 0.0
    last = series[-1]["worker_rss_mib"] if series else 0.0
    growth = last - first
    return {
        "samples": len(run.samples),
        "peak_worker_rss_mib": _mib(max(peaks.values(), default=0)),
        "peak_launcher_rss_mib": _mib(max((s.launcher_rss for s in run.samples), default=0)),
        "rss_after_first_trial_mib": first,
        "rss_after_last_trial_mib": last,
        "growth_mib": round(growth, 1),
        "growth_per_trial_kib": round(growth * 1024 / max(1, len(done) - 1), 1),
        "rss_every_step": series,
        "workers": per_worker,
        "other_children": {str(p): what for p, what in run.other_children.items()},
        "timeline": _timeline(run, done),
    }


def _peaks(run: Monitored) -> dict[int, int]:
    """Peak RSS per worker: the larger of the sampled VmRSS and the last VmHWM read."""
    peaks: dict[int, int] = {}
    for s in run.samples:
        for pid, (rss, hwm) in s.workers.items():
            peaks[pid] = max(peaks.get(pid, 0), rss, hwm)
    return peaks


def _first_seen(run: Monitored, pid: int) -> float:
    return next((s.t for s in run.samples if pid in s.workers), float("inf"))


def _rss_at(run: Monitored, when: float, pid: int | None = None) -> int:
    """Worker RSS (one ``pid``, or all workers summed) in the last sample at or before
    ``when`` that saw a worker (``when`` is a trial's end: that worker is still alive)."""
    found = 0
    for s in run.samples:
        if s.t > when:
            break
        if pid is None and s.workers:
            found = sum(rss for rss, _ in s.workers.values())
        elif pid in s.workers:
            found = s.workers[pid][0]
    return found


def _last_rss(run: Monitored, pid: int) -> int:
    return next((s.workers[pid][0] for s in reversed(run.samples) if pid in s.workers), 0)


def _timeline(run: Monitored, done: list[dict[str, Any]], points: int = 20) -> list[dict]:
    """The sampled worker RSS reduced to about ``points`` points (max within each slice)."""
    samples = [s for s in run.samples if s.workers]
    if not samples:
        return []
    size = max(1, len(samples) // points)
    ends = [t["end"] for t in done]
    out = []
    for i in range(0, len(samples), size):
        chunk = samples[i : i + size]
        top = max(chunk, key=lambda s: sum(r for r, _ in s.workers.values()))
        out.append(
            {
                "t_s": round(top.t - run.launched, 2),
                "trials_done": sum(1 for e in ends if e <= top.t),
                "worker_rss_mib": _mib(sum(r for r, _ in top.workers.values())),
                "workers": len(top.workers),
            }
        )
    return out


# --- watching a process tree through /proc -----------------------------------------------


def run_monitored(cmd: list[str], env: dict[str, str], interval: float) -> Monitored:
    """Run ``cmd`` from the repository root, sampling the RSS of its worker processes
    every ``interval`` seconds; stops it (SIGINT, then SIGKILL) after ``RUN_TIMEOUT_S``."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        busy0, mine0 = _cpu_busy_s(), _own_cpu_s()
        launched = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=err, text=True, start_new_session=True
        )
        samples: list[Sample] = []
        kinds: dict[int, str] = {}
        timed_out = False
        while proc.poll() is None:
            samples.append(_sweep(proc.pid, kinds))
            if time.perf_counter() - t0 > RUN_TIMEOUT_S and not timed_out:
                timed_out = True
                _stop(proc)
                break
            time.sleep(interval)
        proc.wait()
        wall = time.perf_counter() - t0
        other = (_cpu_busy_s() - busy0) - (_own_cpu_s() - mine0)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    others = {pid: kind for pid, kind in kinds.items() if kind != "worker"}
    run = Monitored(cmd, launched, wall, proc.returncode, stdout, stderr, samples, others)
    run.timed_out = timed_out
    # clock-tick rounding can make it slightly negative on an idle machine
    run.other_load = max(0.0, other / (wall * len(os.sched_getaffinity(0))))
    if proc.returncode != 0 or timed_out:
        how = "timed out" if timed_out else f"exit {proc.returncode}"
        tail = "\n".join((stdout + stderr).splitlines()[-20:])
        print(f"  !! {how}: {_cmdline(cmd)}\n{tail}", flush=True)
    return run


def _sweep(parent: int, kinds: dict[int, str]) -> Sample:
    """RSS of ``parent`` and of its worker children, now."""
    now = time.time()
    workers: dict[int, tuple[int, int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if _ppid(pid) != parent:
            continue
        kind = kinds.get(pid)
        if kind not in ("worker", "resource_tracker"):
            # not cached otherwise: between fork and exec a child still shows the parent's
            # command line
            kind = kinds[pid] = _kind(pid)
        if kind != "worker":
            continue
        mem = _status_mem(pid)
        if mem is not None:
            workers[pid] = mem
    launcher = _status_mem(parent)
    return Sample(now, launcher[0] if launcher else 0, workers)


def _cpu_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores), from ``/proc/stat``."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """CPU seconds of this process and of its finished (waited-for) descendants."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read()
    except OSError:
        return None
    # pid (comm) state ppid ...; comm may hold spaces and parentheses
    fields = text[text.rfind(b")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None


def _kind(pid: int) -> str:
    """``worker`` for a multiprocessing spawn child, else what the command line says."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "gone"
    if "resource_tracker" in cmdline:
        return "resource_tracker"
    if "spawn_main" in cmdline:
        return "worker"
    return cmdline[:200] or "unknown"


def _status_mem(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of ``pid`` in bytes, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    found = {}
    for line in lines:
        if line.startswith((b"VmRSS:", b"VmHWM:")):
            key, value = line.split(b":", 1)
            found[key] = int(value.split()[0]) * 1024
    if b"VmRSS" not in found:  # a zombie has no memory lines
        return None
    return found[b"VmRSS"], found.get(b"VmHWM", found[b"VmRSS"])


def _stop(proc: subprocess.Popen) -> None:
    """Stop a hung search the way Ctrl-C does; kill its process group if that fails."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# --- helpers -----------------------------------------------------------------------------


def _warm_up(env: dict[str, str]) -> None:
    """Import the heavy libraries once, so the first timed run does not read them cold."""
    subprocess.run(
        [sys.executable, "-c", "import tensorflow, keras, optuna, sklearn"],
        cwd=ROOT, env=env, capture_output=True, check=True,
    )  # fmt: skip


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


def _mib(n: float) -> float:
    return round(n / MIB, 1)


def _problems(result: dict[str, Any]) -> list[str]:
    """Runs that crashed, hung or ran the wrong number of trials (the numbers are then
    not comparable)."""
    found = []
    runs = list((result["throughput"] or {}).get("runs", []))
    memory = result["memory"] or {}
    runs += [memory[k] | {"side": k} for k in ("recycling_on", "recycling_off") if k in memory]
    for r in runs:
        if not r["ok"]:
            found.append(
                f"{r['side']} (repeat {r.get('repeat', 0) + 1}): exit {r['exit_code']}, "
                f"timed out {r['timed_out']}, {r['finished']} finished trials "
                f"({r['complete_all_epochs']} complete with all epochs), states {r['states']}"
            )
    return found


def table(result: dict[str, Any]) -> str:
    """The results as markdown tables, with lines on noise and load."""
    lines: list[str] = []
    tp, mem = result["throughput"], result["memory"]
    if tp:
        sides = tp["sides"]
        names = list(sides)
        head = ("measurement (median of runs)", *(f"--jobs {sides[n]['flags'][7:]}" for n in names))
        status = {True: "OK", False: "UNDER GOAL"}
        rows: list[tuple[str, ...]] = [
            (*head, "jobs2 / jobs1", "goal"),
            (
                "trials/min, whole run (finished / wall)",
                *(f"{sides[n]['tpm_run_median']:.1f} {_list(sides[n]['tpm_run_all'], 1)}"
                  for n in names),
                f"{tp['ratio_run']:.2f}x {status[tp['ok_run']]}", f">= {SPEEDUP_GOAL}x",
            ),
            (
                "trials/min, steady (first to last trial end)",
                *(f"{sides[n]['tpm_steady_median']:.1f} {_list(sides[n]['tpm_steady_all'], 1)}"
                  for n in names),
                f"{tp['ratio_steady']:.2f}x {status[tp['ok_steady']]}", f">= {SPEEDUP_GOAL}x",
            ),
            (
                f"wall time, {tp['n_trials']} trials x {tp['epochs']} epochs (s)",
                *(f"{sides[n]['wall_s_median']:.2f} {_list(sides[n]['wall_s_all'])}"
                  for n in names),
                "", "",
            ),
            (
                "start-up: launch to first worker process / first trial start (s)",
                *(_pair(sides[n], "first_worker_s_median", "startup_s_median") for n in names),
                "", "",
            ),
            (
                "launch to first trial end / last end to exit (s)",
                *(_pair(sides[n], "first_end_s_median", "tail_s_median") for n in names),
                "", "",
            ),
            (
                "one trial, in-trial time (s)",
                *(f"{_num(sides[n]['trial_mean_s_median'], 2)}" for n in names), "", "",
            ),
            (
                "other load during the runs (max)",
                *(f"{sides[n]['other_load_max']:.1%}" for n in names), "", "",
            ),
        ]  # fmt: skip
        lines += _markdown(rows)
        noisy = [
            f"{n} {key[7:]} {sides[n][key]:.0%}"
            for n in names
            for key in ("spread_tpm_run", "spread_tpm_steady")
            if sides[n][key] > NOISY_SPREAD
        ]
        lines += [
            "",
            f"command: {tp['cmd']}",
            f"--jobs 1 = one worker using all {result['machine']['cpus_usable']} cores; "
            f"--jobs 2 = two workers, cores / 2 threads each",
            f"per repeat jobs2/jobs1: whole run {_list(tp['per_repeat_ratio_run'])}, "
            f"steady {_list(tp['per_repeat_ratio_steady'])}",
            "every run finished all trials with all epochs: "
            f"{tp['all_runs_ok']}"
            + (f"; NOISY (spread above {NOISY_SPREAD:.0%}): {', '.join(noisy)}" if noisy else ""),
            "",
        ]
    if mem:
        on, off = mem["recycling_on"], mem["recycling_off"]
        step = mem["step"]
        rows = [
            (
                f"long search: {mem['n_trials']} trials x {mem['epochs']} epoch, --jobs 1",
                f"recycling on ({on['flags']})", f"recycling off ({off['flags']})",
            ),
            ("wall time (s)", f"{on['wall_s']:.1f}", f"{off['wall_s']:.1f}"),
            ("trials finished", str(on["finished"]), str(off["finished"])),
            ("worker processes", str(on["worker_processes"]), str(off["worker_processes"])),
            (
                "peak worker RSS (MiB)",
                f"{on['peak_worker_rss_mib']:.0f}", f"{off['peak_worker_rss_mib']:.0f}",
            ),
            (
                "worker RSS after trial 1 -> after the last (MiB)",
                f"{on['rss_after_first_trial_mib']:.0f} -> {on['rss_after_last_trial_mib']:.0f}",
                f"{off['rss_after_first_trial_mib']:.0f} -> "
                f"{off['rss_after_last_trial_mib']:.0f}",
            ),
            (
                "growth, last - first (MiB; KiB per trial)",
                f"{on['growth_mib']:+.0f} ({on['growth_per_trial_kib']:+.0f})",
                f"{off['growth_mib']:+.0f} ({off['growth_per_trial_kib']:+.0f})",
            ),
            (
                "peak RSS of the tunecb search process itself (MiB)",
                f"{on['peak_launcher_rss_mib']:.0f}", f"{off['peak_launcher_rss_mib']:.0f}",
            ),
            ("other load during the run", f"{on['other_load']:.1%}", f"{off['other_load']:.1%}"),
        ]  # fmt: skip
        lines += _markdown(rows)
        series = {
            side: {p["trials"]: p["worker_rss_mib"] for p in mem[side]["rss_every_step"]}
            for side in ("recycling_on", "recycling_off")
        }
        marks = sorted(set(series["recycling_on"]) | set(series["recycling_off"]))
        lines += ["", f"worker RSS (MiB) at the end of trial n (every {step}th):", ""]
        lines += _markdown(
            [
                ("n", *(str(n) for n in marks)),
                ("on", *(_num(series["recycling_on"].get(n)) for n in marks)),
                ("off", *(_num(series["recycling_off"].get(n)) for n in marks)),
            ]
        )
        peaks = ", ".join(f"{w['peak_rss_mib']:.0f}" for w in on["workers"])
        lines += ["", f"peak RSS per worker process, recycling on (MiB): {peaks}", ""]
    machine = result["machine"]
    lines.append(
        f"{machine['cpus']} CPUs; load average before {machine['loadavg_1_5_15_before']}, "
        f"after {machine['loadavg_1_5_15_after']}"
    )
    busiest = max(_other_loads(result), default=0.0)
    if busiest > BUSY_LOAD:
        lines.append(
            f"WARNING: other processes used up to {busiest:.0%} of the machine during a run "
            f"(more than {BUSY_LOAD:.0%}): the numbers are doubtful; run again on an idle machine"
        )
    return "\n".join(lines)


def _other_loads(result: dict[str, Any]) -> list[float]:
    runs = list((result["throughput"] or {}).get("runs", []))
    memory = result["memory"] or {}
    runs += [memory[k] for k in ("recycling_on", "recycling_off") if k in memory]
    return [r["other_load"] for r in runs]


def _markdown(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in rows]  # fmt: skip
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return lines


def _pair(side: dict[str, Any], a: str, b: str) -> str:
    return f"{_num(side[a], 2)} / {_num(side[b], 2)}"


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _list(values: list[float], digits: int = 2) -> str:
    return "[" + ", ".join(f"{v:.{digits}f}" for v in values) + "]"


if __name__ == "__main__":
    raise SystemExit(main())
