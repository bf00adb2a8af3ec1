"""The same study on every installed Keras backend: speed per epoch, whole search, overhead.

Run it from the repository root::

    python benchmarks/backends.py                  # every installed backend
    python benchmarks/backends.py --quick          # smoke run: 4 trials x 4 epochs, 1 repeat
    python benchmarks/backends.py --backends tensorflow,jax

In one run, for each backend (TensorFlow, JAX, PyTorch: those installed), in an order that
rotates between repeats:

1. **The search.** ``benchmarks/search.py``'s tabular task (4,000 x 40, 3 classes) and MLP
   space, one study file for all, ``tunecb search STUDY --backend B --seed S`` with tunecb's
   defaults otherwise (``--jobs auto``, the default pruner), for each seed: wall time (launch
   to exit), best ``val_accuracy``, epochs trained, and seconds per epoch (the trials'
   durations added up over the epochs they trained: time inside trials, start-up excluded).
2. **Overhead.** ``benchmarks/overhead.py``'s fixed MLP on digits (8 trials x 30 epochs, every
   trial identical, one at a time in the process) under ``tunecb search --jobs 0`` against
   the bare loop with only Keras' ``EarlyStopping`` and ``ModelCheckpoint``
   (``overhead_bare.py --callbacks keras``), both with ``KERAS_BACKEND=B``; R repeats each,
   alternating: tunecb / bare (goal <= 1.03 on each backend).

It prints a markdown table and writes everything to ``benchmarks/out/backends.json``.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cmdline, machine, run_timed, spread, tunecb_command, write_result

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_JSON = HERE / "out" / "backends.json"
OVERHEAD_STUDY = HERE / "overhead_study.py"
BARE = HERE / "overhead_bare.py"
BACKENDS = ("tensorflow", "jax", "torch")
MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
GOAL = 1.03

STUDY = '''"""benchmarks/backends.py: search.py's tabular task; only the budget is set."""

import sys

sys.path.insert(0, {bench_dir!r})

import tunecb
from search_tasks import TASKS, build, suggest

task = TASKS["tabular"]
study = tunecb.Study(name="tabular", monitor="val_accuracy", epochs={epochs}, batch_size=64,
                     n_trials={trials}, patience=5)


@study.data
def load():
    return task.load()


@study.model
def model(trial):
    return build(task, **suggest(trial))
