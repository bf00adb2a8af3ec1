"""Search quality against time: tunecb against a hand-written Optuna loop, Ray Tune's ASHA
and KerasTuner.

tunecb with its defaults (and with the ``promotion`` pruner, and on JAX), the Optuna loop a
Keras user writes by hand, Ray Tune's ASHA with its Optuna searcher and KerasTuner's Hyperband,
on the same tasks, search space and budget.

Run it from the repository root (``pip install -e '.[cpu,jax,bench]'`` for every system)::

    python benchmarks/search.py                 # the full run: about 70 min on 2 idle cores
    python benchmarks/search.py --quick         # smoke run: diabetes x seeds 0,1 x 4 trials x
                                                # 4 epochs, every system (a few minutes)
    python benchmarks/search.py --time-trial    # one full-budget trial's cost, per task

The systems, each a fresh subprocess (Python start-up and the backend's import included), each
with its own default use of the machine (the CPU affinity is recorded), TensorFlow for all
(``KERAS_BACKEND=tensorflow``) but ``tunecb[jax]``:

- **tunecb**: a study file per task and seed, written from :data:`STUDY_TEMPLATE`, sets
  ``name, monitor, epochs, batch_size=64, n_trials, seed, patience`` and nothing else, so the
  sampler, pruner, schedule and execution mode (``--jobs auto``: a worker per core) are
  tunecb's defaults (recorded in the JSON); run as ``tunecb search STUDY --results TMP
  --log-format json``.
- **tunecb[promotion]**: the same with ``--pruner promotion`` (pause-and-resume asynchronous
  successive halving); run only when the installed tunecb knows that pruner (its settings
  table's ``PRUNERS``), skipped with a printed note otherwise.
- **tunecb[jax]**: the defaults with ``--backend jax``: a separate row, not the same-backend
  comparison (measured slower than TensorFlow for these small MLPs: each new model compiles;
  ``build_cost.py``).
- **loop**: ``benchmarks/search_loop.py``, the Optuna loop a Keras user writes: TPE seeded,
  ``HyperbandPruner(1, epochs, 3)``, ``EarlyStopping(patience, restore_best_weights=True)``,
  ``ModelCheckpoint`` (best only), a pruning callback as optuna-integration's; one process.
- **ray**: ``benchmarks/search_ray.py``, Ray Tune's ``ASHAScheduler(max_t=epochs,
  grace_period=tunecb's first rung (a tenth of the epochs), reduction_factor=3)`` with
  ``OptunaSearch`` (TPE seeded, the same define-by-run space), ``max_concurrent_trials`` = the
  cores, one CPU per trial, ``reuse_actors=True``, the same ``EarlyStopping``, and the best
  model kept as a Ray ``Checkpoint`` (``CheckpointConfig(num_to_keep=1)``). Ray's start-up
  (import and ``ray.init``) is inside its wall time and also recorded apart. Skipped with a
  note when ``ray`` is not importable (the ``bench`` extra installs it).
- **kerastuner**: ``benchmarks/search_kerastuner.py``, ``keras_tuner.Hyperband(max_epochs=
  epochs, factor=3)``; it sets its own number of trials (:func:`kt_hyperband_budget`) and
  costs about 2 s a trial besides its epochs, so it is not in the default systems (name it in
  ``--systems`` to add it; it would take about as long as all the others together).

``--paired``: the hand loop and Ray Tune's searcher draw each trial's parameters and Keras
seed from tunecb's per-trial streams (``--tunecb-draws`` of ``search_loop.py`` and
``search_ray.py``; :mod:`paired_draws`), so for a seed all three try the same random first
configurations (TPE's first 10 trials are random in each) and train them alike: a paired
comparison. Without it each system's seed draws its own start-up, fixed per seed, and
at 20 trials and five seeds that luck decided the median best (README; see
``search_phases.py``, which splits each best into the random and the model-based phase).

The tasks (:mod:`search_tasks`; no download): ``digits`` (scikit-learn's 8x8 digits,
``val_accuracy``, maximized), ``tabular`` (``make_classification``, 4,000 x 40, 3 classes,
``val_accuracy``) and ``diabetes`` (regression, standardized, ``val_loss`` = MSE, minimized);
25 % of each is the validation set. One MLP space for all: layers 1-3, units 16-256 (log),
dropout 0-0.5, Adam's learning rate 1e-4..3e-2 (log). Added after the defaults were chosen:
``friedman``, ``large`` (below), ``cnn`` (the digits as 8 x 8 x 1 images, a CNN of the same
space, filters a quarter of the units: epochs whose cost is arithmetic more than per-call
overhead) and ``perlayer`` (the tabular data with each layer's units drawn: a conditional
space; ``--variant`` can compare tunecb's grouped TPE with the ungrouped one). Patience 5,
batch 64, seeds 0-4, and a budget per task (:data:`BUDGETS`, trials x epochs;
``--trials``/``--epochs`` override it for every task). For every (task, seed) the systems run
one after the other, in an order that rotates from one (task, seed) to the next, so a drift in
the machine's load hits all alike.

What is measured, per run: the wall time (launch to exit), the CPU seconds of the process
tree as far as it was reaped (Ray's own processes may escape it), and every finished trial's
state, value, epochs and finish time (seconds since launch). The **anytime curve** of a run is
its best value by each moment, counting COMPLETE trials only (a pruned, stopped or paused
trial's value does not count; tunecb's own ``best`` is Optuna's best COMPLETE trial, as here).
A resumed tunecb trial counts only the epochs it trained itself (``epochs_run`` minus
``resumed_from_epoch``). Per task and system: the median best over the seeds [min-max], the
median wall time (spread), the median epochs trained, and the time the curve needs to reach
the hand loop's median final best (median over seeds; never reached in a seed counts as
infinite) divided by the loop's median wall time. The goal (issue 19): on every task, tunecb's
median best at least the best other system's (loop, ray, kerastuner) and that ratio <= 0.5.

It prints a markdown table and the goal's verdict per task, writes everything (every run's
trials and anytime curve, commands, machine, versions) to ``benchmarks/out/search.json``, and
plots the median anytime curves per task and system (:mod:`search_plot`) to
``docs/search_anytime.png`` (``--quick``: ``benchmarks/out/search_anytime_quick.png``).

Why these budgets (:data:`BUDGETS`): 3 tasks x 5 seeds x 5 systems are 75 runs, and the full
run should take about 25 minutes on 2 idle cores, 20 s a run. A run costs a start-up (Python
and TensorFlow 4-5 s; tunecb's workers about 1 s more; Ray's import and ``ray.init`` about
6 s), about 1.3 s a trial (building the model, tracing the first epoch) and 0.1-0.2 s an epoch
trained (pruning and early stopping train about half to two thirds of the budget). 12 trials
x 10 epochs on digits and tabular, and 12 x 15 on diabetes (its epochs cost half: 331
training rows) come to about 20-30 s a run with one process and less with two workers; a
progress line after each (task, seed) shows the projected total. The previous run (20 trials x
20 epochs, 3 seeds, 4 systems) took 40 min. Fewer trials favour none of the systems (TPE
samples its first 10 trials at random in all of them); fewer epochs make the pruners' rungs
coarser (first rung 1, then 3, 9). ``large`` (added 2026-12-06, the compute-heavy task:
18,000 training rows, ~0.5-0.8 s an epoch) adds about 20 minutes to the full run; the
20 x 30 comparisons run it with ``--tasks large``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    cmdline,
    foreign_tunecb,
    machine,
    run_timed,
    shown,
    tunecb_command,
    versions,
    write_result,
)
from search_summary import anytime_curve, search_table, summarize
from search_tasks import TASKS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_JSON = HERE / "out" / "search.json"
TIME_TRIAL_JSON = HERE / "out" / "search_time_trial.json"
PLOT = ROOT / "docs" / "search_anytime.png"
QUICK_PLOT = HERE / "out" / "search_anytime_quick.png"
LOOP_SCRIPT = HERE / "search_loop.py"
RAY_SCRIPT = HERE / "search_ray.py"
KT_SCRIPT = HERE / "search_kerastuner.py"
SYSTEMS = ("tunecb", "tunecb[promotion]", "tunecb[jax]", "loop", "ray", "kerastuner")
DEFAULT_SYSTEMS = SYSTEMS[:-1]
# tunecb systems of the default set: tunecb[NAME] runs tunecb search with these flags.
BUILTIN_VARIANTS = {"promotion": ["--pruner=promotion"], "jax": ["--backend=jax"]}

BUDGETS = {
    "digits": (12, 10),
    "tabular": (12, 10),
    "diabetes": (12, 15),
    "friedman": (12, 10),
    "large": (12, 10),
    "cnn": (12, 10),
    "perlayer": (12, 10),
}
PATIENCE = 5
SEEDS = (0, 1, 2, 3, 4)
BATCH_SIZE = 64
FULL_RUN = (
    "python benchmarks/search.py (about 70 min on 2 idle cores, estimated; not run in full yet)"
)
THREAD_ENV = ("TF_ENABLE_ONEDNN_OPTS", "OPENBLAS_CORETYPE", "CUDA_VISIBLE_DEVICES")  # recorded
QUICK = {"tasks": ("diabetes",), "seeds": (0, 1), "trials": 4, "epochs": 4}
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
    return build(task, **suggest(trial, task))
'''


TUNECB_FLAGS: list[str] = []  # --tunecb-flag: a variant of tunecb's defaults
PAIRED_FLAGS: list[str] = []  # --paired: the loop and Ray draw as tunecb does (paired_draws)
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
    parser = _parser()
    args = parser.parse_args(argv)
    TUNECB_FLAGS[:] = args.tunecb_flag
    PAIRED_FLAGS[:] = ["--tunecb-draws"] if args.paired else []
    VARIANTS.update({name: (flags, []) for name, flags in BUILTIN_VARIANTS.items()})
    VARIANTS.update(args.variant)
    tasks = args.tasks or (QUICK["tasks"] if args.quick else tuple(TASKS))
    seeds = args.seeds or (QUICK["seeds"] if args.quick else SEEDS)
    budgets = {
        task: {
            "trials": _given(args.trials, QUICK["trials"] if args.quick else BUDGETS[task][0]),
            "epochs": _given(args.epochs, QUICK["epochs"] if args.quick else BUDGETS[task][1]),
        }
        for task in tasks
    }
    systems = list(args.systems or DEFAULT_SYSTEMS)
    extra = [f"tunecb[{name}]" for name in dict(args.variant)]
    tunecbs = [i for i, s in enumerate(systems) if s.startswith("tunecb")]
    at = tunecbs[-1] + 1 if tunecbs else 0
    systems[at:at] = [s for s in extra if s not in systems]
    if min(min(b.values()) for b in budgets.values()) < 1 or args.patience < 0:
        parser.error("--trials and --epochs must be >= 1, --patience >= 0")
    notes = _drop_unavailable(systems)
    if not systems:
        parser.error("no system left to run (install the skipped ones, or name others)")
    if any(s.startswith("tunecb") for s in systems) and (foreign := foreign_tunecb()):
        parser.error(foreign)

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    started = time.perf_counter()
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="tunecb-search-bench-"))
    settings = {
        "tasks": list(tasks), "systems": systems, "seeds": list(seeds), "budgets": budgets,
        "patience": args.patience, "batch_size": BATCH_SIZE, "quick": args.quick,
        "tunecb_flags": list(TUNECB_FLAGS), "paired": args.paired,
        "variants": {name: {"flags": f, "study": k} for name, (f, k) in VARIANTS.items()
                     if f"tunecb[{name}]" in systems},
        "kerastuner_hyperband": {t: kt_hyperband_budget(b["epochs"]) for t, b in budgets.items()}
        if "kerastuner" in systems else None,
    }  # fmt: skip
    try:
        print(f"temporary folder {tmp}", flush=True)
        warm = (
            "import tensorflow, keras, optuna, sklearn"
            + (", ray.tune" if "ray" in systems else "")
            + (", jax" if "tunecb[jax]" in systems else "")
        )
        run_timed([sys.executable, "-c", warm], env)  # warm-up: the imports' files cached
        if args.time_trial:
            epochs = max(b["epochs"] for b in budgets.values())
            timed = time_trials(tasks, seeds[0], epochs, env)
            result = {"kind": "time_trial", "settings": settings, "trials": timed}
        else:
            runs = run_all(tmp, tasks, seeds, systems, budgets, args.patience, env)
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
        "tunecb_defaults": _tunecb_defaults(max(b["epochs"] for b in budgets.values())),
        "threads": {
            "affinity": sorted(os.sched_getaffinity(0)),
            "env": {k: v for k, v in os.environ.items() if "THREAD" in k or k in THREAD_ENV},
            "note": "loop and KerasTuner: one process, TensorFlow's default threading; tunecb: "
            "its default --jobs auto (a worker per core, one thread each); ray: a trial per "
            "core (one CPU each, as Ray sets it)",
        },
        "machine": machine(load_before, os.getloadavg()),
        "versions": versions() | _bench_versions(),
        "total_s": round(time.perf_counter() - started, 1),
    }
    if args.time_trial:
        write_result(result, args.json or TIME_TRIAL_JSON, time_trial_table(result))
        return 0
    write_result(result, args.json or DEFAULT_JSON, search_table(result))
    from search_plot import plot

    print(f"wrote {plot(result, args.plot or (QUICK_PLOT if args.quick else PLOT))}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"full run: {FULL_RUN}; budgets (trials x epochs): "
        + ", ".join(f"{t} {n} x {e}" for t, (n, e) in BUDGETS.items())
        + "; seeds 0-4; systems "
        + ",".join(DEFAULT_SYSTEMS)
        + ". Read the module's docstring for what each system is and how it is measured.",
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="smoke run: diabetes, seeds 0,1, 4 trials x 4 "
        "epochs, every system (a few minutes on an idle machine)")  # fmt: skip
    add("--tasks", type=_names(TASKS), help=f"of {','.join(TASKS)} (all)")
    add("--systems", type=_names(SYSTEMS),
        help=f"of {','.join(SYSTEMS)} (all but kerastuner)")  # fmt: skip
    add("--seeds", type=_ints, help="e.g. 0,1,2,3,4 (the default)")
    add("--trials", type=int, help="trials per search, every task (default: per task, "
        + ", ".join(f"{t} {n}" for t, (n, _) in BUDGETS.items()) + ")")  # fmt: skip
    add("--epochs", type=int, help="epoch budget of a trial, every task (default: per task, "
        + ", ".join(f"{t} {e}" for t, (_, e) in BUDGETS.items()) + ")")  # fmt: skip
    add("--patience", type=int, default=PATIENCE, help=f"early-stopping patience ({PATIENCE})")
    add("--time-trial", action="store_true",
        help="only time one full-budget trial per task (hand loop, one seed)")  # fmt: skip
    add("--json", type=Path, help=f"where to write JSON ({shown(DEFAULT_JSON)}; --time-trial: "
        f"{shown(TIME_TRIAL_JSON)})")  # fmt: skip
    add("--plot", type=Path, help=f"where to draw the anytime curves ({shown(PLOT)}; --quick: "
        f"{shown(QUICK_PLOT)})")  # fmt: skip
    add("--keep", action="store_true", help="keep the temporary folder")
    add("--paired", action="store_true",
        help="the hand loop and Ray Tune draw each trial's parameters and Keras seed from "
        "tunecb's per-trial streams, so for a seed all try the same random first "
        "configurations (common random numbers: the seeds' luck cancels; see "
        "paired_draws.py)")  # fmt: skip
    add("--tunecb-flag", action="append", default=[], metavar="FLAG",
        help="a flag for every tunecb system's tunecb search (e.g. "
        "--tunecb-flag=--pruner=hyperband); without it tunecb runs with its defaults")  # fmt: skip
    add("--variant", action="append", default=[], type=_variant, metavar="NAME=SPEC",
        help="one more tunecb system, tunecb[NAME], beside the defaults: SPEC's words that "
        "start with -- are tunecb search flags, the others Study keywords, e.g. "
        "'hb2=--jobs=2 pruner=optuna.pruners.HyperbandPruner(2,20,3)' (repeatable)")  # fmt: skip
    return parser


def _given(value: int | None, default: int) -> int:
    """An option's value when given (0 included), else the default.

    >>> _given(0, 12), _given(None, 12)
    (0, 12)
    """
    return default if value is None else value


def _drop_unavailable(systems: list[str]) -> list[str]:
    """Remove the systems this machine cannot run, each with a printed note (returned)."""
    notes = []
    missing = {
        "tunecb[promotion]": None if "promotion" in tunecb_pruners() else
        f"the installed tunecb has no pruner 'promotion' (its pruners: "
        f"{', '.join(tunecb_pruners())})",
        "tunecb[jax]": None if importlib.util.find_spec("jax") else
        "jax is not importable (pip install -e '.[jax]')",
        "ray": None if importlib.util.find_spec("ray") else
        "ray is not importable (pip install -e '.[bench]')",
        "kerastuner": None if importlib.util.find_spec("keras_tuner") else
        "keras_tuner is not importable (pip install -e '.[bench]')",
    }  # fmt: skip
    for system, why in missing.items():
        if why and system in systems:
            systems.remove(system)
            notes.append(f"{system} skipped: {why}")
            print(f"note: {notes[-1]}", flush=True)
    return notes


def tunecb_pruners() -> tuple[str, ...]:
    """The pruner names the installed tunecb knows (its settings table's choices)."""
    from tunecb.study.fields import PRUNERS

    return tuple(PRUNERS)


# --- the runs ----------------------------------------------------------------------------


def run_all(
    tmp: Path, tasks, seeds, systems: list[str], budgets: dict[str, dict[str, int]],
    patience: int, env: dict[str, str],
) -> list[dict[str, Any]]:  # fmt: skip
    """Every system on every (task, seed), the systems' order rotating between pairs; a
    progress line with the projected total after each pair."""
    runs = []
    pairs = [(task, seed) for task in tasks for seed in seeds]
    started = time.perf_counter()
    for i, (task, seed) in enumerate(pairs):
        k = i % len(systems)
        trials, epochs = budgets[task]["trials"], budgets[task]["epochs"]
        for system in systems[k:] + systems[:k]:
            folder = tmp / f"{system}-{task}-{seed}"
            folder.mkdir(parents=True)
            cmd = command(system, folder, task, seed, trials, epochs, patience)
            run = run_one(system, task, seed, cmd, env)
            runs.append(run)
            best = "-" if run["best"] is None else f"{run['best']:.4f}"
            failed = f"  FAILED: {run['error']}" if run["error"] else ""
            print(
                f"  {task:<9} seed {seed}  {system:<18} {run['wall_s']:7.1f} s  "
                f"{run['epochs_trained']:4d} epochs  {run['states']}  best {best}{failed}",
                flush=True,
            )
            shutil.rmtree(folder, ignore_errors=True)
        elapsed = time.perf_counter() - started
        print(f"  [{i + 1}/{len(pairs)} (task, seed) done, {elapsed / 60:.1f} min; projected "
              f"total {elapsed / (i + 1) * len(pairs) / 60:.1f} min]", flush=True)  # fmt: skip
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
        return [sys.executable, str(LOOP_SCRIPT), *shared, "--trials", str(trials),
                *PAIRED_FLAGS]  # fmt: skip
    if system == "ray":
        return [sys.executable, str(RAY_SCRIPT), *shared, "--trials", str(trials), *PAIRED_FLAGS]
    return [sys.executable, str(KT_SCRIPT), *shared]


def run_one(system: str, task: str, seed: int, cmd: list[str], env: dict[str, str]) -> dict:
    """Run one search; its wall and CPU time and every finished trial with its time since
    launch, and its anytime curve."""
    launched = time.time()
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0
    trials, extra = parse_trials(system, proc.stdout, launched)
    curve = anytime_curve(trials, TASKS[task].maximize)
    error = None
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        error = f"exit {proc.returncode}: " + " | ".join(tail)
    states: dict[str, int] = {}
    for trial in trials:
        states[trial["state"]] = states.get(trial["state"], 0) + 1
    return {
        "system": system, "task": task, "seed": seed, "cmd": cmdline(cmd),
        "wall_s": round(wall, 3), "cpu_s": round(cpu, 2), "exit": proc.returncode,
        "error": error, "states": states,
        "epochs_trained": sum(t["epochs"] or 0 for t in trials),
        "best": curve[-1][1] if curve else None, "curve": curve, "trials": trials, **extra,
    }  # fmt: skip


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def parse_trials(system: str, stdout: str, launched: float) -> tuple[list[dict], dict]:
    """Finished trials (``trial, state, value, epochs, t`` = seconds since launch; a tunecb
    trial also its ``start`` and ``worker`` when its line has its ``duration_s``), and what
    tunecb's start and summary events and Ray's start-up say.

    A resumed tunecb trial (a continuation of a paused one, or a rerun of a killed one)
    counts only the epochs it trained itself:

    >>> line = ('{"event": "trial", "trial": 7, "state": "COMPLETE", "value": 0.9, '
    ...         '"epochs_run": 10, "resumed_from_epoch": 3, "stop_reason": "completed", '
    ...         '"time": 105.0}')
    >>> parse_trials("tunecb[promotion]", line, 100.0)[0]
    [{'trial': 7, 'state': 'COMPLETE', 'value': 0.9, 'epochs': 7, 't': 5.0, 'stop_reason': 'completed'}]
    >>> parse_trials("tunecb", line.replace('"time"', '"duration_s": 2.5, "worker": "w1", '
    ...              '"time"'), 100.0)[0][0]["start"]
    2.5
    >>> parse_trials("ray", '{"event": "ray_ready", "import_s": 1.5, "init_s": 5.0, '
    ...              '"time": 107.0}', 100.0)[1]
    {'ray_startup': {'import_s': 1.5, 'init_s': 5.0, 'ready_s': 7.0}}
    """  # noqa: E501
    trials, extra = [], {}
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        rec = json.loads(line)
        kind = rec.get("event")
        since = round(rec["time"] - launched, 3) if "time" in rec else None
        if kind == "start":
            extra["tunecb_start"] = {k: rec.get(k) for k in ("mode", "workers", "notes")}
        elif kind == "summary":
            extra["tunecb_summary"] = {k: rec.get(k) for k in ("ran", "stopped_by", "best")}
        elif kind == "ray_ready":
            extra["ray_startup"] = {"import_s": rec["import_s"], "init_s": rec["init_s"],
                                    "ready_s": since}  # fmt: skip
        elif kind == "ray_shutdown":
            extra["ray_shutdown_s"] = rec["shutdown_s"]
        if kind not in (None, "trial"):
            continue
        trial = {"trial": rec["trial"], "state": rec["state"], "value": rec.get("value")}
        if system.startswith("tunecb"):
            run = rec.get("epochs_run") or 0
            trial |= {"epochs": run - (rec.get("resumed_from_epoch") or 0), "t": since,
                      "stop_reason": rec.get("stop_reason")}  # fmt: skip
            if since is not None and rec.get("duration_s") is not None:  # search_phases.py
                trial |= {"start": round(since - rec["duration_s"], 3), "worker": rec.get("worker")}
        else:
            trial |= {"epochs": rec.get("epochs"), "t": since}
        trials.append(trial)
    trials.sort(key=lambda r: r["t"])
    return trials, extra


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
    from tunecb.study.fields import DEFAULTS
    from tunecb.study.samplers_pruners import make_pruner, make_sampler

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


def _bench_versions() -> dict[str, str]:
    """Versions of the other systems' packages (those installed)."""
    from importlib import metadata

    found = {}
    for name in ("keras-tuner", "ray", "jax", "jaxlib"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


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


if __name__ == "__main__":
    raise SystemExit(main())
