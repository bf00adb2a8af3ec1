"""The cost of one epoch's report and pruning decision on PostgreSQL, per way of reading the
finished trials, at a given study size: CPU time (load-independent), not latency.

Run it from the repository root (PostgreSQL's server binaries needed)::

    python benchmarks/scale_prune.py --trials 200 1000 [--running 50] [--repeats 3]

A study with ``--trials`` finished trials (parameters, attributes and curves as
``benchmarks/scale.py``'s workers write) and ``--running`` RUNNING ones (other workers'),
then, for each way, a fresh worker process (as a worker that starts: empty caches) asks a
trial and runs ``--epochs`` epochs of ``trial.report`` + the pruning decision, while between
two of its epochs another process finishes ``--finish-per-epoch`` trials (seen at the next
epoch). The ways, rotated in each repeat: ``optuna`` (``trial.should_prune()``: Optuna's cache
reloads every running trial), ``old`` (tunecb before issue 24's per-epoch cut:
``benchmarks/scale_old_reads.py``) and ``new`` (``tunecb.oracle.pruning``). Measured per
epoch: the worker thread's CPU for the report and for the decision (the first epoch apart:
``cold``), and the server's CPU (its processes' ticks, summed over the epochs). Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import optuna
import scale_pg
import scale_worker
from common import ROOT
from scale_trace import server_cpu_s

WAYS = ("optuna", "old", "new")


def finish(study: optuna.Study, rng: random.Random, epochs: int) -> None:
    """One trial as a worker of ``benchmarks/scale.py`` leaves it (COMPLETE, some PRUNED)."""
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    trial.suggest_int("units", 8, 512)
    trial.suggest_float("dropout", 0.0, 0.5)
    top = rng.random()
    steps = epochs if rng.random() < 0.7 else rng.randint(1, epochs)
    for step in range(1, steps + 1):
        trial.report(top * step / epochs + rng.gauss(0, 0.02), step=step)
    for key in range(12):  # the attributes a trial's outcome records
        trial.set_user_attr(f"attr_{key}", key)
    pruned = steps < epochs
    state = optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE
    study.tell(trial, None if pruned else top, state=state)


def in_child(fn: Any, *args: Any) -> Any:
    """Run ``fn(*args)`` in a forked process (fresh caches and connections); its result."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            result = {"ok": fn(*args)}
        except BaseException as exc:  # reported by the parent
            result = {"error": f"{type(exc).__name__}: {exc}"}
        with os.fdopen(write, "w") as handle:
            json.dump(result, handle)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as handle:
        text = handle.read()
    os.waitpid(pid, 0)
    result = json.loads(text)
    if "error" in result:
        raise RuntimeError(result["error"])
    return result["ok"]


def setup(url: str, trials: int, running: int, epochs: int) -> int:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    optuna.create_study(study_name="s", storage=url, direction="maximize")
    study = scale_worker.open_study(url, "s", 0, "median")
    rng = random.Random(0)
    made = min(trials, 40)
    for _ in range(made):
        finish(study, rng, epochs)
    engine = study._storage._backend.engine
    while made < trials:  # copies of those, by SQL (Optuna's writes take ~1 s a trial here)
        made += copy_trials(engine, study._study_id, made, min(made, trials - made))
    for _ in range(running):
        study.ask()  # other workers' trials, running
    return len(study.trials)


_CHILDREN = {
    "trial_params": "param_name, param_value, distribution_json",
    "trial_values": "objective, value, value_type",
    "trial_intermediate_values": "step, intermediate_value, intermediate_value_type",
    "trial_user_attributes": "key, value_json",
    "trial_system_attributes": "key, value_json",
}


