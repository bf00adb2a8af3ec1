"""Where each system's best model comes from, in runs of ``benchmarks/search.py``.

    python benchmarks/search_phases.py benchmarks/out/search_why.json [more.json ...]

Per task and system, over the runs (seeds) of the files: the median best of the COMPLETE
trials [min-max]; the mean rank of the system among the systems of the same file, task and
seed (1 = best; ties share the mean rank); the median best of the trials numbered below 10
(TPE's random start-up in every system: the configurations a seed's stream happened to draw)
and of the trials from 10 on (the model-based phase); the median epochs trained and wall time.
A system that wins only in the random phase, on the same few seeds, is lucky, not better.

>>> _ranks({"a": 0.9, "b": 0.8, "c": 0.9}, maximize=True)
{'a': 1.5, 'b': 3.0, 'c': 1.5}
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_tasks import TASKS

STARTUP = 10  # Optuna TPE's n_startup_trials: trials 0-9 are random in every system


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
            for system, rank in _ranks(bests, TASKS[task].maximize).items():
                table[task][system]["rank"].append(rank)
    return table


def main(argv: list[str]) -> int:
    table = phases(argv)
    print("| task | system | runs | best: median [min-max] | mean rank | best of trials 0-9 "
          "(random) | of trials 10+ | epochs | wall s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for task, systems in table.items():
        for system, row in systems.items():
            bests = [b for b in row["best"] if b is not None]
            rank = statistics.mean(row["rank"]) if row["rank"] else float("nan")
            print(
                f"| {task} | {system} | {len(row['best'])} | {_median(bests):.4f} "
                f"[{min(bests):.4f}-{max(bests):.4f}] | {rank:.2f} | "
                f"{_median(row['startup']) or float('nan'):.4f} | "
                f"{_median(row['model']) or float('nan'):.4f} | {_median(row['epochs']):.0f} | "
                f"{_median(row['wall']):.1f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
