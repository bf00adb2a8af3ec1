"""Where each system's best model comes from, in runs of ``benchmarks/search.py``.

    python benchmarks/search_phases.py benchmarks/out/search_why.json [more.json ...]

Per task and system, over the runs (seeds) of the files: the median best of the COMPLETE
trials [min-max]; the mean rank of the system among the systems of the same file, task and
seed (1 = best; ties share the mean rank); the median best of the trials numbered below 10
(TPE's random start-up in every system: the configurations a seed's stream happened to draw)
and of the trials from 10 on (the model-based phase); per seed, whether the system's best is
better than, level with or worse than tunecb's defaults' (``tunecb``) in the same file;
the median epochs trained and wall time.
A system that wins only in the random phase, on the same few seeds, is lucky, not better.

Then **where the time to reach goes**: per run, R = seconds from launch until its best first
reaches the hand loop's median final best of the file and task (the wall time if never), and
the worker-seconds before R (workers x R) split by what they did: start-up (launch to a
worker's first trial), trials 0-4 (tunecb's median pruner judges none of them: its
``n_startup_trials``; the loop's Hyperband does), pruned trials (each trained only its
warm-up or its rungs), later trials that finished but did not reach the target, the trial
that reached it, and idle (between trials, or waiting at the end). A trial's start is its
recorded ``start`` (``benchmarks/search.py`` keeps it since 2026-12-06) or, in older files,
reconstructed: a worker that finishes a trial asks the next number, so trial ``k`` of ``W``
workers starts at the ``k - W``-th end, and the first trials' start is their end less a cost
fitted on the others (seconds = a + b x epochs).

>>> _ranks({"a": 0.9, "b": 0.8, "c": 0.9}, maximize=True)
{'a': 1.5, 'b': 3.0, 'c': 1.5}
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_tasks import TASKS

STARTUP = 10  # Optuna TPE's n_startup_trials: trials 0-9 are random in every system
PRUNER_STARTUP = 5  # tunecb's median pruner judges no trial before 5 have completed
SPLIT = ("start-up", "trials 0-4", "pruned trials", "finished below target",
         "the reaching trial", "idle")  # fmt: skip


def _ranks(bests: dict[str, float], maximize: bool) -> dict[str, float]:
    """Each system's rank by its best (1 = best), ties at their mean rank."""
    order = sorted(bests.values(), reverse=maximize)
    ranks = {}
    for system, value in bests.items():
        at = [i + 1 for i, v in enumerate(order) if v == value]
        ranks[system] = sum(at) / len(at)
    return ranks


def _best(values: list[float], maximize: bool) -> float | None:
    return (max if maximize else min)(values) if values else None


def _median(values: list[Any]) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None


def _versus(mine: float, theirs: float, maximize: bool) -> str:
    """``better``, ``level`` or ``worse`` than ``theirs``.

    >>> _versus(0.48, 0.49, maximize=False), _versus(0.9, 0.9, maximize=True)
    ('better', 'level')
    """
    if mine == theirs:
        return "level"
    return "better" if (mine > theirs) == maximize else "worse"


def phases(files: list[str]) -> dict[str, dict[str, dict[str, list]]]:
    """``{task: {system: {"best", "rank", "startup", "model", "epochs", "wall": [...]}}}``."""
    table: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for name in files:
        runs = json.loads(Path(name).read_text(encoding="utf-8"))["runs"]
        by_pair: dict = defaultdict(dict)
        for run in runs:
            maximize = TASKS[run["task"]].maximize
            done = [t for t in run["trials"] if t["state"] == "COMPLETE" and t["value"] is not None]
            row = table[run["task"]][run["system"]]
            row["best"].append(run["best"])
            row["startup"].append(
                _best([t["value"] for t in done if t["trial"] < STARTUP], maximize)
            )
            row["model"].append(
                _best([t["value"] for t in done if t["trial"] >= STARTUP], maximize)
            )
            row["epochs"].append(run["epochs_trained"])
            row["wall"].append(run["wall_s"])
            if run["best"] is not None:
                by_pair[(run["task"], run["seed"])][run["system"]] = run["best"]
        for (task, _), bests in by_pair.items():
            maximize = TASKS[task].maximize
            for system, rank in _ranks(bests, maximize).items():
                table[task][system]["rank"].append(rank)
                if "tunecb" in bests:
                    table[task][system]["versus"].append(
                        _versus(bests[system], bests["tunecb"], maximize)
                    )
    return table


def _starts(trials: list[dict], workers: int) -> dict[int, float]:
    """Each trial's start (seconds since launch): recorded, or reconstructed (see above).

    >>> _starts([{"trial": 0, "epochs": 10, "t": 10.0}, {"trial": 1, "epochs": 5, "t": 7.5},
    ...          {"trial": 2, "epochs": 10, "t": 13.5}, {"trial": 3, "epochs": 4, "t": 13.0}],
    ...         workers=2)
    {0: 4.0, 1: 4.0, 2: 7.5, 3: 10.0}
    """
    if all(t.get("start") is not None for t in trials):
        return {t["trial"]: t["start"] for t in trials}
    ends = sorted(t["t"] for t in trials)
    starts = {t["trial"]: ends[t["trial"] - workers] for t in trials
              if workers <= t["trial"] < workers + len(ends)}  # fmt: skip
    known = [(t["epochs"] or 0, t["t"] - starts[t["trial"]]) for t in trials
             if t["trial"] in starts]  # fmt: skip
    a, b = _line(known)
    for t in trials:
        if t["trial"] not in starts:
            starts[t["trial"]] = round(t["t"] - (a + b * (t["epochs"] or 0)), 3)
    return dict(sorted(starts.items()))


