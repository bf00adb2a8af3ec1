"""Where tracking's cost goes: each tracker's calls timed phase by phase (CPU and wall).

Run it from the repository root (needs ``pip install -e ".[cpu,mlflow,wandb]"``)::

    python benchmarks/tracking_phases.py [--trials 6 --repeats 3] [--json PATH]

It runs one plain search (``benchmarks/overhead_study.py``, ``--epochs 20``) for real
records: each trial's ``trial.json``, ``history.csv`` and checkpoint. Then, for every client
(``rest``: tunecb's REST client on a local ``mlflow server`` with SQLite; ``file``: MLflow's
client on a folder store; ``wandb``: W&B offline), a fresh process per repeat (the clients
rotating) does what one search's tracking does, with optuna and tunecb's launcher imported
first as in a search's process, and times each phase: ``import`` (the tracker's module and
its client library), ``open`` (client and experiment), ``start_search`` (the parent run),
``start_trial``, ``log_epochs`` (one batch of 2 s of epochs) and ``finish_trial`` (params,
tags, the last epochs, the checkpoint, the state) per trial, ``report`` (the HTML report
drawn for the parent run), ``end_search`` (best and report on the parent run) and
``close`` (W&B: its tracker process and service stopped). W&B's client runs in its
tracker process (:mod:`tunecb.tracking.remote`): its phases time this process's wait for
it, and ``(children)`` holds the CPU of that process and of W&B's service
(``wandb-core``). Medians per phase; JSON to ``benchmarks/out/tracking_phases.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import machine, run_timed, spread, write_result
from common import shown as _shown
from common import tunecb_command as _tunecb
from tracking import start_server, stop_server

HERE = Path(__file__).resolve().parent
STUDY_FILE = HERE / "overhead_study.py"
DEFAULT_JSON = HERE / "out" / "tracking_phases.json"

# One tracking process's work, phase by phase; prints one JSON line of
# {phase: [cpu_s, wall_s]} (per-trial phases summed) and the children's CPU.
PHASES = r"""
import json, resource, sys, time
import optuna, tunecb.launcher  # what a search's process holds already
from pathlib import Path
from types import SimpleNamespace
kind, uri, study_root = sys.argv[1], sys.argv[2], Path(sys.argv[3])
trials, batch = int(sys.argv[4]), int(sys.argv[5])
times = {}
def timed(phase, fn, *args):
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn(*args)
    c, w = times.get(phase, (0.0, 0.0))
    times[phase] = (c + time.process_time() - c0, w + time.perf_counter() - w0)
    return out
def load():
    from tunecb.tracking.targets import Target
    from tunecb.tracking._base import MLFLOW, WANDB
    if kind == "file":
        import mlflow.tracking
    return Target(WANDB if kind == "wandb" else MLFLOW, uri, "phases-" + str(time.time_ns()))
target = timed("import", load)
tracker = timed("open", target.tracker, True)
parent = timed("start_search", tracker.start_search, "phases", None)
from tunecb.results import StudyDir
from tunecb.tracking.records import trial_record
folder = StudyDir(study_root)
for number in range(trials):
    run_id = timed("start_trial", tracker.start_trial, parent, number, None)
    record = trial_record(folder, number)
    for start in range(0, len(record.history), batch):
        timed("log_epochs", tracker.log_epochs, run_id, record.history[start:start + batch])
    timed("finish_trial", tracker.finish_trial, run_id, record, len(record.history))
report = Path(study_root) / "phases-report.html"
where = SimpleNamespace(results=study_root.parent, name=study_root.name, storage=None)
write = tunecb.launcher._report_writer(where)
timed("report", write, report)
timed("end_search", tracker.end_search, parent, {"number": 0, "value": 0.5, "params": {}}, report)
def close():  # W&B: its tracker process flushes and stops (W&B's service with it)
    getattr(tracker, "close", lambda: None)()
timed("close", close)
c = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"phases": times, "children_cpu": c.ru_utime + c.ru_stime}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6, help="trials of the search (6)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs a trial (20)")
    parser.add_argument("--repeats", type=int, default=3, help="processes per client (3)")
    parser.add_argument("--clients", default="rest,file,wandb", help="(rest,file,wandb)")
    parser.add_argument("--batch", type=int, default=10, help="epochs per log batch (10)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    args = parser.parse_args(argv)
    started, load_before = time.perf_counter(), os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="tunecb-phases-"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "MLFLOW_ALLOW_FILE_STORE": "true",
           "WANDB_MODE": "offline", "WANDB_SILENT": "true"}  # fmt: skip
    wandb_dirs = ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR")
    env.update({k: str(tmp / "wandb") for k in wandb_dirs})
    (tmp / "wandb").mkdir()
    clients = args.clients.split(",")
    proc = None
    found: dict[str, list[dict]] = {c: [] for c in clients}
    try:
        if "rest" in clients:
            proc, url = start_server(tmp)
        cmd = [*_tunecb(), "search", _shown(STUDY_FILE), "--results", str(tmp / "plain"),
               "--n-trials", str(args.trials), "--pruner", "none", "--jobs", "0", "--quiet",
               "--epochs", str(args.epochs)]  # fmt: skip
        run_timed(cmd, env)
        study_root = tmp / "plain" / "overhead"
        uris = {"rest": url if proc else "", "file": str(tmp / "mlruns"), "wandb": "phases"}
        for repeat in range(args.repeats):
            for client in clients[repeat % len(clients) :] + clients[: repeat % len(clients)]:
                argv_ = [sys.executable, "-c", PHASES, client, uris[client], str(study_root),
                         str(args.trials), str(args.batch)]  # fmt: skip
                wall, out = run_timed(argv_, env)
                line = json.loads(out.strip().splitlines()[-1])
                line["process_wall"] = wall
                found[client].append(line)
                total = sum(cpu for cpu, _ in line["phases"].values())
                print(f"{client:5s} repeat {repeat}: {total:.2f} s CPU in the phases, "
                      f"{wall:.1f} s process wall", flush=True)  # fmt: skip
    finally:
        if proc is not None:
            stop_server(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    rows, medians = _table(found, args), {}
    for client, lines in found.items():
        medians[client] = {
            phase: [round(statistics.median(line["phases"][phase][i] for line in lines), 3)
                    for i in (0, 1)]
            for phase in lines[0]["phases"]
        }  # fmt: skip
    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(load_before, os.getloadavg()),
        "settings": vars(args) | {"json": str(args.json)},
        "median_cpu_wall_s": medians, "runs": found,
        "total_s": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    write_result(result, args.json, "\n".join(rows))
    return 0


def _table(found: dict[str, list[dict]], args: argparse.Namespace) -> list[str]:
    rows = [f"tracking phases of a search of {args.trials} trials x {args.epochs} epochs "
            f"(epochs in batches of {args.batch}), median of {args.repeats} processes: "
            "CPU s / wall s (spread of CPU)"]  # fmt: skip
    for client, lines in found.items():
        rows.append(f"  {client}")
        for phase in lines[0]["phases"]:
            cpu = [line["phases"][phase][0] for line in lines]
            wall = [line["phases"][phase][1] for line in lines]
            rows.append(f"    {phase:13s} {statistics.median(cpu):6.3f} / "
                        f"{statistics.median(wall):6.3f}  ({spread(cpu):.0%})")  # fmt: skip
        service = [line["children_cpu"] for line in lines]
        rows.append(f"    {'(children)':13s} {statistics.median(service):6.3f}")
    return rows


if __name__ == "__main__":
    sys.exit(main())
