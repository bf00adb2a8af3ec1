"""Search quality against time: tunecb's defaults, a hand-written Optuna loop, KerasTuner.

tunecb with its defaults, the Optuna loop a Keras user writes by hand and KerasTuner's
Hyperband, on the same tasks, search space and budget.

Run it from the repository root::

    python benchmarks/search.py                 # the full run (see below for its time)
    python benchmarks/search.py --quick         # smoke run: 2 tasks x 1 seed x 4 trials x 4 epochs
    python benchmarks/search.py --time-trial    # one full-budget trial's cost, per task
                                                # (writes benchmarks/out/search_time_trial.json)

The systems, each a fresh subprocess (Python start-up and TensorFlow import included), each
with its own default use of the machine (the loop and KerasTuner: one process, TensorFlow's
default threading; tunecb: its default ``--jobs auto``, one worker process per core with one
thread each; the CPU affinity is recorded), on every task and seed:

- **tunecb**: a study file per task and seed, written from :data:`STUDY_TEMPLATE` into a
  temporary folder, sets ``name, monitor, epochs, batch_size=64, n_trials, seed, patience`` and
  nothing else, so the sampler, pruner, learning-rate schedule and execution mode are tunecb's
  defaults when the benchmark runs (recorded in the JSON); run as a user runs it,
  ``tunecb search STUDY --results TMP --log-format json``.
- **loop**: ``benchmarks/search_loop.py``, the Optuna loop a Keras user writes: TPE seeded,
  ``HyperbandPruner(1, epochs, 3)``, in-memory storage, ``EarlyStopping(patience,
  restore_best_weights=True)``, ``ModelCheckpoint`` (best only) and a pruning callback that
  raises ``optuna.TrialPruned`` from ``on_epoch_end`` as optuna-integration's does.
- **kerastuner**: ``benchmarks/search_kerastuner.py``, ``keras_tuner.Hyperband(max_epochs=
  epochs, factor=3, hyperband_iterations=1)`` with the same ``EarlyStopping``; skipped with a
  note when ``keras_tuner`` is not importable. Hyperband sets its own number of trials
  (:func:`kt_hyperband_budget`; ``--trials`` does not apply): at 20 epochs one iteration is 30
  trials (22 configurations, the others continue a promoted one from its weights) and at most
  226 epochs, against at most 400 for 20 trials of the Optuna systems; at 30 epochs, 90 trials
  and 576 epochs; at 4 (``--quick``), 10 trials and 26 epochs. The table shows the epochs
  each system trained.

The tasks (:mod:`search_tasks`; no download): ``digits`` (scikit-learn's 8x8 digits, 10 classes,
``val_accuracy``, maximized), ``tabular`` (``make_classification``, 4,000 x 40, 3 classes,
``val_accuracy``) and ``diabetes`` (regression, X and y standardized, ``val_loss`` = MSE,
minimized); 25 % of each is the validation set. One MLP space for all: layers 1-3, units 16-256
(log), dropout 0-0.5, Adam's learning rate 1e-4..3e-2 (log). One budget: ``--trials``,
``--epochs``, ``--patience``, batch 64. The systems run in turn for each (task, seed), in an
order that rotates from one (task, seed) to the next.

What is measured, per run: the wall time (launch to exit, by this process) and every finished
trial's state, value and finish time (seconds since launch: tunecb's ``trial`` events carry
Unix ``time``, the two runners print it). The **anytime curve** is the best value reached by
each moment, counting the values of COMPLETE trials only, for every system. (tunecb's ``trial``
events carry a value for PRUNED trials too, their best epoch, and the hand loop prints one,
but neither counts; tunecb's own ``best`` field is Optuna's best trial, COMPLETE only, as
here. KerasTuner has no pruned state: each of its finished rungs is COMPLETE.) Per task
and system: the median best over the seeds (min-max), the median wall time (spread), and the
time the system's curve needs to reach the hand loop's median final best (median over seeds;
never reached in a seed counts as infinite), divided by the hand loop's median wall time. For
tunecb that ratio is the figure of the issue: below 1, tunecb matches the hand loop's result
sooner than the hand loop ends.

It prints a markdown table and writes everything (per-seed trials and curves, commands, the
machine and versions) to ``benchmarks/out/search.json``.

Why 20 epochs by default, not 30 (the 2-core development machine, other work running on it):
one trial of 20 epochs without pruning or early stopping (``--time-trial``) takes 2.6 s on
digits (2 x 64 units; 3.4 s at 3 x 256), 3.7 s (4.5 s) on tabular and 2.1 s (2.4 s) on
diabetes, after a process start-up of about 4-5 s; at 30 epochs 3.8-9 s. One (task, seed) at
30 epochs took 417 s on digits (tunecb 83 s, loop 63 s, KerasTuner 270 s: its 90 trials cost
about 2 s each besides their epochs), so the full run would take about an hour, and smaller
data would not help much, since KerasTuner's per-trial cost dominates. At 20 epochs one
(task, seed) took 184 s on tabular, the slowest task (61 s, 42 s, 77 s): the full run (3 tasks x
3 seeds x 3 systems, 20 trials, 20 epochs, patience 5) is expected to take about 25 minutes
(estimated from these runs; not yet run in full). ``--quick`` took 82-97 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    cmdline,
    machine,
    run_timed,
    shown,
    spread,
    tunecb_command,
    versions,
    write_result,
)
from search_tasks import TASKS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_JSON = HERE / "out" / "search.json"
TIME_TRIAL_JSON = HERE / "out" / "search_time_trial.json"
LOOP_SCRIPT = HERE / "search_loop.py"
KT_SCRIPT = HERE / "search_kerastuner.py"
SYSTEMS = ("tunecb", "loop", "kerastuner")

TRIALS = 20
EPOCHS = 20
PATIENCE = 5
SEEDS = (0, 1, 2)
BATCH_SIZE = 64
THREAD_ENV = ("TF_ENABLE_ONEDNN_OPTS", "OPENBLAS_CORETYPE", "CUDA_VISIBLE_DEVICES")  # recorded
QUICK = {"tasks": ("digits", "diabetes"), "seeds": (0,), "trials": 4, "epochs": 4}
# --time-trial: a middling and the largest model of the space.
TIMED_PARAMS = (
    {"layers": 2, "units": 64, "dropout": 0.25, "lr": 1.7e-3},
    {"layers": 3, "units": 256, "dropout": 0.25, "lr": 1.7e-3},
)

STUDY_TEMPLATE = '''"""tunecb's side of benchmarks/search.py: task {task!r}, seed {seed}.