def _line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares ``y = a + b x`` (``a = 0``, b the mean ratio, when x does not vary)."""
    if not points:
        return 0.0, 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    vx = sum((x - mx) ** 2 for x in xs)
    if vx == 0:
        return 0.0, my / mx if mx else 0.0
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / vx
    return my - b * mx, b


def time_split(run: dict, target: float, maximize: bool, workers: int) -> dict[str, Any]:
    """``reach_s`` (None: never) and the worker-seconds before it, per kind (``SPLIT``).

    >>> run = {"wall_s": 20.0, "trials": [
    ...     {"trial": 0, "state": "COMPLETE", "value": 0.5, "epochs": 9, "t": 10.0, "start": 1.0},
    ...     {"trial": 1, "state": "COMPLETE", "value": 0.9, "epochs": 5, "t": 16.0, "start": 10.0}]}
    >>> split = time_split(run, 0.9, True, workers=1)
    >>> split["reach_s"], split["start-up"], split["trials 0-4"], split["idle"]
    (16.0, 1.0, 9.0, 0.0)
    """
    trials = run["trials"]
    starts = _starts(trials, workers)
    reached = [t for t in trials if t["state"] == "COMPLETE" and t["value"] is not None
               and (t["value"] >= target if maximize else t["value"] <= target)]  # fmt: skip
    first = min(reached, key=lambda t: t["t"]) if reached else None
    end = first["t"] if first else run["wall_s"]
    split = dict.fromkeys(SPLIT, 0.0)
    for t in trials:
        begin, stop = max(0.0, starts[t["trial"]]), min(end, t["t"])
        if stop <= begin:
            continue
        if t is first:
            kind = "the reaching trial"
        elif t["trial"] < PRUNER_STARTUP:
            kind = "trials 0-4"
        elif t["state"] == "PRUNED":
            kind = "pruned trials"
        else:
            kind = "finished below target"
        split[kind] += stop - begin
    firsts = sorted(starts.values())[:workers]
    split["start-up"] = sum(min(end, max(0.0, s)) for s in firsts)
    split["idle"] = max(0.0, workers * end - sum(split.values()))
    return {"reach_s": first["t"] if first else None, "window_s": end, **split}


def time_table(files: list[str]) -> list[str]:
    """The markdown rows of where each system's time to reach the loop's median best goes."""
    rows: dict = defaultdict(lambda: defaultdict(list))
    for name in files:
        data = json.loads(Path(name).read_text(encoding="utf-8"))
        for task in {r["task"] for r in data["runs"]}:
            maximize = TASKS[task].maximize
            loops = [r for r in data["runs"] if r["task"] == task and r["system"] == "loop"]
            target = _median([r["best"] for r in loops])
            loop_wall = _median([r["wall_s"] for r in loops])
            if target is None:
                continue
            for run in (r for r in data["runs"] if r["task"] == task and r["trials"]):
                workers = (run.get("tunecb_start") or {}).get("workers") or 1
                split = time_split(run, target, maximize, workers)
                row = rows[(task, run["system"])]
                reach = split["reach_s"]
                row["ratio"].append(reach / loop_wall if reach is not None else math.inf)
                for kind in SPLIT:
                    row[kind].append(split[kind] / (workers * split["window_s"]))
                row["startup_s"].append(min(s for s in _starts(run["trials"], workers).values()))
    out = ["| task | system | runs | to the loop's median best / its wall: per seed (median) "
           "| first trial starts, s | " + " | ".join(SPLIT) + " |",
           "|---|---|---|---|---|" + "---|" * len(SPLIT)]  # fmt: skip
    for (task, system), row in sorted(rows.items()):
        ratios = sorted(row["ratio"])
        shown = ", ".join("never" if math.isinf(x) else f"{x:.2f}" for x in ratios)
        mid = statistics.median(ratios)
        out.append(
            f"| {task} | {system} | {len(ratios)} | {shown} "
            f"({'never' if math.isinf(mid) else f'{mid:.2f}'}) | "
            f"{statistics.median(row['startup_s']):.1f} | "
            + " | ".join(f"{100 * statistics.median(row[k]):.0f} %" for k in SPLIT)
            + " |"
        )
    return out


def main(argv: list[str]) -> int:
    table = phases(argv)
    print("| task | system | runs | best: median [min-max] | mean rank | best of trials 0-9 "
          "(random) | of trials 10+ | against tunecb (defaults) per seed: better / level / "
          "worse | epochs | wall s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for task, systems in table.items():
        for system, row in systems.items():
            bests = [b for b in row["best"] if b is not None]
            rank = statistics.mean(row["rank"]) if row["rank"] else float("nan")
            print(
                f"| {task} | {system} | {len(row['best'])} | {_median(bests):.4f} "
                f"[{min(bests):.4f}-{max(bests):.4f}] | {rank:.2f} | "
                f"{_median(row['startup']) or float('nan'):.4f} | "
                f"{_median(row['model']) or float('nan'):.4f} | "
                f"{' / '.join(str(row['versus'].count(k)) for k in ('better', 'level', 'worse'))}"
                f" | {_median(row['epochs']):.0f} | "
                f"{_median(row['wall']):.1f} |"
            )
    print(
        "\nWhere the time to reach the loop's median best goes (share of worker-seconds "
        "before it, median over runs):"
    )
    print("\n".join(time_table(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
