"""What ``--mlflow`` costs: the same small MLP search with and without MLflow tracking.

Run it from the repository root (needs ``pip install -e ".[cpu,mlflow]"``)::

    python benchmarks/tracking.py [--trials N --repeats R] [--json PATH]

It starts a real MLflow tracking server on loopback (SQLite backend, artifacts served by
it, one worker; stopped at the end), then times ``tunecb search
benchmarks/overhead_study.py --n-trials N --pruner none --jobs 0`` (a fixed MLP on the
bundled digits, 30 epochs a trial) R times with ``--mlflow URL`` and R times without, the
order alternating; it also takes each search's CPU seconds (its process and workers) and
the server's, steadier than wall time on a shared machine. Both sides run as subprocesses
and pay Python start-up and the TensorFlow import; the tracked side speaks to the server
through tunecb's REST client (no ``import mlflow`` in the search's processes). It prints the
medians, their ratio (goal <= 1.02) and the extra seconds per trial, and writes JSON to
``benchmarks/out/tracking.json``. Rough numbers on a shared machine: the spread of the
repeats is printed.

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
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="tunecb-tracking-"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    sides = args.sides.split(",")
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
    walls: dict[str, list[float]] = {side: [] for side in sides}
    cpus: dict[str, list[float]] = {side: [] for side in sides}  # the search's CPU seconds
    server_cpu: list[float] = []  # the server's CPU seconds during each tracked search
    try:
        run_timed([sys.executable, "-c", "import tensorflow, keras, optuna"], env)
        for repeat in range(args.repeats):
            for side in sides[repeat % len(sides) :] + sides[: repeat % len(sides)]:
                results = tmp / f"{side}-{repeat}"
                cmd = [
                    *_tunecb(), "search", _shown(STUDY_FILE), "--results", str(results),
                    "--n-trials", str(args.trials), "--pruner", "none", "--jobs", "0",
                    "--quiet",
                ]  # fmt: skip
                if args.epochs:
                    cmd += ["--epochs", str(args.epochs)]
                kind, side_env = side.removesuffix("-before"), env
                if side.endswith("-before"):
                    side_env = {**env, "PYTHONPATH": str(args.before)}
                if kind == "mlflow":
                    cmd += ["--mlflow", url, "--mlflow-experiment", f"bench-{side}-{repeat}"]
                elif kind == "wandb":
                    cmd += ["--wandb", f"bench-{side}-{repeat}"]
                cpu_before, server_before = children_cpu(), server_seconds(proc)
                wall, _ = run_timed(cmd, side_env)
                walls[side].append(wall)
                cpus[side].append(children_cpu() - cpu_before)
                if side == "mlflow":
                    server_cpu.append(server_seconds(proc) - server_before)
                print(f"{side:7s} repeat {repeat}: {wall:.1f} s wall, "
                      f"{cpus[side][-1]:.1f} s CPU", flush=True)  # fmt: skip
    finally:
        if proc is not None:
            stop_server(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    if sides != ["plain", "mlflow"]:
        return _sides_table(args, sides, walls, cpus, load_before, started)
    plain, tracked = (statistics.median(walls[s]) for s in ("plain", "mlflow"))
    cpu_plain, cpu_tracked = (statistics.median(cpus[s]) for s in ("plain", "mlflow"))
    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(load_before, os.getloadavg()),
        "settings": {"trials": args.trials, "repeats": args.repeats},
        "wall_s": walls,
        "cpu_s": cpus,
        "server_cpu_s": server_cpu,
        "ratio": round(tracked / plain, 4),
        "cpu_ratio": round(cpu_tracked / cpu_plain, 4),
        "extra_s_per_trial": round((tracked - plain) / args.trials, 3),
        "total_s": round(time.perf_counter() - started, 1),
    }
    table = "\n".join([
        f"search of {args.trials} trials, median of {args.repeats} (spread plain "
        f"{spread(walls['plain']):.0%}, mlflow {spread(walls['mlflow']):.0%})",
        f"  without tracking  {plain:7.1f} s",
        f"  --mlflow          {tracked:7.1f} s",
        f"  ratio             {tracked / plain:7.3f}  (goal <= {GOAL})",
        f"  CPU of the search {cpu_plain:7.1f} s without, {cpu_tracked:.1f} s with "
        f"(ratio {cpu_tracked / cpu_plain:.3f}, spread {spread(cpus['plain']):.0%} / "
        f"{spread(cpus['mlflow']):.0%}); the server {statistics.median(server_cpu):.1f} s",
        f"  extra per trial   {result['extra_s_per_trial']:7.3f} s",
    ])  # fmt: skip
    write_result(result, args.json, table)
    return 0


def _sides_table(
    args: argparse.Namespace, sides: list[str], walls: dict[str, list[float]],
    cpus: dict[str, list[float]], load_before: tuple[float, ...], started: float,
) -> int:  # fmt: skip
    """Medians of each side, and each tracked side's ratio to ``plain`` (if measured)."""
    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(load_before, os.getloadavg()),
        "settings": {"trials": args.trials, "repeats": args.repeats, "sides": sides,
                     "epochs": args.epochs or 30},
        "wall_s": walls, "cpu_s": cpus, "total_s": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    rows = [f"search of {args.trials} trials x {args.epochs or 30} epochs, median of "
            f"{args.repeats}, sides rotating"]  # fmt: skip
    base = statistics.median(cpus["plain"]) if "plain" in cpus else None
    base_wall = statistics.median(walls["plain"]) if "plain" in walls else None
    for side in sides:
        cpu, wall = statistics.median(cpus[side]), statistics.median(walls[side])
        ratio = f", CPU ratio {cpu / base:.3f}, wall ratio {wall / base_wall:.3f}" if base else ""
        rows.append(f"  {side:12s} {cpu:6.1f} s CPU (spread {spread(cpus[side]):.0%}), "
                    f"{wall:6.1f} s wall (spread {spread(walls[side]):.0%}){ratio}")  # fmt: skip
    path = args.json if args.json != DEFAULT_JSON else args.json.with_name("tracking_sides.json")
    write_result(result, path, "\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
