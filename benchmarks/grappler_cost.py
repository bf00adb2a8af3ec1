"""What TensorFlow's graph optimizer (Grappler) costs and brings in a trial's fit, per optimizer.

    python benchmarks/grappler_cost.py                      # 6 models x 2 x 16 settings x 3
    python benchmarks/grappler_cost.py --models digits_small --settings default,meta_off \
        --repeats 1                                         # a quick look

Each model runs in a fresh process (TensorFlow on one thread unless ``TF_NUM_*_THREADS`` say
otherwise, as the search benchmarks are run). After a warm-up fit, every Grappler setting is
fitted ``--repeats`` times for each batches-per-call (``--steps``, 16 and 1), the order of
the settings rotated each repeat: a new model each time (``clear_session``, seeded), the
setting applied before the model's first call (Grappler options take effect when a function
is instantiated) and taken back after the fit, set up as a trial is (``fast_fit.prebuild``),
fitted ``--epochs`` epochs at batch 64 with validation and timed by a callback at the epoch
boundaries (CPU of the process). Medians over repeats of:

- **epoch 1 beyond steady**: the first epoch's CPU minus a steady one (tracing, Grappler,
  first runs), plus the set-up before the fit;
- **steady epoch**: the median of epochs 2+;
- **weights**: whether the weights after the fit are bitwise those of the default setting.

Settings: ``default``; ``meta_off`` (``disable_meta_optimizer``); ``NAME_off``, one optimizer
off alone; ``only_remapping`` (every optimizer off but the remapper, which fuses kernels);
``tunecb`` (what :mod:`tunecb.training.grappler` applies). Models: the MLPs of
``search_tasks.build`` on digits (1 x 32, 3 x 256), diabetes (2 x 64) and the tabular task
(2 x 128); ``conv``, two Conv2D + a Dense on digits as 8 x 8 x 1 images; ``gru``, a GRU(32)
on a generated sequence task (2,000 x 20 steps x 4 features, 3 classes). Prints a table and
writes ``benchmarks/out/grappler_cost.json``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BATCH = 64
OPTIMIZERS = (
    "constant_folding", "arithmetic_optimization", "dependency_optimization",
    "loop_optimization", "layout_optimizer", "remapping", "shape_optimization",
    "function_optimization", "debug_stripper", "pin_to_host_optimization",
    "implementation_selector", "auto_mixed_precision", "scoped_allocator_optimization",
)  # fmt: skip
MODELS = ("digits_small", "digits_deep", "diabetes", "tabular", "conv", "gru")


def settings() -> dict[str, dict[str, Any] | None]:
    """Each setting's options (``None``: what tunecb applies)."""
    out: dict[str, dict[str, Any] | None] = {
        "default": {},
        "meta_off": {"disable_meta_optimizer": True},
    }
    out.update({f"{name}_off": {name: False} for name in OPTIMIZERS})
    out["only_remapping"] = {**{n: False for n in OPTIMIZERS}, "remapping": True,
                             "disable_model_pruning": True}  # fmt: skip
    out["tunecb"] = None
    return out


def _data(name: str) -> tuple[Any, Any]:
    import numpy as np
    import search_tasks

    if name == "gru":
        rng = np.random.default_rng(0)
        x = rng.normal(size=(2000, 20, 4)).astype("float32")
        y = (np.digitize(x[:, :, 0].cumsum(axis=1)[:, -1], [-2.0, 2.0])).astype("int32")
        return (x[:1500], y[:1500]), (x[1500:], y[1500:])
    task = search_tasks.TASKS[name.split("_")[0] if name != "conv" else "digits"]
    (x, y), (xv, yv) = task.load()
    if name == "conv":
        return (x.reshape(-1, 8, 8, 1), y), (xv.reshape(-1, 8, 8, 1), yv)
    return (x, y), (xv, yv)


def _build(name: str) -> Any:
    import keras
    import search_tasks

    mlp = {"digits_small": ("digits", 1, 32), "digits_deep": ("digits", 3, 256),
           "diabetes": ("diabetes", 2, 64), "tabular": ("tabular", 2, 128)}  # fmt: skip
    if name in mlp:
        task, layers, units = mlp[name]
        return search_tasks.build(search_tasks.TASKS[task], layers, units, 0.1, 1e-3)
    if name == "conv":
        layers = [keras.Input(shape=(8, 8, 1)),
                  keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
                  keras.layers.Conv2D(32, 3, activation="relu"),
                  keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]  # fmt: skip
    else:
        layers = [keras.Input(shape=(20, 4)), keras.layers.GRU(32),
                  keras.layers.Dense(3, activation="softmax")]  # fmt: skip
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])  # fmt: skip
    return model


