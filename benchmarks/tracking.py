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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6, help="trials per search (6)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side (2)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument("--url", help="an MLflow server already running (none: start one)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="tunecb-tracking-"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    load_before = os.getloadavg()
    proc, url = (None, args.url) if args.url else start_server(tmp)
    walls: dict[str, list[float]] = {"plain": [], "mlflow": []}
    cpus: dict[str, list[float]] = {"plain": [], "mlflow": []}  # the search's CPU seconds
    server_cpu: list[float] = []  # the server's CPU seconds during each tracked search
    try:
        run_timed([sys.executable, "-c", "import tensorflow, keras, optuna"], env)
        for repeat in range(args.repeats):
            sides = ("plain", "mlflow") if repeat % 2 == 0 else ("mlflow", "plain")
            for side in sides:
                results = tmp / f"{side}-{repeat}"
                cmd = [
                    *_tunecb(), "search", _shown(STUDY_FILE), "--results", str(results),
                    "--n-trials", str(args.trials), "--pruner", "none", "--jobs", "0",
                    "--quiet",
                ]  # fmt: skip
                if side == "mlflow":
                    cmd += ["--mlflow", url, "--mlflow-experiment", f"bench-{tmp.name}-{repeat}"]
                cpu_before, server_before = children_cpu(), server_seconds(proc)
                wall, _ = run_timed(cmd, env)
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


if __name__ == "__main__":
    sys.exit(main())
