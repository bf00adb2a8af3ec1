"""What several batches per backend call cost once and save per call, by task and model:
the constants of ``steps_per_execution="auto"`` (:mod:`tunecb.training.fast_fit`).

    python benchmarks/spe_cost.py                     # 5 tasks x 3 models, 3 repeats
    python benchmarks/spe_cost.py --tasks digits --models small --repeats 1   # a quick look
    python benchmarks/spe_cost.py --replay benchmarks/out/multiobjective_36x20_hcost.json

Each task runs in a fresh process (TensorFlow on one thread unless ``TF_NUM_*_THREADS`` say
otherwise, as ``multiobjective.py`` is run). After a warm-up fit, every model is fitted
``--repeats`` times with 1 and with :data:`~tunecb.training.fast_fit.AUTO_STEPS` batches per
call, alternating which goes first: a new model each time (``clear_session``, seeded), set up
by ``fast_fit.apply`` (the prebuild of a trial) and fitted ``--epochs`` epochs at batch 64
with validation, timed by a callback at the epoch and validation boundaries (CPU of the
process, and wall). For each (task, model, batches per call), medians over repeats of:

- **fixed**: apply + fit minus ``epochs`` steady epochs (tracing and first runs, set-up);
- **steady train / validation**: the median of epochs 2+ of each part.

Derived, 16 against 1: the **one-time cost** (fixed(16) - fixed(1)), the **saving per call
avoided** (steady(1) - steady(16)) over the calls avoided (``n - ceil(n / 16)`` for ``n``
batches), train and validation apart and together, and the **epochs to pay** (one-time cost
over the saving per epoch). Prints a table and writes ``benchmarks/out/spe_cost.json``.

``--replay FILE...`` measures nothing: from ``multiobjective.py`` result files (each trial's
epochs and parameter count, in trial order) it estimates, with the constants of
:mod:`tunecb.training.fast_fit`, the CPU each rule for "auto" would save against 16 batches a
call for every trial: the rule (expected epochs: the mean of the finished trials), the lower
bound alone (the epochs a trial is sure to train), and an oracle that knows each trial's
epochs (what no rule can beat). The searches are deterministic (the same trials, whatever
the batches per call), so this isolates the choice from the noise of a CPU reading.

Tasks: the four of :mod:`search_tasks` and ``large``, a ``make_classification`` of
``--large-rows`` x 40 (3 classes), not one the rule was made on. Models: ``small`` (1 x 32),
``wide`` (1 x 256), ``deep`` (3 x 256), dropout 0.1, Adam 1e-3.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MODELS = {"small": (1, 32), "wide": (1, 256), "deep": (3, 256)}
BATCH = 64


def _large(rows: int) -> Any:
    from search_tasks import _split, _standardize
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=rows, n_features=40, n_informative=10,
                               n_redundant=10, n_classes=3, random_state=1)  # fmt: skip
    (xt, yt), (xv, yv) = _split(x, y.astype("int32"), stratify=True)
    xt, xv = _standardize(xt, xv)
    return (xt, yt), (xv, yv)


def child(task_name: str, models: list[str], repeats: int, epochs: int, rows: int) -> None:
    """Fit and time in this process; one JSON line per fit on stdout."""
    import keras
    import search_tasks

    from tunecb.training import fast_fit

    if task_name == "large":
        task = search_tasks.Task("large", "val_accuracy", "maximize", 40, 3, "", lambda: None)
        (x, y), val = _large(rows)
    else:
        task = search_tasks.TASKS[task_name]
        (x, y), val = task.load()

    class Clock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.marks: list[tuple[str, float, float]] = []

        def _mark(self, name: str) -> None:
            self.marks.append((name, time.process_time(), time.perf_counter()))

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._mark("epoch")

        def on_test_begin(self, logs: Any = None) -> None:
            self._mark("val")

        def on_test_end(self, logs: Any = None) -> None:
            self._mark("val end")

    def one(model_name: str, steps: int, fit_epochs: int) -> dict[str, Any]:
        layers, units = MODELS[model_name]
        keras.utils.clear_session(free_memory=False)
        keras.utils.set_random_seed(0)
        model = search_tasks.build(task, layers, units, 0.1, 1e-3)
        clock = Clock()
        arguments = {"x": x, "y": y, "batch_size": BATCH, "validation_data": val}
        cpu, wall = time.process_time(), time.perf_counter()
        used = fast_fit.apply(model, steps, [clock], arguments)
        model.fit(**arguments, epochs=fit_epochs, verbose=0, callbacks=[clock])
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        marks = [*clock.marks, ("end", time.process_time(), time.perf_counter())]
        train, validation = [], []
        for i in range(0, len(marks) - 1, 3):  # epoch, val, val end, (next epoch | end)
            train.append(marks[i + 1][1] - marks[i][1])
            validation.append(marks[i + 2][1] - marks[i + 1][1])
        return {"task": task_name, "model": model_name, "steps": used, "cpu": cpu,
                "wall": wall, "train": train, "val": validation}  # fmt: skip

    one("small", 1, 1)  # warm-up: TensorFlow's first fit in a process
    for repeat in range(repeats):
        for model_name in models:
            order = (1, fast_fit.AUTO_STEPS) if repeat % 2 == 0 else (fast_fit.AUTO_STEPS, 1)
            for steps in order:
                row = one(model_name, steps, epochs)
                row["repeat"] = repeat
                print(json.dumps(row), flush=True)


def batches(task: str, rows: int) -> tuple[int, int]:
    """Training and validation batches an epoch (75/25 split, batch 64)."""
    import search_tasks

    if task == "large":
        (x, _), (xv, _) = _large(rows)
    else:
        (x, _), (xv, _) = search_tasks.TASKS[task].load()
    return math.ceil(len(x) / BATCH), math.ceil(len(xv) / BATCH)


def summarize(fits: list[dict[str, Any]], epochs: int, rows: int, k: int) -> list[dict]:
    out = []
    keys = sorted({(f["task"], f["model"]) for f in fits}, key=lambda t: list(MODELS).index(t[1]))
    tasks = list(dict.fromkeys(f["task"] for f in fits))
    keys.sort(key=lambda t: tasks.index(t[0]))
    for task, model in keys:
        n, v = batches(task, rows)
        side: dict[int, dict[str, list[float]]] = {}
        for f in fits:
            if (f["task"], f["model"]) != (task, model):
                continue
            train = statistics.median(f["train"][1:])
            val = statistics.median(f["val"][1:])
            s = side.setdefault(f["steps"], {"fixed": [], "train": [], "val": []})
            s["fixed"].append(f["cpu"] - sum(f["train"][1:]) - sum(f["val"][1:])
                              - train - val)  # fmt: skip
            s["train"].append(train)
            s["val"].append(val)
        if set(side) != {1, k}:
            continue
        one, many = side[1], side[k]
        med = statistics.median
        cost = med(a - b for a, b in zip(many["fixed"], one["fixed"], strict=False))
        avoided_t, avoided_v = n - math.ceil(n / k), v - math.ceil(v / k)
        saved_t = med(one["train"]) - med(many["train"])
        saved_v = med(one["val"]) - med(many["val"])
        per_call = (saved_t + saved_v) / max(1, avoided_t + avoided_v)
        diffs = [a - b for a, b in zip(many["fixed"], one["fixed"], strict=False)]
        out.append({
            "task": task, "model": model, "train_batches": n, "val_batches": v,
            "fixed_1": med(one["fixed"]), "fixed_k": med(many["fixed"]), "one_time": cost,
            "one_time_range": [min(diffs), max(diffs)],
            "epoch_1": med(one["train"]) + med(one["val"]),
            "epoch_k": med(many["train"]) + med(many["val"]),
            "saved_train_per_call": saved_t / max(1, avoided_t),
            "saved_val_per_call": saved_v / max(1, avoided_v) if avoided_v else None,
            "saved_per_call": per_call,
            "epochs_to_pay": cost / (saved_t + saved_v) if saved_t + saved_v > 0 else None,
            "repeats": len(one["fixed"]),
        })  # fmt: skip
    return out


def table(rows: list[dict[str, Any]], k: int) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{1000 * value:.0f}"

    def us(value: float | None) -> str:
        return "-" if value is None else f"{1e6 * value:.0f}"

    lines = [
        f"| task | model | batches train/val | fixed ms, 1 / {k} | one-time cost ms [range] "
        f"| epoch ms, 1 / {k} | saved µs per call avoided: train / val / both "
        "| epochs to pay |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = r["one_time_range"]
        pay = "never" if r["epochs_to_pay"] is None else f"{r['epochs_to_pay']:.1f}"
        lines.append(
            f"| {r['task']} | {r['model']} | {r['train_batches']}/{r['val_batches']} | "
            f"{ms(r['fixed_1'])} / {ms(r['fixed_k'])} | {ms(r['one_time'])} "
            f"[{ms(lo)}-{ms(hi)}] | {ms(r['epoch_1'])} / {ms(r['epoch_k'])} | "
            f"{us(r['saved_train_per_call'])} / {us(r['saved_val_per_call'])} / "
            f"{us(r['saved_per_call'])} | {pay} |"
        )
    return "\n".join(lines)


MO_TASKS = {"digits": (64, 10, 22, 8), "tabular": (40, 3, 47, 16)}  # in, out, batches


def _hidden_layers(params: int, n_in: int, n_out: int) -> int:
    """The hidden layers of ``search_tasks.build``'s MLP with ``params`` parameters."""
    for layers in (1, 2, 3):
        for units in range(16, 257):
            inner = (layers - 1) * (units * units + units)
            if n_in * units + units + inner + units * n_out + n_out == params:
                return layers
    return 2