Only the budget is set: the sampler, the pruner, the learning-rate schedule and the rest are
tunecb's defaults.
"""

import sys

sys.path.insert(0, {bench_dir!r})

import optuna  # noqa: F401 (a --variant may name an Optuna sampler or pruner)

import tunecb
from search_tasks import TASKS, build, suggest

task = TASKS[{task!r}]

study = tunecb.Study(
    name={task!r},
    monitor={monitor!r},
    epochs={epochs},
    batch_size={batch_size},
    n_trials={trials},
    seed={seed},
    patience={patience},{extra}
)


@study.data
def load():
    return task.load()


@study.model
def model(trial):
    return build(task, **suggest(trial))
'''


TUNECB_FLAGS: list[str] = []  # --tunecb-flag: a variant of tunecb's defaults
# --variant NAME=SPEC: more tunecb systems, "tunecb[NAME]", each with its CLI flags and Study
# keywords (Python text), side by side with the defaults in the same run.
VARIANTS: dict[str, tuple[list[str], list[str]]] = {}


def _variant(text: str) -> tuple[str, tuple[list[str], list[str]]]:
    """``NAME=SPEC``: SPEC's words starting with ``--`` are ``tunecb search`` flags, the
    others ``Study(...)`` keywords.

    >>> _variant("hb2=--jobs=2 pruner=optuna.pruners.HyperbandPruner(2,20,3)")
    ('hb2', (['--jobs=2'], ['pruner=optuna.pruners.HyperbandPruner(2,20,3)']))
    """
    name, sep, spec = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: NAME=SPEC, e.g. 'j2=--jobs=2'")
    words = spec.split()
    flags = [w for w in words if w.startswith("--")]
    return name.strip(), (flags, [w for w in words if not w.startswith("--")])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 2 tasks x 1 seed x 4 trials x 4 epochs"
    )
    parser.add_argument("--tasks", type=_names(TASKS), help=f"of {','.join(TASKS)} (all)")
    parser.add_argument("--systems", type=_names(SYSTEMS), help=f"of {','.join(SYSTEMS)} (all)")
    parser.add_argument("--seeds", type=_ints, help="e.g. 0,1,2 (the default)")
    parser.add_argument("--trials", type=int, help=f"trials per search ({TRIALS})")
    parser.add_argument("--epochs", type=int, help=f"epoch budget of a trial ({EPOCHS})")
    parser.add_argument(
        "--patience", type=int, default=PATIENCE, help=f"early-stopping patience ({PATIENCE})"
    )
    parser.add_argument(
        "--time-trial",
        action="store_true",
        help="only time one full-budget trial per task (hand loop, one seed)",
    )
    parser.add_argument(
        "--json", type=Path, help=f"where to write JSON ({shown(DEFAULT_JSON)}; --time-trial: "
        f"{shown(TIME_TRIAL_JSON)})",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--tunecb-flag", action="append", default=[], metavar="FLAG",
        help="a flag for tunecb search, for a variant (e.g. --tunecb-flag=--pruner=hyperband); "
        "without it tunecb runs with its defaults",
    )  # fmt: skip
    parser.add_argument(
        "--variant", action="append", default=[], type=_variant, metavar="NAME=SPEC",
        help="one more tunecb system, tunecb[NAME], beside the defaults: SPEC's words that "
        "start with -- are tunecb search flags, the others Study keywords, e.g. "
        "'hb2=--jobs=2 pruner=optuna.pruners.HyperbandPruner(2,20,3)' (repeatable)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    TUNECB_FLAGS[:] = args.tunecb_flag
    VARIANTS.update(args.variant)
    tasks = args.tasks or (QUICK["tasks"] if args.quick else tuple(TASKS))
    seeds = args.seeds or (QUICK["seeds"] if args.quick else SEEDS)
    trials = args.trials or (QUICK["trials"] if args.quick else TRIALS)
    epochs = args.epochs or (QUICK["epochs"] if args.quick else EPOCHS)
    systems = list(args.systems or SYSTEMS)
    if VARIANTS:
        at = systems.index("tunecb") + 1 if "tunecb" in systems else 0
        systems[at:at] = [f"tunecb[{name}]" for name in VARIANTS]
    if min(trials, epochs) < 1 or args.patience < 0:
        parser.error("--trials and --epochs must be >= 1, --patience >= 0")
    notes: list[str] = []
    if "kerastuner" in systems and importlib.util.find_spec("keras_tuner") is None:
        systems.remove("kerastuner")
        notes.append("KerasTuner skipped: keras_tuner is not importable (pip install keras-tuner)")
        print(f"note: {notes[-1]}", flush=True)
    if not systems:
        parser.error("no system left to run")

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    started = time.perf_counter()
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="tunecb-search-bench-"))
    settings = {
        "tasks": list(tasks), "systems": systems, "seeds": list(seeds), "trials": trials,
        "epochs": epochs, "patience": args.patience, "batch_size": BATCH_SIZE,
        "quick": args.quick, "tunecb_flags": list(TUNECB_FLAGS),
        "variants": {name: {"flags": f, "study": k} for name, (f, k) in VARIANTS.items()},
        "kerastuner_hyperband": kt_hyperband_budget(epochs),
    }  # fmt: skip
    try:
        print(f"temporary folder {tmp}", flush=True)
        run_timed(
            [sys.executable, "-c", "import tensorflow, keras, optuna, sklearn"], env
        )  # warm-up
        if args.time_trial:
            timed = time_trials(tasks, seeds[0], epochs, env)
            result = {"kind": "time_trial", "settings": settings, "trials": timed}
        else:
            runs = run_all(tmp, tasks, seeds, systems, trials, epochs, args.patience, env)
            summary = summarize(runs, tasks, systems)
            result = {"kind": "search", "settings": settings, "notes": notes, "summary": summary,
                      "runs": runs}  # fmt: skip
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        **result,
        "tunecb_defaults": _tunecb_defaults(epochs),
        "threads": {
            "affinity": sorted(os.sched_getaffinity(0)),
            "env": {k: v for k, v in os.environ.items() if "THREAD" in k or k in THREAD_ENV},
            "note": "loop and KerasTuner: TensorFlow's default threading; tunecb: its default "
            "--jobs auto (a worker per core, one thread each)",
        },
        "machine": machine(load_before, os.getloadavg()),
        "versions": versions() | _kt_version(),
        "total_s": round(time.perf_counter() - started, 1),
    }
    table = time_trial_table(result) if args.time_trial else search_table(result)
    default = TIME_TRIAL_JSON if args.time_trial else DEFAULT_JSON
    write_result(result, args.json or default, table)
    return 0


# --- the runs ----------------------------------------------------------------------------


def run_all(
    tmp: Path, tasks, seeds, systems: list[str], trials: int, epochs: int, patience: int,
    env: dict[str, str],
) -> list[dict[str, Any]]:  # fmt: skip
    """Every system on every (task, seed), the systems' order rotating between pairs."""
    runs = []
    pairs = [(task, seed) for task in tasks for seed in seeds]
    for i, (task, seed) in enumerate(pairs):
        k = i % len(systems)
        for system in systems[k:] + systems[:k]:
            folder = tmp / f"{system}-{task}-{seed}"
            folder.mkdir(parents=True)
            cmd = command(system, folder, task, seed, trials, epochs, patience)
            run = run_one(system, task, seed, cmd, env)
            runs.append(run)
            best = "-" if run["best"] is None else f"{run['best']:.4f}"
            failed = f"  FAILED: {run['error']}" if run["error"] else ""
            print(
                f"  {task:<9} seed {seed}  {system:<10} {run['wall_s']:7.1f} s  "
                f"{run['states']}  best {best}{failed}",
                flush=True,
            )
            shutil.rmtree(folder, ignore_errors=True)
    return runs