def copy_trials(engine: Any, study_id: int, offset: int, count: int) -> int:
    """Copy the study's first ``count`` trials as numbers ``offset`` on, with their rows."""
    import sqlalchemy

    where = {"s": study_id, "off": offset, "m": count}
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(
            "INSERT INTO trials (number, study_id, state, datetime_start, datetime_complete) "
            "SELECT number + :off, study_id, state, datetime_start, datetime_complete "
            "FROM trials WHERE study_id = :s AND number < :m ORDER BY number"
        ), where)  # fmt: skip
        for table, columns in _CHILDREN.items():
            picked = ", ".join(f"c.{name.strip()}" for name in columns.split(","))
            connection.execute(sqlalchemy.text(
                f"INSERT INTO {table} (trial_id, {columns}) SELECT n.trial_id, {picked} "
                f"FROM {table} c JOIN trials o ON o.trial_id = c.trial_id JOIN trials n "
                "ON n.study_id = o.study_id AND n.number = o.number + :off "
                "WHERE o.study_id = :s AND o.number < :m"
            ), where)  # fmt: skip
    return count


def one_worker(url: str, way: str, data: str, epochs: int, per_epoch: int) -> dict:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    from tunecb.oracle import pruning

    if way == "old":
        import scale_old_reads

        scale_old_reads.use_old_reads()
    study = scale_worker.open_study(url, "s", 2, "median")
    others = scale_worker.open_study(url, "s", 0, "median")
    rng = random.Random(os.getpid())
    trial = study.ask()
    report, decide, server = [], [], 0.0
    for epoch in range(1, epochs + 1):
        for _ in range(per_epoch if epoch > 1 else 0):
            finish(others, rng, epochs)
        s0 = server_cpu_s(Path(data))
        c0 = time.thread_time()
        trial.report(rng.random(), step=epoch)
        c1 = time.thread_time()
        trial.should_prune() if way == "optuna" else pruning.should_prune(trial)
        c2 = time.thread_time()
        server += server_cpu_s(Path(data)) - s0
        report.append((c1 - c0) * 1000.0)
        decide.append((c2 - c1) * 1000.0)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return {"report_ms": report, "decide_ms": decide, "server_ms_per_epoch": server * 1000 / epochs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--running", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--finish-per-epoch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ways", nargs="+", default=list(WAYS), choices=WAYS)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/out/scale_prune.json")
    args = parser.parse_args(argv)
    load0 = os.getloadavg()
    results: list[dict] = []
    with scale_pg.server(100) as pg:
        data = str(pg.cluster.data)
        for n in args.trials:
            url = pg.create_database(f"prune{n}")
            started = time.time()
            stored = in_child(setup, url, n, args.running, args.epochs)
            print(f"study of {n} finished + {args.running} running: {stored} trials, "
                  f"{time.time() - started:.0f} s", flush=True)  # fmt: skip
            for repeat in range(args.repeats):
                k = repeat % len(args.ways)
                for way in args.ways[k:] + args.ways[:k]:  # rotated
                    got = in_child(one_worker, url, way, data, args.epochs, args.finish_per_epoch)
                    results.append({"trials": n, "way": way, "repeat": repeat, **got})
                    print(f"  {way:6s} cold {got['decide_ms'][0]:7.1f} ms, warm "
                          f"{statistics.median(got['decide_ms'][1:]):5.1f} ms, report "
                          f"{statistics.median(got['report_ms']):4.1f} ms, server "
                          f"{got['server_ms_per_epoch']:4.1f} ms/epoch", flush=True)  # fmt: skip
    summary = summarize(results)
    for line in summary:
        print(line)
    out = {"args": vars(args) | {"json": str(args.json)}, "load": [load0, os.getloadavg()],
           "results": results, "summary": summary}  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))
    return 0


def summarize(results: list[dict]) -> list[str]:
    """One line per study size and way: medians over the repeats (min-max in brackets)."""
    lines = []
    for n in sorted({r["trials"] for r in results}):
        for way in WAYS:
            runs = [r for r in results if r["trials"] == n and r["way"] == way]
            if not runs:
                continue

            def med(values: list[float]) -> str:
                return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"

            cold = [r["decide_ms"][0] for r in runs]
            warm = [statistics.median(r["decide_ms"][1:]) for r in runs]
            report = [statistics.median(r["report_ms"]) for r in runs]
            server = [r["server_ms_per_epoch"] for r in runs]
            lines.append(
                f"trials={n} way={way} decide_cold_ms={med(cold)} decide_warm_ms={med(warm)} "
                f"report_ms={med(report)} server_ms_per_epoch={med(server)} runs={len(runs)}"
            )
    return lines


if __name__ == "__main__":
    sys.exit(main())
