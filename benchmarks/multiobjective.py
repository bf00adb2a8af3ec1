"""Multi-objective search with and without tunecb's Pareto pruner: accuracy against the
parameter count on the tasks of ``benchmarks/search.py`` (digits and tabular by default),
the same seeds for both. Per task and seed: the hypervolume each run's complete trials
reach (reference point: the worst accuracy and the largest parameter count of both runs),
the wall time, and whether every front member's checkpoint evaluates to its recorded
accuracy. Prints a table and writes JSON.

    python benchmarks/multiobjective.py --seeds 0 1 2 --trials 30 --epochs 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_tasks import TASKS, build, suggest

import tunecb
from tunecb.oracle.pareto import hypervolume_2d

UP_DOWN = [True, False]


def run(task_name: str, seed: int, pruner: str, trials: int, epochs: int, folder: Path) -> dict:
    """One search; its complete trials' (accuracy, params), its time and its front check."""
    task = TASKS[task_name]
    study = tunecb.Study(
        f"{task_name}_{pruner}_{seed}",
        objectives={task.monitor: "max", "params": "min"},
        epochs=epochs, n_trials=trials, seed=seed, pruner=pruner, batch_size=64,
    )  # fmt: skip
    study.data(task.load)
    study.model(lambda trial: build(task, **suggest(trial)))
    start = time.perf_counter()
    tunecb.search(study, jobs=0, quiet=True, results=str(folder))
    seconds = time.perf_counter() - start
    path = folder / study.settings["name"]
    df = tunecb.report(str(path))
    done = df[df["state"] == "COMPLETE"]
    points = [(float(a), float(p)) for a, p in zip(done[task.monitor], done["params"], strict=True)]
    (_, _), (x_val, y_val) = task.load()
    worst = 0.0
    for number in df[df["front"]]["trial"]:
        model = tunecb.load_best(str(path), trial=int(number))
        now = model.evaluate(x_val, y_val, verbose=0, return_dict=True)
        recorded = float(df[df["trial"] == number][task.monitor].iloc[0])
        worst = max(worst, abs(now[task.monitor.removeprefix("val_")] - recorded))
    epochs_run = int(df["epochs"].fillna(0).sum())
    return {"points": points, "seconds": seconds, "front_error": worst, "epochs": epochs_run}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["digits", "tabular"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/multiobjective.json"))
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            for seed in args.seeds:
                runs = {p: run(task, seed, p, args.trials, args.epochs, Path(tmp))
                        for p in ("none", "pareto")}  # fmt: skip
                every = [pt for r in runs.values() for pt in r["points"]]
                ref = (min(a for a, _ in every), max(p for _, p in every))
                hv = {p: hypervolume_2d(r["points"], UP_DOWN, ref) for p, r in runs.items()}
                rows.append({
                    "task": task, "seed": seed,
                    "hv_ratio": hv["pareto"] / hv["none"] if hv["none"] else None,
                    "time_ratio": runs["pareto"]["seconds"] / runs["none"]["seconds"],
                    "epochs": {p: r["epochs"] for p, r in runs.items()},
                    "front_error": max(r["front_error"] for r in runs.values()),
                    "runs": runs,
                })  # fmt: skip
                r = rows[-1]
                print(f"{task:8} seed {seed}: hypervolume ratio {r['hv_ratio']:.3f}, time "
                      f"ratio {r['time_ratio']:.2f}, epochs {r['epochs']['pareto']} / "
                      f"{r['epochs']['none']}, front checkpoints off by at most "
                      f"{r['front_error']:.2g}", flush=True)  # fmt: skip
    for task in args.tasks:
        mine = [r for r in rows if r["task"] == task]
        print(f"{task:8} median: hypervolume ratio "
              f"{statistics.median(r['hv_ratio'] for r in mine):.3f}, time ratio "
              f"{statistics.median(r['time_ratio'] for r in mine):.2f}")  # fmt: skip
    args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