def child(model_name: str, names: list[str], steps: list[int], repeats: int, epochs: int) -> None:
    """Fit and time in this process; one JSON line per fit on stdout."""
    import keras
    import tensorflow as tf
    from tensorflow.python.eager import context

    from tunecb.training import fast_fit, grappler

    (x, y), val = _data(model_name)
    table = settings()

    class Clock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.marks: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.marks.append(time.process_time())

    def one(setting: str, spe: int, fit_epochs: int) -> dict[str, Any]:
        keras.utils.clear_session(free_memory=False)
        keras.utils.set_random_seed(0)
        before = dict(context.context()._optimizer_experimental_options)
        cpu = time.process_time()
        model = _build(model_name)
        clock = Clock()
        arguments = {"x": x, "y": y, "batch_size": BATCH, "validation_data": val}
        options = table[setting]
        chosen = grappler.for_model("auto", model) if options is None else options
        with grappler.applied(chosen):
            fast_fit.prebuild(model, arguments)
            model.steps_per_execution = spe
            model.fit(**arguments, epochs=fit_epochs, verbose=0, callbacks=[clock])
        end = time.process_time()
        assert dict(context.context()._optimizer_experimental_options) == before
        marks = [*clock.marks, end]
        per_epoch = [b - a for a, b in itertools.pairwise(marks)]
        digest = hashlib.sha256()
        for w in model.weights:
            digest.update(keras.ops.convert_to_numpy(w).tobytes())
        return {"model": model_name, "setting": setting, "steps": spe, "cpu": end - cpu,
                "setup": marks[0] - cpu, "epochs": per_epoch, "chosen": chosen,
                "weights": digest.hexdigest()[:16]}  # fmt: skip

    tf.config.optimizer.get_experimental_options()  # the context exists before the warm-up
    one("default", 1, 1)  # warm-up: TensorFlow's first fit in a process
    for repeat in range(repeats):
        rotated = names[repeat % len(names) :] + names[: repeat % len(names)]
        for spe in steps if repeat % 2 == 0 else steps[::-1]:
            for setting in rotated:
                row = one(setting, spe, epochs)
                row["repeat"] = repeat
                print(json.dumps(row), flush=True)


def summarize(fits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    med = statistics.median
    out = []
    keys = list(dict.fromkeys((f["model"], f["steps"], f["setting"]) for f in fits))
    reference = {(f["model"], f["steps"]): f["weights"] for f in fits
                 if f["setting"] == "default"}  # fmt: skip
    for model, steps, setting in keys:
        group = [
            f for f in fits if (f["model"], f["steps"], f["setting"]) == (model, steps, setting)
        ]
        steady = [med(f["epochs"][1:]) for f in group]
        first = [f["setup"] + f["epochs"][0] - s for f, s in zip(group, steady, strict=True)]
        out.append({
            "model": model, "steps": steps, "setting": setting, "repeats": len(group),
            "first": med(first), "first_range": [min(first), max(first)],
            "steady": med(steady), "steady_range": [min(steady), max(steady)],
            "same_weights": all(f["weights"] == reference.get((model, steps)) for f in group),
            "repeatable": len({f["weights"] for f in group}) == 1,
        })  # fmt: skip
    base = {(r["model"], r["steps"]): r for r in out if r["setting"] == "default"}
    for r in out:
        b = base.get((r["model"], r["steps"]))
        if b:
            r["first_saved"] = b["first"] - r["first"]
            r["steady_ratio"] = r["steady"] / b["steady"] if b["steady"] else None
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | batches a call | setting | epoch 1 beyond steady, ms [range] | saved ms "
             "| steady epoch ms [range] | / default | same weights |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lo, hi = r["first_range"]
        slo, shi = r["steady_range"]
        same = "yes" if r["same_weights"] else ("NO" if r["repeatable"] else "not repeatable")
        lines.append(
            f"| {r['model']} | {r['steps']} | {r['setting']} | {1000 * r['first']:.0f} "
            f"[{1000 * lo:.0f}-{1000 * hi:.0f}] | {1000 * r.get('first_saved', 0):+.0f} | "
            f"{1000 * r['steady']:.1f} [{1000 * slo:.1f}-{1000 * shi:.1f}] | "
            f"{r.get('steady_ratio') or 0:.3f} | {same} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import platform

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--settings", default=",".join(settings()))
    parser.add_argument("--steps", default="16,1", help="batches per call, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "grappler_cost.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names, steps = args.settings.split(","), [int(s) for s in args.steps.split(",")]
    unknown = sorted(set(names) - set(settings()))
    if unknown:
        print(f"grappler_cost.py: --settings {','.join(unknown)}: unknown; choose from "
              f"{','.join(settings())}", file=sys.stderr)  # fmt: skip
        return 2
    if args.child:
        child(args.child, names, steps, args.repeats, args.epochs)
        return 0
    env = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", **os.environ,
           "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(BENCH)])}  # fmt: skip
    load_before, started = os.getloadavg(), time.time()
    fits: list[dict[str, Any]] = []
    for model in args.models.split(","):
        command = [sys.executable, __file__, "--child", model, "--settings", args.settings,
                   "--steps", args.steps, "--repeats", str(args.repeats),
                   "--epochs", str(args.epochs)]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        found = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        fits += found
        print(f"{model}: {len(found)} fits, load {os.getloadavg()[0]:.1f}", flush=True)
    rows = summarize(fits)
    text = table(rows)
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