def command(
    system: str, folder: Path, task: str, seed: int, trials: int, epochs: int, patience: int
) -> list[str]:
    """The command line of one run (a study file is written for tunecb)."""
    if system.startswith("tunecb"):
        flags, keywords = VARIANTS.get(system.removeprefix("tunecb[").rstrip("]"), ([], []))
        study = folder / f"{task}.py"
        t = TASKS[task]
        study.write_text(
            STUDY_TEMPLATE.format(
                task=task, seed=seed, bench_dir=str(HERE), monitor=t.monitor, epochs=epochs,
                batch_size=BATCH_SIZE, trials=trials, patience=patience,
                extra="".join(f"\n    {k}," for k in keywords),
            ),
            encoding="utf-8",
        )  # fmt: skip
        return [*tunecb_command(), "search", str(study), "--results", str(folder / "results"),
                "--log-format", "json", *TUNECB_FLAGS, *flags]  # fmt: skip
    shared = ["--task", task, "--seed", str(seed), "--epochs", str(epochs),
              "--patience", str(patience), "--batch-size", str(BATCH_SIZE)]  # fmt: skip
    if system == "loop":
        return [sys.executable, str(LOOP_SCRIPT), *shared, "--trials", str(trials)]
    return [sys.executable, str(KT_SCRIPT), *shared]


