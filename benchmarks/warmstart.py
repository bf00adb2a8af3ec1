"""Warm start against a cold start: trials a second study needs to reach the first one's best.

For each task and seed: a first study of ``--trials`` trials on the space of
:mod:`search_tasks` (its best value is the target); then the same study with Adam's
learning-rate range narrowed to 3e-4..1e-2 (log), run twice, cold and warm-started from the
first (``warm_start=``, its trials that fit the narrowed range as prior knowledge), each up to
``--trials`` trials. The figure is the number of the second study's own trials until one
reaches the target (``never`` when none does); the table shows each seed and the median.

Run from the repository root::

    python benchmarks/warmstart.py              # 2 tasks x 3 seeds x 20 trials x 10 epochs
    python benchmarks/warmstart.py --quick      # smoke run: 1 task x 1 seed x 4 trials x 2 epochs

Every search runs in this process (``jobs=0``), seeded, with tunecb's default sampler and
pruner; writes ``benchmarks/out/warmstart.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import search_tasks
from common import machine, versions, write_result

NARROWED_LR = (3e-4, 1e-2)


def _study(task: search_tasks.Task, epochs: int, lr: tuple[float, float]) -> Any:
    import tunecb

    study = tunecb.Study(
        monitor=task.monitor, direction=task.direction, epochs=epochs, batch_size=64
    )

    @study.data
    def load():
        return task.load()

    @study.model
    def build(trial):
        return search_tasks.build(
            task,
            layers=trial.suggest_int("layers", *search_tasks.LAYERS),
            units=trial.suggest_int("units", *search_tasks.UNITS, log=True),
            dropout=trial.suggest_float("dropout", *search_tasks.DROPOUT),
            lr=trial.suggest_float("lr", *lr, log=True),
        )

    return study


def trials_to_reach(values: list[float | None], target: float, maximize: bool) -> int | None:
    """The 1-based count of trials until one reaches ``target`` (``None``: none did).

    >>> trials_to_reach([0.5, None, 0.9, 0.95], 0.9, True)
    3
    >>> trials_to_reach([0.5], 0.9, True) is None
    True
    """
    for count, value in enumerate(values, 1):
        if value is not None and (value >= target if maximize else value <= target):
            return count
    return None


def _own_values(result: Any) -> list[float | None]:
    """The study's own counted trials' values, in trial order (warm-start copies left out)."""
    import tunecb
    from tunecb.oracle import budget

    study = tunecb.load_study(str(result.study_dir))
    own = [t for t in study.get_trials(deepcopy=False) if budget.counts(t)]
    return [t.value for t in sorted(own, key=lambda t: t.number)]


def run_one(task: search_tasks.Task, seed: int, trials: int, epochs: int, root: Path) -> dict:
    import tunecb

    common = {"n_trials": trials, "jobs": 0, "quiet": True, "results": str(root)}
    first = tunecb.search(
        _study(task, epochs, search_tasks.LEARNING_RATE), name=f"first-{seed}", seed=seed,
        **common,
    )  # fmt: skip
    target = first.best_value
    narrowed = _study(task, epochs, NARROWED_LR)
    row: dict[str, Any] = {"task": task.name, "seed": seed, "target": target}
    for mode, extra in (("cold", {}), ("warm", {"warm_start": str(first.study_dir)})):
        started = time.perf_counter()
        result = tunecb.search(narrowed, name=f"{mode}-{seed}", seed=seed + 1, **common, **extra)
        values = _own_values(result)
        row[mode] = trials_to_reach(values, target, task.maximize) if target is not None else None
        row[f"{mode}_best"] = result.best_value
        row[f"{mode}_s"] = round(time.perf_counter() - started, 1)
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| task | seed | first study's best | cold: trials to reach | warm: trials to reach |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['seed']} | {r['target']:.4g} | {_n(r['cold'])} | {_n(r['warm'])} |"
        )
    for name in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == name]
        lines.append(
            f"| {name} | median | | {_median([r['cold'] for r in mine])} | "
            f"{_median([r['warm'] for r in mine])} |"
        )
    return "\n".join(lines)


def _n(count: int | None) -> str:
    return "never" if count is None else str(count)


def _median(counts: list[int | None]) -> str:
    """The median, ``never`` counted as worse than every count."""
    ranked = sorted(counts, key=lambda c: (c is None, c or 0))
    return _n(ranked[(len(ranked) - 1) // 2])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 task x 1 seed x 4 trials")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tasks", default="digits,diabetes")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.epochs, args.seeds, args.tasks = 4, 2, 1, "digits"
    import os

    load_before, started = os.getloadavg(), time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.tasks.split(","):
            for seed in range(args.seeds):
                rows.append(run_one(search_tasks.TASKS[name], seed, args.trials, args.epochs,
                                    Path(folder)))  # fmt: skip
                print(rows[-1], flush=True)
    result = {
        "settings": vars(args), "rows": rows, "versions": versions(),
        "machine": machine(load_before, os.getloadavg()),
        "total_s": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    out = Path(__file__).resolve().parent / "out" / "warmstart.json"
    write_result(result, out, table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
