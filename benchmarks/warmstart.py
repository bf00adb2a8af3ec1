"""Warm start against a cold start: trials a second study needs to reach the first one's best.

For each task and seed: a first study of ``--trials`` trials on the space of
:mod:`search_tasks` (its best value is the target); then the same study with Adam's
learning-rate range narrowed (``--narrow fixed``: to 3e-4..1e-2, log, which may leave the
first study's best lr outside; ``--narrow around-best``: to half..twice the first study's
best lr), run up to four ways: ``cold``; ``warm``, warm-started from the first
(``warm_start=``: its trials that fit the narrowed range as prior knowledge); ``warm_k1`` and
``warm_k3``, warm with the first study's 1 or 3 best configurations queued first
(``warm_start_enqueue=K``; a value outside the narrowed range is sampled instead). Each
second study runs one trial at a time (the study continued trial by trial) until a trial
reaches the target or ``--trials`` trials ran. The figure is the number of the second
study's own trials until one reaches the target (``never`` when none does); the table
shows each seed and the median [range]. The order of the second studies rotates with the
seed.

Run from the repository root::

    python benchmarks/warmstart.py              # 2 tasks x 3 seeds x 20 trials x 5 epochs
    python benchmarks/warmstart.py --quick      # smoke run: 1 task x 1 seed x 4 trials x 2 epochs
    # one process per task and seed, side by side, then one table of them all:
    python benchmarks/warmstart.py --tasks digits --seed-list 0 --out benchmarks/out/ws_d0.json
    python benchmarks/warmstart.py --merge benchmarks/out/ws_*.json  # to warmstart.json, .md

Every search runs in this process (``jobs=0``), seeded, with tunecb's default sampler and
pruner; writes ``benchmarks/out/warmstart.json`` (and ``--merge``: its table as ``.md``).
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
AROUND = 2.0  # --narrow around-best: the best lr / 2 .. * 2


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


MODES = {
    "cold": {},
    "warm": {"warm_start_enqueue": 0},
    "warm_k1": {"warm_start_enqueue": 1},
    "warm_k3": {"warm_start_enqueue": 3},
}
HEADS = {"warm_k1": "warm, its best queued first", "warm_k3": "warm, its best 3 queued first"}


def _until(study: Any, name: str, target: float | None, maximize: bool, trials: int,
           **kwargs: Any) -> tuple[int | None, Any]:  # fmt: skip
    """Continue study ``name`` one trial at a time until a trial reaches ``target``."""
    import tunecb

    for n in range(1, trials + 1):
        result = tunecb.search(study, name=name, n_trials=n, **kwargs)
        reached = trials_to_reach(_own_values(result), target, maximize)
        if target is None or reached is not None:
            return reached, result
    return None, result


def narrowed_lr(best: float, around: bool) -> tuple[float, float]:
    """The second study's learning-rate range: :data:`NARROWED_LR`, or (``around``) half to
    twice the first study's best lr, inside the first range (a user who narrows the range
    to where the best trial was).

    >>> narrowed_lr(1e-3, False), narrowed_lr(1e-3, True), narrowed_lr(2e-2, True)
    ((0.0003, 0.01), (0.0005, 0.002), (0.01, 0.03))
    """
    if not around:
        return NARROWED_LR
    low, high = search_tasks.LEARNING_RATE
    return (max(low, best / AROUND), min(high, best * AROUND))


def run_one(
    task: search_tasks.Task,
    seed: int,
    trials: int,
    epochs: int,
    root: Path,
    modes: list[str],
    around: bool = False,
) -> dict:
    import tunecb

    common = {"jobs": 0, "quiet": True, "results": str(root)}
    first = tunecb.search(
        _study(task, epochs, search_tasks.LEARNING_RATE), name=f"first-{seed}", seed=seed,
        n_trials=trials, **common,
    )  # fmt: skip
    target = first.best_value
    lr = narrowed_lr(first.best_params["lr"], around)
    narrowed = _study(task, epochs, lr)
    row: dict[str, Any] = {"task": task.name, "seed": seed, "target": target, "lr_range": lr}
    names = [m for m in MODES if m in modes]
    for mode in names[seed % len(names) :] + names[: seed % len(names)]:  # rotates with the seed
        extra = {} if mode == "cold" else {"warm_start": str(first.study_dir), **MODES[mode]}
        started = time.perf_counter()
        reached, result = _until(narrowed, f"{mode}-{seed}", target, task.maximize, trials,
                                 seed=seed + 1, **common, **extra)  # fmt: skip
        row[mode] = reached
        row[f"{mode}_value"] = result.best_value
        row[f"{mode}_s"] = round(time.perf_counter() - started, 1)
    return row


def table(rows: list[dict]) -> str:
    modes = [m for m in MODES if any(m in r for r in rows)]
    heads = " | ".join(f"{HEADS[m]} (`{m}`)" if m in HEADS else m for m in modes)
    lines = [
        f"| task | seed | first study's best | {heads} |",
        "|---|---|---|" + "---|" * len(modes),
    ]
    for r in rows:
        cells = " | ".join(_n(r[m]) if m in r else "-" for m in modes)
        lines.append(f"| {r['task']} | {r['seed']} | {r['target']:.4g} | {cells} |")
    for name in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == name]
        cells = " | ".join(
            _median([r[m] for r in mine]) if all(m in r for r in mine) else "-" for m in modes
        )
        lines.append(f"| {name} | median [range] | | {cells} |")
    return "\n".join(lines)


def _n(count: int | None) -> str:
    return "never" if count is None else str(count)


def _median(counts: list[int | None]) -> str:
    """The median and range, ``never`` counted as worse than every count.

    >>> _median([3, None, 1, 20, 5])
    '5 [1-never]'
    """
    ranked = sorted(counts, key=lambda c: (c is None, c or 0))
    return f"{_n(ranked[(len(ranked) - 1) // 2])} [{_n(ranked[0])}-{_n(ranked[-1])}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 task x 1 seed x 4 trials")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed-list", help="these seeds (e.g. 1,2) instead of 0..seeds-1")
    parser.add_argument("--modes", default=",".join(MODES), help="of " + ", ".join(MODES))
    parser.add_argument("--tasks", default="digits,diabetes")
    parser.add_argument(
        "--narrow",
        choices=("fixed", "around-best"),
        default="fixed",
        help="the second study's lr range: 3e-4..1e-2, or the best lr /2..*2",
    )
    parser.add_argument("--out", help="the JSON to write (default benchmarks/out/warmstart.json)")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="join these runs' rows")
    args = parser.parse_args(argv)
    out = Path(args.out or Path(__file__).resolve().parent / "out" / "warmstart.json")
    if args.merge:
        return merge([Path(m) for m in args.merge], out)
    if args.quick:
        args.trials, args.epochs, args.seeds, args.tasks = 4, 2, 1, "digits"
    import os

    load_before, started = os.getloadavg(), time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.tasks.split(","):
            seeds = [int(x) for x in args.seed_list.split(",")] if args.seed_list else None
            for seed in seeds or range(args.seeds):
                rows.append(run_one(search_tasks.TASKS[name], seed, args.trials, args.epochs,
                                    Path(folder), args.modes.split(","),
                                    args.narrow == "around-best"))  # fmt: skip
                print(rows[-1], flush=True)
                result = {
                    "settings": vars(args), "rows": rows, "versions": versions(),
                    "machine": machine(load_before, os.getloadavg()),
                    "total_s": round(time.perf_counter() - started, 1),
                }  # fmt: skip
                write_result(result, out, table(rows))  # after each row: a partial run counts
    return 0


def merge(paths: list[Path], out: Path) -> int:
    """One table of the rows of several runs (one process per task and seed), by task and
    seed; their settings and load averages kept per run."""
    import json

    runs = [json.loads(p.read_text()) for p in paths]
    order = {name: i for i, name in enumerate(search_tasks.TASKS)}
    rows = sorted((r for run in runs for r in run["rows"]),
                  key=lambda r: (order.get(r["task"], 99), r["seed"]))  # fmt: skip
    parts = [{"file": p.name, "settings": run["settings"], "machine": run["machine"],
              "total_s": run["total_s"]} for p, run in zip(paths, runs, strict=True)]  # fmt: skip
    result = {"rows": rows, "runs": parts, "versions": runs[0]["versions"],
              "total_s": max(run["total_s"] for run in runs)}  # fmt: skip
    write_result(result, out, table(rows))
    out.with_suffix(".md").write_text(table(rows) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