def run_one(system: str, task: str, seed: int, cmd: list[str], env: dict[str, str]) -> dict:
    """Run one search; its wall time and every finished trial with its time since launch."""
    launched = time.time()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    trials, extra = parse_trials(system, proc.stdout, launched)
    maximize = TASKS[task].maximize
    curve = anytime_curve(trials, maximize)
    error = None
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        error = f"exit {proc.returncode}: " + " | ".join(tail)
    states: dict[str, int] = {}
    for trial in trials:
        states[trial["state"]] = states.get(trial["state"], 0) + 1
    return {
        "system": system,
        "task": task,
        "seed": seed,
        "cmd": cmdline(cmd),
        "wall_s": round(wall, 3),
        "exit": proc.returncode,
        "error": error,
        "states": states,
        "epochs_trained": sum(t["epochs"] or 0 for t in trials),
        "best": curve[-1][1] if curve else None,
        "curve": curve,
        "trials": trials,
        **extra,
    }


def parse_trials(system: str, stdout: str, launched: float) -> tuple[list[dict], dict]:
    """Finished trials (``trial, state, value, epochs, t`` = seconds since launch), and for
    tunecb what its start and summary events say about the mode and the result."""
    trials, extra = [], {}
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        rec = json.loads(line)
        if system.startswith("tunecb"):
            kind = rec.get("event")
            if kind == "start":
                extra["tunecb_start"] = {k: rec.get(k) for k in ("mode", "workers", "notes")}
            elif kind == "summary":
                extra["tunecb_summary"] = {k: rec.get(k) for k in ("ran", "stopped_by", "best")}
            if kind != "trial":
                continue
            epochs = rec.get("epochs_run")
        else:
            epochs = rec.get("epochs")
        trials.append({
            "trial": rec["trial"], "state": rec["state"], "value": rec.get("value"),
            "epochs": epochs, "t": round(rec["time"] - launched, 3),
        })  # fmt: skip
    trials.sort(key=lambda r: r["t"])
    return trials, extra


