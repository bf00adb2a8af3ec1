"""Multi-objective search with and without pruning, and `tunecb report` on a big
multi-objective study.

1. Search. On the tasks of ``benchmarks/search.py`` (digits and tabular by default), seeds
   0-2, objectives val_accuracy (max) and params (min), plus one task (seed 0) with
   latency_ms (min) as a third: the same search (same seed, sampler, budget) with each pruner of
   ``--pruners`` (default: none, pareto, promotion), in this process, side by side, the
   order rotated from case to case. Per case: the hypervolume each run's complete trials
   reach (reference point: the worst value of each objective among all runs of the case,
   a tenth of its range further),
   its ratio to the unpruned run's, the CPU-seconds ratio (this process and its children,
   user + system, during the search only: with ``jobs=0`` the search runs in this one
   process, so its CPU seconds stand for its wall time on an idle core, whatever the load),
   the wall time ratio and the epochs-trained ratio, and whether every front member's
   checkpoint evaluates to its recorded accuracy and parameter count.
   A pruner ``pareto:RULE`` is the Pareto pruner with another rule (``mo_replay.RUNG_RULES``:
   ``crowding`` the default until this round: a front cut by crowding distance, MOASHA's
   order; ``fronts`` the one before: rungs at a tenth of the budget, whole fronts
   kept; ``sha`` that rung decision at the default's rungs 1, 3, 9, ...; ``hv`` rungs at a
   tenth, the rung decision by hypervolume contribution; swapped in for that search only,
   in this process). Each
   two-objective case also gets the rung rules replayed on its unpruned run's curves
   (``mo_replay.replay``: same trials, no training).
2. Report. A finished 1,000-trial multi-objective study (2 and 3 objectives) and a
   single-objective one of the same size (``tests/synthetic.py``, no training), each
   reported R times by fresh ``python -m tunecb report`` processes, alternating; with
   ``--report-against TREE`` a second source tree (e.g. the code before a change) is timed
   side by side. Wall and CPU seconds, medians and spread.

    python benchmarks/multiobjective.py --seeds 0 1 2 --trials 10 --epochs 6
    python benchmarks/multiobjective.py --only report --report-against /tmp/before
    python benchmarks/multiobjective.py --only search --tasks digits --trials 12 --epochs 20 \
        --pruners none pareto pareto:hv --latency-task '' --json /tmp/digits.json
    python benchmarks/multiobjective.py --combine /tmp/digits.json /tmp/tabular.json

Prints tables and writes ``benchmarks/out/multiobjective.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, machine, spread, write_result
from mo_replay import ORACLES, PRUNERS, REPLAYED, add_replays, cost_model, pooled, rung_rule
from search_tasks import TASKS, build, suggest

import tunecb
from tunecb.oracle.pareto import hypervolume
from tunecb.oracle.pareto import reference as pareto_reference


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all its threads) and its waited children."""
    me, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


# --- 1. search ------------------------------------------------------------------------------


def run(task_name: str, seed: int, pruner: str, objectives: dict, trials: int, epochs: int,
        folder: Path) -> dict:  # fmt: skip
    """One search: its complete trials' objective vectors, its time, epochs and front check."""
    task = TASKS[task_name]
    tag = "_".join(objectives).replace("val_", "")
    with rung_rule(pruner) as base:
        study = tunecb.Study(
            f"{task_name}_{tag}_{pruner.replace(':', '-')}_{seed}", objectives=objectives,
            epochs=epochs, n_trials=trials, seed=seed, pruner=base, batch_size=64,
            patience=None,
        )  # fmt: skip
        study.data(task.load)
        study.model(lambda trial: build(task, **suggest(trial)))
        cpu, start = cpu_seconds(), time.perf_counter()
        tunecb.search(study, jobs=0, quiet=True, results=str(folder))
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    path = folder / study.settings["name"]
    df = tunecb.report(str(path))
    done = df[df["state"] == "COMPLETE"]
    names = list(objectives)
    points = [[float(v) for v in row] for row in done[names].itertuples(index=False)]
    return {
        "points": points, "seconds": round(seconds, 2), "cpu_s": round(cpu, 2),
        "epochs": int(df["epochs"].fillna(0).sum()), "front": int(df["front"].sum()),
        "front_error": front_error(path, df, task), "complete": len(points),
        "curves": curves(path, df, task.monitor), **resumes(path),
    }  # fmt: skip


