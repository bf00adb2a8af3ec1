"""What tracking costs: the same small MLP search untracked, with ``--mlflow``, ``--wandb``.

Run it from the repository root (needs ``pip install -e ".[cpu,mlflow,wandb]"``)::

    python benchmarks/tracking.py --sides plain,mlflow,wandb --jobs 2,0 --trials 6 \
        --epochs 20 --repeats 6 [--json PATH]

It starts a real MLflow tracking server on loopback (SQLite backend, artifacts served by
it, one worker; stopped at the end), then runs ``tunecb search benchmarks/overhead_study.py
--n-trials N --pruner none --jobs J`` (a fixed MLP on the bundled digits, 30 epochs a trial
unless ``--epochs``) once per side (``plain``: untracked; ``mlflow``: through tunecb's REST
client; ``wandb``: W&B offline) at each ``--jobs`` per repeat, the sides rotating. Each search
is timed on the wall clock and by the CPU seconds of all its processes (the launcher, its
workers, W&B's tracker processes and service; this script is their subreaper, so one that
outlives its parent is counted too), and the server's CPU meanwhile, apart (the user's
infrastructure). With the cores full (``--jobs 2`` on 2 cores) any CPU tracking adds
competes with training, so the CPU ratio bounds the wall ratio and is far steadier on a
shared machine. It prints each side's medians and spread and, for each tracked side, the
ratio to the untracked search of the same repeat (paired): median, range and a bootstrap
90 % interval of the median; JSON to ``benchmarks/out/tracking.json``.

``--fixed wandb`` measures instead what ``--wandb`` costs one process, fixed (no fit, no
server: W&B's offline mode under a temporary ``WANDB_DIR``): a fresh process each repeat
imports the tracker, opens the search's run and one trial's run, logs 30 epochs in three
batches, ends both and stops W&B's service; it prints the CPU seconds of the process and
of W&B's service process (``wandb-core``, its child), medians and spread.

``--report RESULTS_DIR --before TREE`` measures the report a search writes for its tracker
at its end (the launcher's ``_report_writer``) on a finished study (e.g. one of
``tunecb search benchmarks/overhead_study.py --n-trials 6 --epochs 20``): a fresh process
each repeat, this tree and ``TREE`` alternating; CPU seconds of the drawing alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import machine, run_timed, spread, write_result
from common import shown as _shown
from common import tunecb_command as _tunecb

HERE = Path(__file__).resolve().parent
STUDY_FILE = HERE / "overhead_study.py"
DEFAULT_JSON = HERE / "out" / "tracking.json"
GOAL = 1.02


def start_server(folder: Path) -> tuple[subprocess.Popen, str]:
    """A MLflow server of ours on a free loopback port, once it answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination", str(folder / "artifacts"), "--workers", "1",
    ]  # fmt: skip
    log = open(folder / "server.log", "wb")  # noqa: SIM115 (lives as long as the server)
    proc = subprocess.Popen(argv, start_new_session=True, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    stop_server(proc)
    raise SystemExit(f"mlflow server did not start; see {folder / 'server.log'}")


def stop_server(proc: subprocess.Popen) -> None:
    """Its whole process group (uvicorn's workers too)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(15)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def children_cpu() -> float:
    """User + system CPU seconds of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def server_seconds(proc: subprocess.Popen | None) -> float:
    """CPU seconds the server's processes (uvicorn's worker too) have used so far (NaN:
    a server not started here)."""
    import psutil

    if proc is None:
        return float("nan")
    try:
        top = psutil.Process(proc.pid)
        total = 0.0
        for p in [top, *top.children(recursive=True)]:
            times = p.cpu_times()
            total += times.user + times.system
        return total
    except psutil.Error:
        return float("nan")


# One tracking process's fixed work under W&B offline; prints "self_cpu children_cpu wall".
FIXED_WANDB = """
import resource, time
t0, w0 = time.process_time(), time.perf_counter()
from tunecb.tracking._base import TrialRecord
from tunecb.tracking.wandb_tracker import WandbTracker
tracker = WandbTracker.open("bench", "fixed")
search = tracker.start_search("fixed", None)
run = tracker.start_trial(search, 0, None)
rows = [{"epoch": e, "loss": 1.0 / e, "val_loss": 2.0 / e} for e in range(1, 31)]
for part in range(3):
    tracker.log_epochs(run, rows[10 * part : 10 * part + 10])
tracker.finish_trial(run, TrialRecord(number=0, state="COMPLETE", history=rows), 30)
tracker.end_search(search, {"number": 0, "value": 0.5, "params": {}}, None)
import wandb
wandb.teardown()
c = resource.getrusage(resource.RUSAGE_CHILDREN)
print(time.process_time() - t0, c.ru_utime + c.ru_stime, time.perf_counter() - w0)
"""


def fixed_cost(repeats: int, json_path: Path) -> int:
    """``--fixed wandb``: W&B's fixed cost per tracking process (see the module's text)."""
    load_before, started = os.getloadavg(), time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="tunecb-wandb-"))
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.update({k: str(tmp) for k in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR",
                                       "WANDB_CONFIG_DIR")})  # fmt: skip
    own, service, wall = [], [], []
    try:
        for repeat in range(repeats):
            _, out = run_timed([sys.executable, "-c", FIXED_WANDB], env)
            values = [float(v) for v in out.split()[-3:]]
            own.append(values[0])
            service.append(values[1])
            wall.append(values[2])
            print(f"repeat {repeat}: {values[0]:.2f} s CPU, wandb-core {values[1]:.2f} s, "
                  f"{values[2]:.1f} s wall", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(load_before, os.getloadavg()),
        "settings": {"fixed": "wandb", "repeats": repeats},
        "cpu_s": own, "service_cpu_s": service, "wall_s": wall,
        "total_s": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    table = (
        f"W&B offline, fixed per process, median of {repeats}: "
        f"{statistics.median(own):.2f} s CPU (spread {spread(own):.0%}) + wandb-core "
        f"{statistics.median(service):.2f} s (spread {spread(service):.0%}); "
        f"{statistics.median(wall):.1f} s wall"
    )
    write_result(result, json_path, table)
    return 0


# The launcher's report for the tracker, drawn once; prints "cpu_s wall_s bytes".
REPORT = r"""
import sys, time
from pathlib import Path
from types import SimpleNamespace
import optuna, tunecb.launcher
folder = Path(sys.argv[1])
where = SimpleNamespace(results=folder.parent, name=folder.name, storage=None)
page = Path(sys.argv[2])
c, w = time.process_time(), time.perf_counter()
tunecb.launcher._report_writer(where)(page)
print(time.process_time() - c, time.perf_counter() - w, page.stat().st_size)
"""


def report_cost(folder: Path, before: Path, repeats: int, json_path: Path) -> int:
    """``--report``: the tracker's copy of the report, this tree against ``before``."""
    load_before, started = os.getloadavg(), time.perf_counter()
    trees = {"after": str(HERE.parent), "before": str(before)}
    found: dict[str, list[list[float]]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="tunecb-report-") as tmp:
        for repeat in range(repeats):
            for name in list(trees)[:: 1 if repeat % 2 else -1]:
                env = {**os.environ, "PYTHONPATH": trees[name], "TF_CPP_MIN_LOG_LEVEL": "2"}
                page = f"{tmp}/{name}.html"  # -P: the tree's tunecb, not the cwd's
                argv_ = [sys.executable, "-P", "-c", REPORT, str(folder.resolve()), page]
                _, out = run_timed(argv_, env)
                found[name].append([float(v) for v in out.split()[-3:]])
                print(f"{name:6s} repeat {repeat}: {found[name][-1][0]:.3f} s CPU", flush=True)
    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(load_before, os.getloadavg()),
        "settings": {"report": str(folder), "before": str(before), "repeats": repeats},
        "cpu_wall_bytes": found, "total_s": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    rows = [f"the tracker's copy of the report, median of {repeats} fresh processes"]
    for name, runs in found.items():
        cpu = [r[0] for r in runs]
        rows.append(f"  {name:6s} {statistics.median(cpu):6.3f} s CPU (spread {spread(cpu):.0%}), "
                    f"{runs[0][2] / 1000:.0f} kB")  # fmt: skip
    write_result(result, json_path, "\n".join(rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6, help="trials per search (6)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side (2)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument("--url", help="an MLflow server already running (none: start one)")
    parser.add_argument("--fixed", choices=["wandb"], help="W&B's fixed cost per process")
    parser.add_argument(
        "--sides",
        default="plain,mlflow",
        help="the searches compared, rotating: plain, mlflow, wandb (W&B offline) (plain,mlflow)",
    )
    parser.add_argument("--epochs", type=int, help="epochs a trial (the study's 30)")
    parser.add_argument(
        "--jobs", default="0",
        help="the searches' --jobs, comma-separated (e.g. 2,0: each repeat runs every side "
        "at each, alternating) (0)",
    )  # fmt: skip
    parser.add_argument(
        "--before",
        type=Path,
        help="another tunecb tree (e.g. `git archive` of an older commit): sides named "
        "mlflow-before, wandb-before run it (PYTHONPATH), for before/after in one run",
    )
    parser.add_argument("--report", type=Path, help="a finished study's folder: the report's cost")
    args = parser.parse_args(argv)
    if args.report:
        if args.before is None:
            parser.error("--report needs --before TREE")
        return report_cost(args.report, args.before, args.repeats, DEFAULT_JSON.with_name(
            "tracking_report.json"))  # fmt: skip
    if args.fixed:
        return fixed_cost(args.repeats, args.json.with_name("tracking_wandb_fixed.json"))
    return search_cost(args)


def subreaper() -> None:
    """Make this process the subreaper of its descendants (Linux): a process of a search
    that outlives its parent (W&B's service, a tracker process) is then reparented here and
    reaped by :func:`reap_orphans`, so that its CPU counts in :func:`children_cpu`."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        print("warning: not a subreaper; orphaned processes' CPU is not counted", flush=True)


def reap_orphans(server: subprocess.Popen | None, timeout: float = 60.0) -> int:
    """Wait for the search's processes that outlived it (reparented here); how many."""
    import psutil

    me, reaped, deadline = psutil.Process(), 0, time.monotonic() + timeout
    while True:
        left = []
        for child in me.children():
            try:
                if server is not None and os.getpgid(child.pid) == server.pid:
                    continue
                if os.waitpid(child.pid, os.WNOHANG)[0]:
                    reaped += 1
                else:
                    left.append(child.pid)
            except (ChildProcessError, ProcessLookupError):
                continue
        if not left:
            return reaped
        if time.monotonic() > deadline:
            print(f"warning: processes {left} still running; not counted", flush=True)
            return reaped
        time.sleep(0.05)


def bootstrap_median(values: list[float], level: float = 0.90, draws: int = 10_000) -> list[float]:
    """A percentile bootstrap interval of the median of ``values`` (seeded: reproducible).

    >>> bootstrap_median([1.0, 1.0, 1.0])
    [1.0, 1.0]
    """
    import random

    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(draws))
    low = medians[int((1 - level) / 2 * draws)]
    high = medians[min(draws - 1, int((1 + level) / 2 * draws))]
    return [round(low, 4), round(high, 4)]


def paired(tracked: list[float], plain: list[float]) -> dict:
    """Each tracked run over the untracked run of its repeat: median, range, 90 % interval."""
    ratios = [t / p for t, p in zip(tracked, plain, strict=True)]
    return {
        "ratios": [round(r, 4) for r in ratios], "median": round(statistics.median(ratios), 4),
        "min": round(min(ratios), 4), "max": round(max(ratios), 4),
        "ci90": bootstrap_median(ratios),
    }  # fmt: skip


def search_cost(args: argparse.Namespace) -> int:
    """The searches of ``--sides`` at each ``--jobs``, rotating; paired ratios to ``plain``."""
    started = time.perf_counter()
    subreaper()
    tmp = Path(tempfile.mkdtemp(prefix="tunecb-tracking-"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    sides, jobs_list = args.sides.split(","), args.jobs.split(",")
    if "wandb" in sides or "wandb-before" in sides:
        env.update({"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
        env.update(
            {
                k: str(tmp / "wandb")
                for k in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR")
            }
        )
        (tmp / "wandb").mkdir()
    load_before = os.getloadavg()
    tracked = {side.removesuffix("-before") for side in sides}
    proc, url = (None, args.url) if args.url or "mlflow" not in tracked else start_server(tmp)
    runs: list[dict] = []
    try:
        run_timed([sys.executable, "-c", "import tensorflow, keras, optuna"], env)
        for repeat in range(args.repeats):
            for jobs in jobs_list[:: -1 if repeat % 2 else 1]:
                for side in sides[repeat % len(sides) :] + sides[: repeat % len(sides)]:
                    runs.append(_one_search(args, tmp, env, url, proc, side, jobs, repeat))
    finally:
        if proc is not None:
            stop_server(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    return _paired_table(args, sides, jobs_list, runs, load_before, started)


def _one_search(
    args: argparse.Namespace, tmp: Path, env: dict[str, str], url: str | None,
    proc: subprocess.Popen | None, side: str, jobs: str, repeat: int,
) -> dict:  # fmt: skip
    """One search, timed: wall, CPU of all its processes, the server's CPU meanwhile."""
    results = tmp / f"{side}-{jobs}-{repeat}"
    cmd = [
        *_tunecb(), "search", _shown(STUDY_FILE), "--results", str(results),
        "--n-trials", str(args.trials), "--pruner", "none", "--jobs", jobs, "--quiet",
    ]  # fmt: skip
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    kind, side_env = side.removesuffix("-before"), env
    if side.endswith("-before"):
        side_env = {**env, "PYTHONPATH": str(args.before)}
    name = f"bench-{side}-{jobs}-{repeat}"
    if kind == "mlflow":
        cmd += ["--mlflow", url, "--mlflow-experiment", name]
    elif kind == "wandb":
        cmd += ["--wandb", name]
    load1 = os.getloadavg()[0]
    cpu_before, server_before = children_cpu(), server_seconds(proc)
    wall, _ = run_timed(cmd, side_env)
    orphans = reap_orphans(proc)
    run = {
        "side": side, "jobs": jobs, "repeat": repeat, "wall_s": round(wall, 3),
        "cpu_s": round(children_cpu() - cpu_before, 3),
        "server_cpu_s": round(server_seconds(proc) - server_before, 3),
        "orphans": orphans, "load1_before": round(load1, 2),
    }  # fmt: skip
    print(f"jobs {jobs} {side:12s} repeat {repeat}: {wall:6.1f} s wall, {run['cpu_s']:6.1f} s "
          f"CPU, server {run['server_cpu_s']:.2f} s, load {load1:.1f}", flush=True)  # fmt: skip
    return run


def _paired_table(
    args: argparse.Namespace, sides: list[str], jobs_list: list[str], runs: list[dict],
    load_before: tuple[float, ...], started: float,
) -> int:  # fmt: skip
    """Medians and spreads of each side at each ``--jobs``; each tracked side paired, repeat
    by repeat, with ``plain``: wall and CPU ratios, their range and 90 % interval."""
    summary: dict[str, dict] = {}
    rows = [f"search of {args.trials} trials x {args.epochs or 30} epochs, {args.repeats} "
            f"repeats, sides rotating; paired: tracked / untracked of the same repeat, median "
            f"[min-max] (bootstrap 90 % interval of the median)"]  # fmt: skip
    for jobs in jobs_list:
        found = {s: [r for r in runs if r["jobs"] == jobs and r["side"] == s] for s in sides}
        summary[jobs] = {}
        rows.append(f"--jobs {jobs}")
        for side in sides:
            wall = [r["wall_s"] for r in found[side]]
            cpu = [r["cpu_s"] for r in found[side]]
            entry = {
                "wall_median": round(statistics.median(wall), 3), "wall_spread": spread(wall),
                "cpu_median": round(statistics.median(cpu), 3), "cpu_spread": spread(cpu),
                "server_cpu_median": round(statistics.median(
                    [r["server_cpu_s"] for r in found[side]]), 3),
            }  # fmt: skip
            row = (f"  {side:12s} wall {entry['wall_median']:6.1f} s (spread {spread(wall):4.0%})"
                   f"  CPU {entry['cpu_median']:6.1f} s (spread {spread(cpu):4.0%})")  # fmt: skip
            if side != "plain" and "plain" in found:
                base = found["plain"]
                entry["wall_paired"] = paired(wall, [r["wall_s"] for r in base])
                entry["cpu_paired"] = paired(cpu, [r["cpu_s"] for r in base])
                w, c = entry["wall_paired"], entry["cpu_paired"]
                row += (f"\n      wall {w['median']:.3f} [{w['min']:.3f}-{w['max']:.3f}] "
                        f"({w['ci90'][0]:.3f}-{w['ci90'][1]:.3f})   CPU {c['median']:.3f} "
                        f"[{c['min']:.3f}-{c['max']:.3f}] ({c['ci90'][0]:.3f}-{c['ci90'][1]:.3f})"
                        f"   server {entry['server_cpu_median']:.2f} s")  # fmt: skip
            summary[jobs][side] = entry
            rows.append(row)
    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(load_before, os.getloadavg()),
        "settings": {"trials": args.trials, "repeats": args.repeats, "sides": sides,
                     "jobs": jobs_list, "epochs": args.epochs or 30,
                     "before": str(args.before) if args.before else None},
        "summary": summary, "runs": runs, "total_s": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    rows.append(f"goal: tracked / untracked <= {GOAL}; the MLflow server's CPU is not in CPU")
    write_result(result, args.json, "\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
