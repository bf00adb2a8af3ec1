"""A trial's fit from the arrays (two ``tf.data`` iterators an epoch) against one pipeline a fit
(:mod:`tunecb.training.one_pipeline`): CPU of the first epoch and of a steady epoch, and the
best validation value, by task.

    python benchmarks/one_pipeline.py                       # 3 tasks, 5 seeds, 20 epochs
    python benchmarks/one_pipeline.py --tasks digits --repeats 2 --epochs 5   # a quick look

One process, TensorFlow. For every task and seed (seed = repeat), the two variants alternate
which goes first; each builds a new seeded MLP of ``search_tasks`` (2 x 64, dropout 0.2, Adam
1e-3), sets it up as tunecb's runner does (``fast_fit.apply`` with ``"auto"`` and the fit's
epochs, then, for the pipeline, ``one_pipeline.feed``) and fits ``--epochs`` epochs at batch
64 with validation. A callback reads ``time.process_time`` (CPU of the process, TensorFlow's
threads included) at every epoch end. Per variant and task, medians over seeds (and the
range) of: **first epoch** (set-up, tracing, first runs), **steady epoch** (the median of
epochs 2+), **fit** (the whole fit), **batches a call** (what the fit ran with), and the
**best validation value** (``val_accuracy``, higher is better; ``val_loss`` for regression,
lower): a different shuffle order must leave it level. Writes
``benchmarks/out/one_pipeline.json``.
"""

from __future__ import annotations

import itertools
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from common import machine, write_result  # noqa: E402

VARIANTS = ("arrays", "one pipeline")
ONE_ORDER = "one pipeline, one order"  # --one-order: every epoch in epoch 0's order


def fit_once(task: Any, data: Any, variant: str, seed: int, epochs: int) -> dict[str, Any]:
    """One fit of a new seeded model; its CPU at every epoch end and its history."""
    import keras
    from search_tasks import build

    from tunecb.training import fast_fit, one_pipeline

    (xt, yt), (xv, yv) = data
    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)
    start = time.process_time()
    model = build(task, 2, 64, 0.2, 1e-3)
    arguments: dict[str, Any] = {"x": xt, "y": yt, "batch_size": 64, "validation_data": (xv, yv)}
    fast_fit.apply(model, "auto", [], arguments, epochs)
    if variant.startswith("one pipeline"):
        key = one_pipeline._key
        if variant == ONE_ORDER:  # as arrays on TensorFlow: one order for every epoch
            one_pipeline._key = lambda seed, epoch: key(seed, 0)
        try:
            arguments = one_pipeline.feed(
                model, "auto", 1, arguments, seed=seed, initial_epoch=0, epochs=epochs
            )
        finally:
            one_pipeline._key = key
    marks: list[float] = []
    clock = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: marks.append(time.process_time())
    )
    history = model.fit(**arguments, epochs=epochs, verbose=0, callbacks=[clock]).history
    times = [marks[0] - start] + [b - a for a, b in itertools.pairwise(marks)]
    monitor = "val_loss" if task.regression else "val_accuracy"
    best = (min if task.regression else max)(history[monitor])
    return {
        "first": times[0], "steady": statistics.median(times[1:]), "fit": marks[-1] - start,
        "steps": int(model.steps_per_execution), "best": float(best), "monitor": monitor,
    }  # fmt: skip


def summary(values: list[float], scale: float = 1000.0, digits: int = 0) -> str:
    med = statistics.median(values) * scale
    return f"{med:.{digits}f} [{min(values) * scale:.{digits}f}-{max(values) * scale:.{digits}f}]"


def main(argv: list[str] | None = None) -> int:
    import argparse

    from search_tasks import TASKS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="diabetes,digits,tabular")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds from this one on")
    parser.add_argument(
        "--one-order", action="store_true", help=f"add {ONE_ORDER!r}: is it the reshuffle?"
    )
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "one_pipeline.json")
    args = parser.parse_args(argv)
    began, load_before = time.perf_counter(), os.getloadavg()
    runs: list[dict[str, Any]] = []
    variants = (*VARIANTS, ONE_ORDER) if args.one_order else VARIANTS
    for name in args.tasks.split(","):
        task = TASKS[name]
        data = task.load()
        fit_once(task, data, "arrays", 0, 2)  # warm-up: TensorFlow's own first-use costs
        for seed in range(args.first_seed, args.first_seed + args.repeats):
            order = variants if seed % 2 == 0 else variants[::-1]
            for variant in order:
                run = fit_once(task, data, variant, seed, args.epochs)
                runs.append({"task": name, "variant": variant, "seed": seed, **run})
                steady, best = 1000 * run["steady"], run["best"]
                print(f"{name} seed {seed} {variant}: first {run['first']:.3f} s, steady "
                      f"{steady:.1f} ms, best {best:.4f}", flush=True)  # fmt: skip
    lines = [
        f"| task | variant | first epoch, ms CPU | steady epoch, ms CPU | {args.epochs}-epoch "
        "fit, s CPU | batches a call | best validation value |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in args.tasks.split(","):
        for variant in variants:
            mine = [r for r in runs if r["task"] == name and r["variant"] == variant]
            steps = sorted({r["steps"] for r in mine})
            lines.append(
                f"| {name} | {variant} | {summary([r['first'] for r in mine])} | "
                f"{summary([r['steady'] for r in mine], digits=1)} | "
                f"{summary([r['fit'] for r in mine], 1.0, 2)} | {steps} | "
                f"{mine[0]['monitor']} {summary([r['best'] for r in mine], 1.0, 4)} |"
            )
    table = "\n".join(lines)
    result = {
        "tasks": args.tasks.split(","), "repeats": args.repeats, "epochs": args.epochs,
        "first_seed": args.first_seed,
        "runs": runs, "table": table, "total_s": round(time.perf_counter() - began, 1),
        "machine": machine(load_before, os.getloadavg()),
    }  # fmt: skip
    write_result(result, args.out, table)
    print(f"load average before {load_before}, after {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