def resumes(path: Path) -> dict[str, int]:
    """How many trials resumed a paused configuration, and how many of them took the model
    their worker kept in memory (the rest read their backup)."""
    from tunecb.oracle.attrs import RESUMED_IN_MEMORY
    from tunecb.results import read_json

    records = [read_json(p) or {} for p in (path / "trials").glob("*/trial.json")]
    return {
        "resumed": sum(r.get("resumed_from_epoch") is not None for r in records),
        "in_memory": sum(bool(r.get(RESUMED_IN_MEMORY)) for r in records),
    }


def curves(path: Path, df, monitor: str) -> list[dict]:
    """Each trial's parameter count and monitored value per epoch (for :func:`replay`)."""
    from tunecb.results import read_history

    found = []
    for number, params in zip(df["trial"], df["params"], strict=True):
        rows = read_history(path / "trials" / str(int(number)) / "history.csv")
        found.append({"trial": int(number), "params": float(params),
                      "curve": [float(r[monitor]) for r in rows]})  # fmt: skip
    return sorted(found, key=lambda t: t["trial"])  # the report sorts the front first


def front_error(path: Path, df, task) -> dict:
    """The largest gap between a front member's checkpoint, evaluated again, and its
    recorded accuracy and parameter count."""
    (_, _), (x_val, y_val) = task.load()
    worst = {"accuracy": 0.0, "params": 0}
    for number in df[df["front"]]["trial"]:
        model = tunecb.load_best(str(path), trial=int(number))
        now = model.evaluate(x_val, y_val, verbose=0, return_dict=True)
        row = df[df["trial"] == number].iloc[0]
        gap = abs(now[task.monitor.removeprefix("val_")] - float(row[task.monitor]))
        worst["accuracy"] = max(worst["accuracy"], gap)
        worst["params"] = max(worst["params"], abs(model.count_params() - int(row["params"])))
    return worst


def reference(points: list[list[float]], maximize: list[bool]) -> list[float]:
    """The worst value of each objective among ``points``, a tenth of its range further
    (so that the extreme points of a front count too).

    >>> reference([[0.9, 100.0], [0.5, 300.0]], [True, False])
    [0.46, 320.0]
    """
    return pareto_reference(points, maximize)  # the report's rule, written once


def search_cases(args: argparse.Namespace) -> list[tuple[str, dict, list[int]]]:
    two = {"val_accuracy": "max", "params": "min"}
    cases = [(task, two, args.seeds) for task in args.tasks]
    if args.latency_task:
        cases.append((args.latency_task, {**two, "latency_ms": "min"}, args.latency_seeds))
    return cases