def anytime_curve(trials: list[dict], maximize: bool) -> list[list[float]]:
    """``[t, best so far]`` at every COMPLETE trial that improved the best (finite values)."""
    curve: list[list[float]] = []
    for trial in trials:
        value = trial["value"]
        if trial["state"] != "COMPLETE" or value is None or not math.isfinite(value):
            continue
        if not curve or (value > curve[-1][1] if maximize else value < curve[-1][1]):
            curve.append([trial["t"], value])
    return curve


def time_to_reach(curve: list[list[float]], target: float, maximize: bool) -> float:
    """Seconds until the curve is at least as good as ``target``; ``inf`` if never."""
    for t, best in curve:
        if (best >= target) if maximize else (best <= target):
            return t
    return math.inf


# --- summary and table -------------------------------------------------------------------


def summarize(runs: list[dict], tasks, systems: list[str]) -> dict[str, dict]:
    """Per task and system: bests, wall times, and the time to the hand loop's median best."""
    summary: dict[str, dict] = {}
    for task in tasks:
        maximize = TASKS[task].maximize
        loop = [r for r in runs if r["task"] == task and r["system"] == "loop"]
        loop_bests = [r["best"] for r in loop if r["best"] is not None]
        target = statistics.median(loop_bests) if loop_bests else None
        loop_wall = statistics.median(r["wall_s"] for r in loop) if loop else None
        summary[task] = {"loop_median_best": target, "loop_median_wall_s": loop_wall}
        for system in systems:
            mine = [r for r in runs if r["task"] == task and r["system"] == system]
            bests = [r["best"] for r in mine if r["best"] is not None]
            walls = [r["wall_s"] for r in mine]
            states: dict[str, int] = {}
            for r in mine:
                for state, n in r["states"].items():
                    states[state] = states.get(state, 0) + n
            reach = (
                [time_to_reach(r["curve"], target, maximize) for r in mine]
                if target is not None else []
            )  # fmt: skip
            reach_med = statistics.median(reach) if reach else None
            summary[task][system] = {
                "runs": len(mine),
                "failed_runs": sum(1 for r in mine if r["error"]),
                "trials_by_state": states,
                "epochs_trained_median": statistics.median(r["epochs_trained"] for r in mine),
                "best_median": statistics.median(bests) if bests else None,
                "best_min": min(bests) if bests else None,
                "best_max": max(bests) if bests else None,
                "wall_median_s": round(statistics.median(walls), 2),
                "wall_spread": round(spread(walls), 4),
                "walls_s": walls,
                "time_to_loop_best_s": [_finite(x) for x in reach],
                "time_to_loop_best_median_s": _finite(reach_med),
                "ratio_to_loop_wall": (
                    _finite(reach_med / loop_wall) if reach_med is not None and loop_wall
                    else None
                ),
            }  # fmt: skip
    return summary


