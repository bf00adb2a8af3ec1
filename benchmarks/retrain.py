"""Does ``tunecb retrain`` pay? The best trial's checkpoint against its configuration refit on
training + validation data, on a test split neither saw.

Run it from the repository root::

    python benchmarks/retrain.py                 # digits and tabular, 3 seeds
    python benchmarks/retrain.py --quick         # 1 seed, 6 trials x 8 epochs

For each task of ``benchmarks/search.py`` (classification ones) and seed: the task's own
validation part becomes the **test** split; its training part is split again 75/25 into
training and validation data. ``tunecb search`` (defaults: ``--jobs auto``, the median
pruner, multivariate TPE) runs N trials of E epochs on that, then ``tunecb retrain`` fits
the best configuration on training + validation data for its best epoch count and evaluates
both models on the test split. Quality is noisy: read the median and the spread over seeds.

It prints a markdown table and writes ``benchmarks/out/retrain.json``.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cmdline, machine, run_timed, tunecb_command, write_result

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "out" / "retrain.json"

STUDY = '''"""benchmarks/retrain.py: search.py's {task} task with a test split."""

import sys

sys.path.insert(0, {bench_dir!r})

import tunecb
from search_tasks import TASKS, build, suggest

TASK = TASKS[{task!r}]
study = tunecb.Study(name="rt", monitor=TASK.monitor, direction=TASK.direction,
                     epochs={epochs}, n_trials={trials}, seed={seed}, patience=5)


@study.data
def load():
    from sklearn.model_selection import train_test_split

    (x, y), test = TASK.load()
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    return (x_train, y_train), (x_val, y_val), test


@study.model
def build_model(trial):
    return build(TASK, **suggest(trial))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="digits,tabular")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.trials, args.epochs = "0", 6, 8
    tasks, seeds = args.tasks.split(","), [int(s) for s in args.seeds.split(",")]
    load_before = os.getloadavg()
    started = time.perf_counter()
    rows = []
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for task in tasks:
        for seed in seeds:
            folder = Path(tempfile.mkdtemp(prefix="tunecb-retrain-"))
            try:
                study = folder / f"{task}_{seed}.py"
                study.write_text(STUDY.format(task=task, bench_dir=str(HERE), epochs=args.epochs,
                                              trials=args.trials, seed=seed))  # fmt: skip
                results = folder / "results"
                search_s, _ = run_timed(
                    [*tunecb_command(), "search", str(study), "--results", str(results), "-q"], env
                )
                retrain_s, _ = run_timed([*tunecb_command(), "retrain", str(results / "rt")], env)
                final = next((results / "rt" / "trials").glob("*/final.json"))
                record = json.loads(final.read_text())
                metric = "test_accuracy"
                rows.append({
                    "task": task, "seed": seed, "trial": record["trial"],
                    "epochs": record["epochs"], "rows": record["rows"],
                    "checkpoint": record["checkpoint_test"][metric],
                    "final": record["test"][metric], "search_s": round(search_s, 1),
                    "retrain_s": round(retrain_s, 1),
                })  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
    lines = [
        "| task | seeds | checkpoint test acc | final (retrained) test acc | final - checkpoint "
        "| retrain s |",
        "|---|---|---|---|---|---|",
    ]
    summary = {}
    for task in tasks:
        mine = [r for r in rows if r["task"] == task]
        diffs = [r["final"] - r["checkpoint"] for r in mine]

        def cell(k: str, mine: list = mine) -> str:
            values = [r[k] for r in mine]
            return f"{statistics.median(values):.4f} [{min(values):.4f}-{max(values):.4f}]"

        summary[task] = {"median_diff": statistics.median(diffs), "diffs": diffs}
        lines.append(
            f"| {task} | {len(mine)} | {cell('checkpoint')} | {cell('final')} | "
            f"{statistics.median(diffs):+.4f} [{min(diffs):+.4f}..{max(diffs):+.4f}] | "
            f"{statistics.median(r['retrain_s'] for r in mine):.1f} |"
        )
    result = {
        "benchmark": "retrain", "when": dt.datetime.now().isoformat(timespec="seconds"),
        "command": cmdline(["python", "benchmarks/retrain.py", *sys.argv[1:]]),
        "trials": args.trials, "epochs": args.epochs, "rows": rows, "summary": summary,
        "machine": machine(load_before, os.getloadavg()),
        "total_s": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    write_result(result, args.json, "\n".join(lines))


if __name__ == "__main__":
    main()