def measure_search(args: argparse.Namespace, tmp: Path) -> list[dict]:
    rows = []
    k = 0
    for task, objectives, seeds in search_cases(args):
        maximize = [way == "max" for way in objectives.values()]
        for seed in seeds:
            order = list(args.pruners[k % len(args.pruners) :]) + list(
                args.pruners[: k % len(args.pruners)]
            )  # rotated: no system always runs first (or last) on a busy machine
            k += 1
            runs = {p: run(task, seed, p, objectives, args.trials, args.epochs, tmp)
                    for p in order}  # fmt: skip
            every = [pt for r in runs.values() for pt in r["points"]]
            ref = reference(every, maximize)
            hv = {p: hypervolume(r["points"], maximize, ref) for p, r in runs.items()}
            base = runs["none"]
            row = {
                "task": task, "objectives": list(objectives), "seed": seed, "order": order,
                "hypervolume": hv, "reference": ref,
                "hv_ratio": {p: hv[p] / hv["none"] if hv["none"] else None for p in runs},
                "time_ratio": {p: r["seconds"] / base["seconds"] for p, r in runs.items()},
                "cpu_ratio": {p: r["cpu_s"] / base["cpu_s"] for p, r in runs.items()},
                "epochs_ratio": {p: r["epochs"] / base["epochs"] for p, r in runs.items()},
                "runs": runs, "loadavg_after": [round(x, 1) for x in os.getloadavg()],
            }  # fmt: skip
            rows.append(row)
            if args.partial is not None:  # a long run keeps what it measured so far
                args.partial.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
            print(f"{task:8} {'+'.join(objectives):40} seed {seed}: " + "; ".join(
                f"{p} hv {row['hv_ratio'][p]:.3f} cpu {row['cpu_ratio'][p]:.2f} "
                f"time {row['time_ratio'][p]:.2f} "
                f"epochs {runs[p]['epochs']} front {runs[p]['front']} "
                f"err {runs[p]['front_error']['accuracy']:.1g}/{runs[p]['front_error']['params']} "
                f"resumed {runs[p]['resumed']} ({runs[p]['in_memory']} from memory)"
                for p in args.pruners
            ), flush=True)  # fmt: skip
    return rows


# --- 2. report ------------------------------------------------------------------------------


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, this child only) of one run of ``cmd``."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{cmd} failed: {proc.stderr.read().decode()[-800:]}")
    proc.stderr.close()
    return wall, usage.ru_utime + usage.ru_stime


def measure_report(args: argparse.Namespace, tmp: Path) -> dict:
    from synthetic import make_big_study

    studies = {"multi": tmp / "multi", "multi3": tmp / "multi3", "single": tmp / "single"}
    make_big_study(studies["multi"], args.report_trials, workers=4, objectives=True)
    make_big_study(studies["multi3"], args.report_trials, workers=4, objectives=3)
    make_big_study(studies["single"], args.report_trials, workers=4)
    trees = {"this": ROOT, **({"against": args.report_against} if args.report_against else {})}
    runs: dict[str, list[tuple[float, float]]] = {}
    for _ in range(args.report_repeats):
        for tree, root in trees.items():
            env = {**os.environ, "PYTHONPATH": str(root)}
            for kind, folder in studies.items():
                cmd = [sys.executable, "-m", "tunecb", "report", str(folder),
                       "--output", str(tmp / "report.txt")]  # fmt: skip
                runs.setdefault(f"{tree}/{kind}", []).append(timed(cmd, env))
    return {
        "trials": args.report_trials, "repeats": args.report_repeats,
        "against": str(args.report_against) if args.report_against else None,
        "median_wall_s": {k: round(statistics.median(w for w, _ in v), 3) for k, v in runs.items()},
        "median_cpu_s": {k: round(statistics.median(c for _, c in v), 3) for k, v in runs.items()},
        "spread_wall": {k: round(spread([w for w, _ in v]), 2) for k, v in runs.items()},
        "runs": {k: [[round(w, 3), round(c, 3)] for w, c in v] for k, v in runs.items()},
    }  # fmt: skip


# --- table ----------------------------------------------------------------------------------