def replay(paths: list[Path]) -> int:
    """Estimate each rule's CPU against 16 batches a call for every trial (see above)."""
    from tunecb.training import fast_fit

    k, lines = fast_fit.AUTO_STEPS, []
    lines.append("| task | seed | pruner | epochs | CPU s | rule | sure epochs only | oracle |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for path in paths:
        for row in json.loads(path.read_text())["search"]:
            n_in, n_out, n, v = MO_TASKS[row["task"]]
            per_epoch = fast_fit.calls_avoided(n, v, 1, steps=k)
            for pruner, run in row["runs"].items():
                trials = sorted(run["curves"], key=lambda t: t["trial"])
                sure = 1 if pruner != "none" else row.get("epochs", 20)
                budget = max(len(t["curve"]) for t in trials)
                saved = {"rule": 0.0, "sure": 0.0, "oracle": 0.0}
                done: list[int] = []
                for t in trials:
                    epochs = len(t["curve"])
                    weights = 2 * (_hidden_layers(int(t["params"]), n_in, n_out) + 1)
                    cost = fast_fit.LOOP_COST + weights * fast_fit.LOOP_COST_PER_WEIGHT
                    gain = cost - epochs * per_epoch * fast_fit.CALL_COST  # of 1 a call
                    expected = fast_fit.expected_epochs(budget, min(sure, budget), done)
                    for rule, guess in (("rule", expected), ("sure", min(sure, budget)),
                                        ("oracle", epochs)):  # fmt: skip
                        if not fast_fit.pays(guess * per_epoch, weights):
                            saved[rule] += gain
                    done.append(epochs)
                lines.append(
                    f"| {row['task']} | {row['seed']} | {pruner} | "
                    f"{sum(len(t['curve']) for t in trials)} | {run['cpu_s']:.1f} | "
                    + " | ".join(f"{-saved[r]:+.1f}" for r in ("rule", "sure", "oracle"))
                    + " |"
                )
    print("CPU s against 16 batches a call for every trial (negative: saved)")
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse
    import platform

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="digits,tabular,diabetes,friedman,large")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--large-rows", type=int, default=40_000)
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "spe_cost.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--replay", nargs="+", type=Path, help="multiobjective.py results")
    args = parser.parse_args(argv)
    if args.replay:
        return replay(args.replay)
    models = args.models.split(",")
    if args.child:
        child(args.child, models, args.repeats, args.epochs, args.large_rows)
        return 0
    sys.path.insert(0, str(BENCH))
    from tunecb.training.fast_fit import AUTO_STEPS

    env = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", **os.environ,
           "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(BENCH)])}  # fmt: skip
    load_before, started = os.getloadavg(), time.time()
    fits = []
    for task in args.tasks.split(","):
        command = [sys.executable, __file__, "--child", task, "--models", args.models,
                   "--repeats", str(args.repeats), "--epochs", str(args.epochs),
                   "--large-rows", str(args.large_rows)]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        found = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        fits += found
        print(f"{task}: {len(found)} fits, load {os.getloadavg()[0]:.1f}", flush=True)
    rows = summarize(fits, args.epochs, args.large_rows, AUTO_STEPS)
    text = table(rows, AUTO_STEPS)
    print(text)
    load_after = os.getloadavg()
    print(f"load average before {load_before}, after {load_after}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "epochs": args.epochs, "repeats": args.repeats, "batch_size": BATCH,
        "threads": {k: env[k] for k in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")},
        "load_before": load_before, "load_after": load_after,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "summary": rows, "fits": fits, "table": text,
    }, indent=1) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