'''


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", help="of tensorflow,jax,torch (every installed one)")
    parser.add_argument("--seeds", default="0,1", help="search seeds (0,1)")
    parser.add_argument("--trials", type=int, default=20, help="trials per search (20)")
    parser.add_argument("--epochs", type=int, default=20, help="epoch budget (20)")
    parser.add_argument("--repeats", type=int, default=3, help="overhead repeats (3)")
    parser.add_argument("--quick", action="store_true", help="4 trials x 4 epochs, 1 repeat")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    import importlib.util

    wanted = args.backends.split(",") if args.backends else list(BACKENDS)
    backends = [b for b in wanted if importlib.util.find_spec(MODULES[b]) is not None]
    skipped = [b for b in wanted if b not in backends]
    seeds = [int(s) for s in args.seeds.split(",")]
    trials, epochs, repeats = args.trials, args.epochs, args.repeats
    if args.quick:
        seeds, trials, epochs, repeats = seeds[:1], 4, 4, 1
    started = time.perf_counter()
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="tunecb-backends-"))
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "TUNECB_JOBS")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    try:
        study = tmp / "tabular.py"
        study.write_text(STUDY.format(bench_dir=str(HERE), epochs=epochs, trials=trials))
        searches = []
        for i, seed in enumerate(seeds):
            for backend in backends[i % len(backends) :] + backends[: i % len(backends)]:
                searches.append(run_search(tmp, study, backend, seed, env))
        overhead = []
        for r in range(repeats):
            order = backends[r % len(backends) :] + backends[: r % len(backends)]
            for backend in order:
                for side in ("tunecb", "bare") if r % 2 == 0 else ("bare", "tunecb"):
                    overhead.append(run_overhead(tmp, backend, side, r, env))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = summarize(backends, searches, overhead)
    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "settings": {
            "backends": backends,
            "skipped": skipped,
            "seeds": seeds,
            "trials": trials,
            "epochs": epochs,
            "repeats": repeats,
        },
        "summary": summary,
        "searches": searches,
        "overhead": overhead,
        "versions": backend_versions(backends),
        "machine": machine(load_before, os.getloadavg()),
        "total_s": round(time.perf_counter() - started, 1),
    }
    write_result(result, args.json, table(result))
    return 0


def run_search(tmp: Path, study: Path, backend: str, seed: int, env: dict[str, str]) -> dict:
    results = tmp / f"search-{backend}-{seed}"
    cmd = [*tunecb_command(), "search", str(study), "--results", str(results), "--backend",
           backend, "--seed", str(seed), "--log-format", "json", "-q"]  # fmt: skip
    wall, stdout = run_timed(cmd, env)
    records = [
        json.loads(p.read_text()) for p in (results / "tabular" / "trials").glob("*/trial.json")
    ]
    epochs = sum(r["epochs_run"] or 0 for r in records)
    inside = sum(r["duration_s"] or 0.0 for r in records)
    complete = [r["value"] for r in records if r["state"] == "COMPLETE" and r["value"] is not None]
    summary = next(json.loads(x) for x in stdout.splitlines() if '"summary"' in x)
    row = {
        "backend": backend, "seed": seed, "wall_s": round(wall, 2), "epochs": epochs,
        "s_per_epoch": round(inside / epochs, 4) if epochs else None,
        "best": max(complete) if complete else None, "states": summary.get("ran"),
        "cmd": cmdline(cmd),
    }  # fmt: skip
    print(f"  search   {backend:<10} seed {seed}  {wall:6.1f} s  best {row['best']}  "
          f"{row['s_per_epoch']} s/epoch", flush=True)  # fmt: skip
    shutil.rmtree(results, ignore_errors=True)
    return row


def run_overhead(tmp: Path, backend: str, side: str, repeat: int, env: dict[str, str]) -> dict:
    folder = tmp / f"overhead-{backend}-{side}-{repeat}"
    if side == "tunecb":
        cmd = [*tunecb_command(), "search", str(OVERHEAD_STUDY.relative_to(ROOT)), "--results",
               str(folder), "--n-trials", "8", "--pruner", "none", "--jobs", "0", "--backend",
               backend]  # fmt: skip
    else:
        cmd = [sys.executable, str(BARE.relative_to(ROOT)), "--trials", "8", "--workdir",
               str(folder), "--callbacks", "keras"]  # fmt: skip
    wall, _ = run_timed(cmd, env | {"KERAS_BACKEND": backend})
    print(f"  overhead {backend:<10} {side:<6} repeat {repeat + 1}  {wall:6.2f} s", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    return {"backend": backend, "side": side, "repeat": repeat, "wall_s": round(wall, 3),
            "cmd": cmdline(cmd)}  # fmt: skip


def summarize(backends: list[str], searches: list[dict], overhead: list[dict]) -> dict:
    out: dict[str, Any] = {}
    for b in backends:
        mine = [s for s in searches if s["backend"] == b]
        bests = [s["best"] for s in mine if s["best"] is not None]
        walls = [s["wall_s"] for s in mine]
        per_epoch = [s["s_per_epoch"] for s in mine if s["s_per_epoch"]]
        sides = {side: [o["wall_s"] for o in overhead if o["backend"] == b and o["side"] == side]
                 for side in ("tunecb", "bare")}  # fmt: skip
        ratio = (statistics.median(sides["tunecb"]) / statistics.median(sides["bare"])
                 if all(sides.values()) else None)  # fmt: skip
        out[b] = {
            "s_per_epoch_median": statistics.median(per_epoch) if per_epoch else None,
            "wall_median_s": statistics.median(walls) if walls else None,
            "wall_spread": round(spread(walls), 4) if walls else None,
            "best_median": statistics.median(bests) if bests else None,
            "bests": bests,
            "epochs_median": statistics.median(s["epochs"] for s in mine) if mine else None,
            "overhead_walls_s": sides,
            "overhead_ratio": round(ratio, 4) if ratio else None,
            "overhead_ok": ratio is not None and ratio <= GOAL,
        }
    return out


def table(result: dict) -> str:
    s, summary = result["settings"], result["summary"]
    base = summary.get("tensorflow", {}).get("s_per_epoch_median")
    lines = [
        f"tabular task, {s['trials']} trials x {s['epochs']} epochs, seeds {s['seeds']}, "
        f"tunecb's defaults; overhead: 8 fixed fits x 30 epochs, {s['repeats']} repeat(s)",
        "",
        "| backend | version | s per epoch (median) | vs TensorFlow | search wall s: median "
        "(spread) | epochs trained | best val_accuracy: median [all] | tunecb / bare fit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b, row in summary.items():
        spe = row["s_per_epoch_median"]
        speed = f"{base / spe:.2f}x faster" if base and spe else "n/a"
        bests = ", ".join(f"{v:.4f}" for v in row["bests"])
        ratio = row["overhead_ratio"]
        status = "" if ratio is None else (" OK" if row["overhead_ok"] else " OVER GOAL")
        lines.append(
            f"| {b} | {result['versions'].get(b, '?')} | {spe:.4f} | {speed} | "
            f"{row['wall_median_s']:.1f} ({row['wall_spread']:.0%}) | {row['epochs_median']} | "
            f"{row['best_median']:.4f} [{bests}] | {ratio}{status} |"
        )
    if s["skipped"]:
        lines.append(f"\nnot installed, skipped: {', '.join(s['skipped'])}")
    m = result["machine"]
    lines.append(
        f"\n{m['cpus_usable']} usable CPUs; load average before {m['loadavg_1_5_15_before']}, "
        f"after {m['loadavg_1_5_15_after']}; overhead goal <= {GOAL}"
    )
    return "\n".join(lines)


def backend_versions(backends: list[str]) -> dict[str, str]:
    from importlib import metadata

    names = {"tensorflow": ("tensorflow-cpu", "tensorflow"), "jax": ("jax",), "torch": ("torch",)}
    found = {}
    for b in backends:
        for dist in names[b]:
            try:
                found[b] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return found


if __name__ == "__main__":
    raise SystemExit(main())