def table(result: dict) -> str:
    lines = []
    rows = result.get("search") or []
    pruners = result["pruners"]
    if rows:
        lines += [
            f"search: {result['trials']} trials x {result['epochs']} epochs, seeds "
            f"{result['seeds']}; medians over seeds [min-max]",
            "",
            "| task | objectives | pruner | hypervolume / unpruned | CPU s / unpruned | "
            "wall time / unpruned | epochs / unpruned | front checkpoints off by (acc / params) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        cases = dict.fromkeys((r["task"], "+".join(r["objectives"])) for r in rows)
        for task, objectives in cases:
            mine = [r for r in rows if (r["task"], "+".join(r["objectives"])) == (task, objectives)]
            for p in pruners[1:]:
                cells = [cell([r.get(key, {}).get(p) for r in mine]) for key in
                         ("hv_ratio", "cpu_ratio", "time_ratio", "epochs_ratio")]  # fmt: skip
                acc = max(r["runs"][p]["front_error"]["accuracy"] for r in mine)
                par = max(r["runs"][p]["front_error"]["params"] for r in mine)
                lines.append(f"| {task} | {objectives} | {p} | {' | '.join(cells)} | "
                             f"{acc:.1g} / {par} |")  # fmt: skip
        lines += ["", "per seed: hypervolume / CPU / wall / epochs ratios (load average after)"]
        for r in rows:
            cells = "; ".join(
                f"{p} {r['hv_ratio'][p]:.3f} / {r.get('cpu_ratio', {}).get(p, 0):.2f} / "
                f"{r['time_ratio'][p]:.2f} / {r['epochs_ratio'][p]:.2f}"
                for p in pruners[1:]
            )
            load = r.get("loadavg_after", ["?"])[0]
            name = f"{r['task']} {len(r['objectives'])} obj seed {r['seed']}"
            lines.append(f"  {name}: {cells} ({load})")
    replayed = [r for r in rows if r.get("replay")]
    if replayed:
        lines += ["", "rung rules replayed on the unpruned runs' curves (the sampler does not "
                  "see the pruning): hypervolume / epochs against unpruned, per seed"]  # fmt: skip
        for name in REPLAYED:
            mine = [r["replay"][name] for r in replayed]
            lines.append(f"  {name:16} rungs {mine[0]['rungs']}: " + "; ".join(
                f"{r['task']} {r['seed']} {x['hv_ratio']:.3f} / {x['epochs_ratio']:.2f}"
                for r, x in zip(replayed, mine, strict=True)
            ))  # fmt: skip
    report = result.get("report")
    if report:
        lines += [
            "",
            f"tunecb report on {report['trials']:,}-trial studies, "
            f"{report['repeats']} alternating fresh processes (median wall / CPU s):",
        ]
        for k in report["median_wall_s"]:
            lines.append(f"  {k:16} {report['median_wall_s'][k]:6.2f} wall  "
                         f"{report['median_cpu_s'][k]:6.2f} cpu  spread "
                         f"{report['spread_wall'][k]:.0%}")  # fmt: skip
    m = result["machine"]
    lines += ["", f"load average before {m['loadavg_1_5_15_before']}, after "
              f"{m['loadavg_1_5_15_after']}"]  # fmt: skip
    return "\n".join(lines)


def cell(values: list[float | None]) -> str:
    found = [v for v in values if v is not None]
    if not found:
        return "-"
    return f"{statistics.median(found):.3f} [{min(found):.2f}-{max(found):.2f}]"


def combine(parts: list[dict]) -> dict:
    """One result of several runs of the same search settings (their rows in order)."""
    first = parts[0]
    for part in parts[1:]:
        for key in ("trials", "epochs", "pruners"):
            if part[key] != first[key]:
                sys.exit(f"--combine: {key} differ ({first[key]} and {part[key]})")
    loads = [p["machine"] for p in parts]
    return {
        **first, "search": [row for p in parts for row in p.get("search", [])],
        "seeds": sorted({s for p in parts for s in p["seeds"]}),
        "date": min(p["date"] for p in parts), "total_s": max(p["total_s"] for p in parts),
        "combined_from": [p["date"] for p in parts], "parts_machine": loads,
        "machine": {**loads[0],
                    "loadavg_1_5_15_before": max(m["loadavg_1_5_15_before"] for m in loads),
                    "loadavg_1_5_15_after": max(m["loadavg_1_5_15_after"] for m in loads)},
    }  # fmt: skip


def pool(paths: list[Path], target: Path) -> int:
    """``--pool``: the rung rules replayed on several unpruned runs of a task in a row (a
    larger budget, estimated), with the CPU ratio from the measured cost model."""
    started = time.perf_counter()
    parts = [json.loads(path.read_text()) for path in paths]
    epochs = {p["epochs"] for p in parts}
    if len(epochs) != 1:
        sys.exit(f"--pool: the files' epochs differ ({sorted(epochs)})")
    rows = [{**row, "trials": p["trials"]} for p in parts for row in p.get("search", [])]
    measured = [r for r in rows if "cpu_s" in r["runs"]["none"]]
    costs = cost_model(measured)
    found = pooled(rows, epochs.pop(), costs, sizes=(1, 2, 3, 4, 6))
    lines = [
        f"cost model: {costs['per_trial']} CPU s per trial + {costs['per_epoch']} per "
        f"epoch (fitted on {len(measured)} cases); per task, budget and rule: medians "
        "over the rotated starts [min-max] of hypervolume / epochs / estimated CPU"
    ]
    for task, trials in dict.fromkeys((f["task"], f["trials"]) for f in found):
        cells = []
        for name in [*REPLAYED, *ORACLES]:
            mine = [f for f in found if (f["task"], f["trials"], f["rule"]) == (task, trials, name)]
            cells.append(f"{name} " + " / ".join(
                cell([f[key] for f in mine]) for key in ("hv_ratio", "epochs_ratio", "cpu_ratio")
            ))  # fmt: skip
        lines.append(f"  {task} {trials:3} trials: " + "; ".join(cells))
    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "pooled_from": [str(p) for p in paths],
        "cost_model": costs,
        "pooled": found,
        "total_s": round(time.perf_counter() - started, 1),
    }
    write_result(result, target, "\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("search", "report"), default=None)
    parser.add_argument("--tasks", nargs="*", default=["digits", "tabular"])
    parser.add_argument("--latency-task", default="digits", help="'' for none")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--latency-seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--pruners", nargs="+", default=["none", "pareto", "promotion"],
                        choices=PRUNERS)  # fmt: skip
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--report-trials", type=int, default=1000)
    parser.add_argument("--report-repeats", type=int, default=5)
    parser.add_argument("--report-against", type=Path, default=None,
                        help="another tunecb source tree to time side by side")  # fmt: skip
    parser.add_argument("--partial", type=Path, default=None,
                        help="write the search rows here after each case")  # fmt: skip
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/out/multiobjective.json")
    parser.add_argument("--combine", nargs="+", type=Path, default=None,
                        help="merge the search rows of these result files (runs made side by "
                        "side, e.g. one per task) into --json and print the table")  # fmt: skip
    parser.add_argument(
        "--pool",
        nargs="+",
        type=Path,
        default=None,
        help="estimate larger budgets from the unpruned runs of these result "
        "files (mo_replay.pooled) and their CPU cost model; no training",
    )
    args = parser.parse_args(argv)
    if args.pool:
        return pool(args.pool, args.json)
    if args.combine:
        result = combine([json.loads(path.read_text()) for path in args.combine])
        add_replays(result["search"], result["epochs"])
        write_result(result, args.json, table(result))
        return 0
    if args.pruners[0] != "none":
        parser.error("--pruners must start with none (the ratios are to the unpruned search)")
    load_before, started = os.getloadavg(), time.perf_counter()
    result: dict = {"date": dt.datetime.now().isoformat(timespec="seconds"),
                    "trials": args.trials, "epochs": args.epochs, "seeds": args.seeds,
                    "pruners": args.pruners}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        if args.only != "report":
            result["search"] = measure_search(args, Path(tmp) / "search")
            add_replays(result["search"], args.epochs)
        if args.only != "search":
            result["report"] = measure_report(args, Path(tmp))
    result["machine"] = machine(load_before, os.getloadavg())
    result["total_s"] = round(time.perf_counter() - started, 1)
    write_result(result, args.json, table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