def search_table(result: dict[str, Any]) -> str:
    s, summary = result["settings"], result["summary"]
    head = (
        "| task (monitor) | system | trials C/P/F, all seeds | epochs trained (median) | "
        "best: median [min-max] | wall s: median (spread) | to loop's median best: s | "
        "/ loop's median wall |"
    )
    lines = [
        f"{len(s['seeds'])} seed(s) {s['seeds']}, {s['trials']} trials (tunecb, loop), "
        f"{s['epochs']} epochs, patience {s['patience']}, batch {s['batch_size']}; "
        "best = best value of COMPLETE trials",
        "",
        head,
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, per in summary.items():
        t = TASKS[task]
        label = f"{task} ({t.monitor}, {'max' if t.maximize else 'min'})"
        for system in s["systems"]:
            row = per[system]
            st = row["trials_by_state"]
            other = sum(n for k, n in st.items() if k not in ("COMPLETE", "PRUNED"))
            cpf = f"{st.get('COMPLETE', 0)}/{st.get('PRUNED', 0)}/{other}"
            if row["failed_runs"]:
                cpf += f" ({row['failed_runs']} run(s) FAILED)"
            best = (
                f"{row['best_median']:.4f} [{row['best_min']:.4f}-{row['best_max']:.4f}]"
                if row["best_median"] is not None else "none"
            )  # fmt: skip
            reach = row["time_to_loop_best_median_s"]
            ratio = row["ratio_to_loop_wall"]
            lines.append(
                f"| {label} | {system} | {cpf} | {row['epochs_trained_median']:g} | {best} | "
                f"{row['wall_median_s']:.1f} ({row['wall_spread']:.0%}) | "
                f"{_never(reach, '.1f')} | {_never(ratio, '.2f')} |"
            )
    m = result["machine"]
    kt = s["kerastuner_hyperband"]
    lines += [
        "",
        f"budget: tunecb and loop {s['trials']} trials, at most {s['trials'] * s['epochs']} "
        f"epochs; kerastuner (Hyperband's own schedule, no trial budget) {kt['trials']} "
        f"trials ({kt['configurations']} configurations), at most {kt['max_epochs_trained']} "
        "epochs",
        "tunecb defaults used: " + ", ".join(
            f"{k}={v!r}" for k, v in result["tunecb_defaults"].items() if not k.endswith("_made")
        ) + f"; pruner {_described(result['tunecb_defaults']['pruner_made'])}"
        + (f"; OVERRIDDEN for this run by {' '.join(s['tunecb_flags'])}"
           if s.get("tunecb_flags") else ""),
        *(f"tunecb[{name}]: tunecb with {' '.join(v['flags'] + v['study']) or 'its defaults'}"
          for name, v in s.get("variants", {}).items()),
        f"{m['cpus_usable']} usable CPUs (affinity {result['threads']['affinity']}); "
        f"load average before {m['loadavg_1_5_15_before']}, after {m['loadavg_1_5_15_after']}",
        *result["notes"],
    ]  # fmt: skip
    return "\n".join(lines)


# --- --time-trial ------------------------------------------------------------------------


def time_trials(tasks, seed: int, epochs: int, env: dict[str, str]) -> list[dict]:
    """One full-budget trial per task and model size: the hand loop with two identical
    trials (no pruning, early stopping that cannot trigger); the second one's duration is a
    trial's cost in a warm process, the first one's end the start-up plus one trial."""
    out = []
    for task in tasks:
        for params in TIMED_PARAMS:
            cmd = [sys.executable, str(LOOP_SCRIPT), "--task", task, "--seed", str(seed),
                   "--trials", "2", "--epochs", str(epochs), "--patience", str(epochs),
                   "--no-pruning", "--params", json.dumps(params)]  # fmt: skip
            wall, stdout = run_timed(cmd, env)
            rows = [json.loads(x) for x in stdout.splitlines() if x.startswith("{")]
            first, second = rows[0]["t"], rows[1]["t"] - rows[0]["t"]
            out.append({
                "task": task, "params": params, "epochs": [r["epochs"] for r in rows],
                "first_trial_end_s": first, "trial_s": round(second, 3),
                "per_epoch_s": round(second / max(1, rows[1]["epochs"]), 4),
                "wall_s": round(wall, 3), "cmd": cmdline(cmd),
            })  # fmt: skip
            print(f"  {task:<9} {params}  trial {second:.2f} s", flush=True)
    return out


def time_trial_table(result: dict[str, Any]) -> str:
    rows, m = result["trials"], result["machine"]
    lines = [
        f"one trial of {result['settings']['epochs']} epochs, no pruning or early stopping "
        "(hand loop)",
        "",
        "| task | model | trial s | s per epoch | launch to first trial's end s |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        p = r["params"]
        lines.append(
            f"| {r['task']} | {p['layers']} x {p['units']} | {r['trial_s']:.2f} | "
            f"{r['per_epoch_s']:.3f} | {r['first_trial_end_s']:.2f} |"
        )
    lines.append(
        f"\nload average before {m['loadavg_1_5_15_before']}, after {m['loadavg_1_5_15_after']}"
    )
    return "\n".join(lines)


# --- helpers -----------------------------------------------------------------------------


def kt_hyperband_budget(max_epochs: int, factor: int = 3) -> dict[str, int]:
    """What one iteration of KerasTuner's Hyperband runs at ``max_epochs`` (its oracle's
    formulas): trials, new configurations (the others continue a promoted one) and the
    epochs trained if nothing stops early.

    >>> kt_hyperband_budget(20)
    {'trials': 30, 'configurations': 22, 'max_epochs_trained': 226}
    >>> kt_hyperband_budget(30)
    {'trials': 90, 'configurations': 62, 'max_epochs_trained': 576}
    """
    brackets, e = 0, float(max_epochs)
    while e >= 1:
        e, brackets = e / factor, brackets + 1
    end_size = math.ceil(1 + math.log(max_epochs, factor))
    trials = configurations = epochs_trained = 0
    for bracket in range(brackets):
        before = 0
        for rung in range(bracket + 1):
            size = math.ceil(end_size / (bracket + 1) * factor ** (bracket - rung))
            epochs = math.ceil(max_epochs / factor ** (bracket - rung))
            trials += size
            configurations += size if rung == 0 else 0
            epochs_trained += size * (epochs - before)
            before = epochs
    return {
        "trials": trials,
        "configurations": configurations,
        "max_epochs_trained": epochs_trained,
    }


def _tunecb_defaults(epochs: int) -> dict[str, Any]:
    """tunecb's defaults of what the study files leave unset, and the sampler and pruner they
    make (class and plain attributes; Optuna is imported, TensorFlow is not)."""
    from tunecb.study.samplers_pruners import make_pruner, make_sampler
    from tunecb.study.settings import DEFAULTS

    keys = ("sampler", "pruner", "lr_schedule", "min_delta", "backup_every")
    made = {
        "sampler_made": make_sampler(DEFAULTS["sampler"], 0),
        "pruner_made": make_pruner(DEFAULTS["pruner"], epochs),
    }
    plain = (int, float, str, bool, type(None))
    return (
        {k: DEFAULTS[k] for k in keys}
        | {"jobs": "auto"}
        | {
            key: {"class": type(obj).__name__}
            | {k.lstrip("_"): v for k, v in vars(obj).items() if isinstance(v, plain)}
            for key, obj in made.items()
        }
    )


def _described(made: dict[str, Any]) -> str:
    """``MedianPruner(n_startup_trials=5, ...)`` from :func:`_tunecb_defaults`' record."""
    args = ", ".join(f"{k}={v!r}" for k, v in made.items() if k != "class")
    return f"{made['class']}({args})"


def _kt_version() -> dict[str, str]:
    from importlib import metadata

    try:
        return {"keras-tuner": metadata.version("keras-tuner")}
    except metadata.PackageNotFoundError:
        return {}


def _names(known) -> Any:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        bad = [n for n in names if n not in known]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {','.join(known)}")
        return names

    return parse


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: integers separated by commas") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: integers >= 0 separated by commas")
    return values


def _finite(x: float | None) -> float | str | None:
    """JSON-friendly: ``inf`` as the string "inf", numbers rounded."""
    if x is None:
        return None
    return "inf" if math.isinf(x) else round(x, 3)


def _never(x: float | str | None, fmt: str) -> str:
    if x is None:
        return "n/a"
    return "never" if x == "inf" else format(x, fmt)


if __name__ == "__main__":
    raise SystemExit(main())
