"""Where a trial's time goes: the phases of every trial of a real search, wall and CPU seconds,
for tunecb (in-process ``--jobs 0`` and ``--jobs 2``) and the hand loop of ``search_loop.py``.

    python benchmarks/trial_costs.py                        # digits, 10 trials x 30 epochs
    python benchmarks/trial_costs.py --repeats 2 --base /tmp/tunecb-before   # before/after
    python benchmarks/trial_costs.py --trials 8 --epochs 20 --patience 0 --jobs 0 --spe1 \
        --objectives val_accuracy:max,params:min --pruner none      # multiobjective.py's trials

Each run is a fresh process (workers included) of the digits task of :mod:`search_tasks` with
the budget of ``search.py``'s study (patience 5, batch 64, seed 0). Nothing in the package is
changed for it: a ``sitecustomize`` on the child's ``PYTHONPATH`` (every process, spawned
workers too) wraps, when ``TRIAL_COSTS_OUT`` is set, the functions that make up a trial and
times them with ``time.perf_counter`` (wall) and ``time.process_time`` (CPU of the process,
TensorFlow's threads included):

- **ask** / **tell**: ``optuna.Study.ask`` and ``tell`` (the loop's tell is inside optuna's
  ``_run_trial``: its "rest of trial"), and **storage writes** (every write method of Optuna's
  journal and in-memory storages; they happen inside other phases: shown as "of which");
- **prepare** (trial folder, data check, ``clear_session``, seeding), **build** (the user's
  builder, **compile** inside it, shown apart), **model properties** (multi-objective only),
  **resume** (a backup put back);
- **space check**, **data checks**, **constraints**, **callbacks set-up**, **fast-fit set-up**
  (``fast_fit.apply``: the optimizer and metrics built before the first trace), **backup
  discard**; "of which" rows inside other phases: ``clear_session``, **best.keras writes**,
  **backup saves** and TensorFlow's **tracing** (``tf.function`` graphs built: Keras' train
  and test functions, the data adapters' tf.data functions);
- inside ``fit``: **fit set-up** (to the first epoch: data adapter, callbacks' train begin),
  **epoch 1** (tracing the train and test functions) and **epochs 2+** (training and
  validation, between the callbacks), **epoch-end logs** (Keras making the logs Python floats),
  **callbacks** (one row per callback class: epoch begin and end), **fit end** (train end:
  the lazy best checkpoint written, early stopping's restore);
- after ``fit``: **conclude** (results read, objectives), **record** (user attributes and
  ``trial.json``), and the **rest of trial** (the runner's or the loop's own work between these);
- per process: **start-up** (interpreter, imports, data, until the first trial) and **after
  the last trial**.

Runs rotate their order across repeats. It prints a table of per-trial medians (over runs)
of each phase's mean per trial, and writes every run's raw phases to
``benchmarks/out/trial_costs.json``. ``--base DIR`` adds the package at ``DIR`` (e.g. an older
commit: ``git archive <commit> tunecb | tar -x -C DIR``) as the system ``tunecb@base``;
``--spe1`` adds tunecb with ``--steps-per-execution 1``; ``--objectives``, ``--pruner`` and
``--patience 0`` make the study that of ``multiobjective.py``.
"""

from __future__ import annotations

import atexit
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
STARTED = time.perf_counter()
_CPU0 = time.process_time()
_events: list[dict[str, Any]] = []
_out: list[Path | None] = [None]


# --- the hooks (imported by the child's sitecustomize) -------------------------------------


def _record(phase: str, wall: float, cpu: float) -> None:
    _events.append({"phase": phase, "wall": wall, "cpu": cpu})


def _flush() -> None:
    if _out[0] is None or not _events:
        return
    with open(_out[0], "a", encoding="utf-8") as handle:
        for event in _events:
            handle.write(json.dumps({"pid": os.getpid(), **event}) + "\n")
    _events.clear()


_active: dict[str, int] = defaultdict(int)  # phases running now (a nested one counts once)
_seen_trial = [False]
_last: list[tuple[float, float] | None] = [None]


def _timed(function: Any, phase: str, scope: bool = False) -> Any:
    """``function`` timed as ``phase``; ``scope``: a whole trial."""
    if getattr(function, "_trial_costs", False):
        return function

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _active[phase]:
            return function(*args, **kwargs)
        if scope and not _seen_trial[0]:
            _record("start-up", time.perf_counter() - STARTED, time.process_time() - _CPU0)
            _seen_trial[0] = True
        _active[phase] += 1
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            _active[phase] -= 1
            _record(phase, time.perf_counter() - wall, time.process_time() - cpu)
            if scope:
                _last[0] = (time.perf_counter(), time.process_time())
                _flush()

    wrapper._trial_costs = True  # type: ignore[attr-defined]
    return wrapper


def _patch(owner: Any, name: str, phase: str, scope: bool = False) -> None:
    if hasattr(owner, name):
        setattr(owner, name, _timed(getattr(owner, name), phase, scope))


class _FitClock:
    """Times a fit's phases from Keras' CallbackList (fit, epoch and train boundaries)."""

    def __init__(self) -> None:
        self.mark: tuple[float, float] | None = None
        self.epoch = 0

    def since(self, phase: str) -> None:
        if self.mark is not None:
            _record(phase, time.perf_counter() - self.mark[0], time.process_time() - self.mark[1])
        self.mark = (time.perf_counter(), time.process_time())


_clock = _FitClock()


def _patch_keras() -> None:
    import keras
    from keras.src.callbacks.callback_list import CallbackList
    from keras.src.trainers import trainer

    fit = keras.Model.fit

    def timed_fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        _clock.mark, _clock.epoch = (time.perf_counter(), time.process_time()), 0
        try:
            return fit(self, *args, **kwargs)
        finally:
            _clock.since("fit end")
            _clock.mark = None

    keras.Model.fit = timed_fit
    _patch(trainer.Trainer, "compile", "compile")
    begin, epoch_begin, epoch_end = (CallbackList.on_train_begin, CallbackList.on_epoch_begin,
                                     CallbackList.on_epoch_end)  # fmt: skip

    def on_train_begin(self: Any, logs: Any = None) -> None:
        for cb in self.callbacks:  # each callback's hooks, timed by its class
            name = f"callback {type(cb).__name__}"
            for hook in ("on_epoch_begin", "on_epoch_end"):
                setattr(cb, hook, _timed(getattr(cb, hook), name))
        _clock.since("fit set-up")
        begin(self, logs)

    def on_epoch_begin(self: Any, epoch: int, logs: Any = None) -> None:
        _clock.since("fit set-up" if _clock.epoch == 0 else "between epochs")
        _clock.epoch += 1
        epoch_begin(self, epoch, logs)
        _clock.mark = (time.perf_counter(), time.process_time())

    def on_epoch_end(self: Any, epoch: int, logs: Any = None) -> None:
        _clock.since("epoch 1 (tracing)" if _clock.epoch == 1 else "epochs 2+")
        from keras.src.utils import python_utils

        wall, cpu = time.perf_counter(), time.process_time()
        logs = python_utils.pythonify_logs(logs)
        _record("epoch-end logs", time.perf_counter() - wall, time.process_time() - cpu)
        epoch_end(self, epoch, logs)
        _clock.mark = (time.perf_counter(), time.process_time())

    CallbackList.on_train_begin = on_train_begin
    CallbackList.on_epoch_begin = on_epoch_begin
    CallbackList.on_epoch_end = on_epoch_end
    if keras.backend.backend() == "tensorflow":
        _patch_tracing()


def _patch_tracing() -> None:
    """Time TensorFlow's tracing (a ``tf.function``'s Python run into a graph) by function:
    Keras' train and test loops (``multi_step_on_iterator``, the one batch step inside it
    counted with it) and tf.data's (the data adapters')."""
    try:
        from tensorflow.python.eager.polymorphic_function import tracing_compilation as tc
    except ImportError:  # another TensorFlow layout: no tracing rows
        return
    create = tc._create_concrete_function
    tracing = [0]

    def timed(function_type: Any, type_context: Any, func_graph: Any, options: Any) -> Any:
        name = str(getattr(options, "name", ""))
        if tracing[0]:  # nested: counted with the outer function
            return create(function_type, type_context, func_graph, options)
        tracing[0] += 1
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return create(function_type, type_context, func_graph, options)
        finally:
            tracing[0] -= 1
            phase = "data pipelines" if name.startswith("Dataset") else "train/test functions"
            _record(f"of which: tracing {phase}", time.perf_counter() - wall,
                    time.process_time() - cpu)  # fmt: skip

    tc._create_concrete_function = timed


_WRITES = (
    "create_new_trial", "set_trial_param", "set_trial_state_values",
    "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
    "set_study_user_attr", "set_study_system_attr",
)  # fmt: skip


def _patch_optuna() -> None:
    import optuna
    from optuna.study import _optimize

    _patch(optuna.Study, "ask", "ask")
    _patch(optuna.Study, "tell", "tell")
    _patch(_optimize, "_run_trial", "trial", scope=True)
    for kind in (optuna.storages.JournalStorage, optuna.storages.InMemoryStorage):
        for name in _WRITES:
            if name in vars(kind):
                setattr(kind, name, _timed(vars(kind)[name], "of which: storage writes"))


def _patch_tunecb() -> None:
    from tunecb.training import backup, building, fast_fit, objectives, runner, trial_env

    runner_class = runner.TrialRunner
    _patch(runner_class, "run", "trial", scope=True)
    for name, phase in (("_prepare", "prepare"), ("_build", "build"), ("_resume", "resume"),
                        ("_note_space", "space check"), ("_feasible", "constraints"),
                        ("_callbacks", "callbacks set-up"), ("_conclude", "conclude"),
                        ("record", "record"), ("_write_session", "record")):  # fmt: skip
        _patch(runner_class, name, phase)
    _patch(objectives, "measure", "model properties")
    _patch(fast_fit, "apply", "fast-fit set-up")
    _patch(building, "check_labels", "data checks")
    _patch(runner, "check_input_shape", "data checks")
    _patch(runner.backups, "discard", "backup discard")
    _patch(trial_env, "clear_session", "of which: clear_session")
    if hasattr(backup.TrialBackup, "save"):
        _patch(backup.TrialBackup, "save", "of which: backup saves")
    from tunecb.training import best_checkpoint

    _patch(best_checkpoint.BestCheckpoint, "_write", "of which: best.keras writes")


def _patch_tasks() -> None:
    import search_tasks

    _patch(search_tasks, "build", "build")


def install() -> None:
    """Wrap what a trial calls (in this process), when ``TRIAL_COSTS_OUT`` names a file."""
    out = os.environ.get("TRIAL_COSTS_OUT")
    if not out:
        return
    _out[0] = Path(out)
    import importlib.abc
    import importlib.util

    patches = {"optuna": _patch_optuna, "keras": _patch_keras,
               "tunecb.training.runner": _patch_tunecb, "search_tasks": _patch_tasks}  # fmt: skip

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
            if name not in patches:
                return None
            sys.meta_path.remove(self)
            try:
                spec = importlib.util.find_spec(name)
            finally:
                sys.meta_path.insert(0, self)
            if spec is None or spec.loader is None:
                return spec
            execute = spec.loader.exec_module

            def exec_module(module: Any) -> None:
                execute(module)
                patches.pop(name)()

            spec.loader.exec_module = exec_module  # type: ignore[method-assign]
            return spec

    sys.meta_path.insert(0, Finder())

    def at_exit() -> None:
        if _last[0] is not None:
            wall, cpu = _last[0]
            _record("after the last trial", time.perf_counter() - wall, time.process_time() - cpu)
        _flush()

    atexit.register(at_exit)


# --- the driver ----------------------------------------------------------------------------

STUDY = """import sys
sys.path.insert(0, {bench!r})
import tunecb
from search_tasks import TASKS, build, suggest
task = TASKS["digits"]
study = tunecb.Study(name="digits", monitor="val_accuracy", epochs={epochs}, batch_size=64,
                     n_trials={trials}, seed={seed}, patience={patience}{extra})


@study.data
def load():
    return task.load()


@study.model
def model(trial):
    return build(task, **suggest(trial))
"""

ORDER = (
    "start-up", "ask", "prepare", "build", "compile", "space check", "data checks",
    "constraints", "callbacks set-up", "model properties", "resume", "fast-fit set-up",
    "fit set-up", "epoch 1 (tracing)", "epochs 2+", "between epochs", "epoch-end logs",
    "callbacks", "fit end", "backup discard", "conclude", "record", "tell", "rest of trial",
    "trial total", "of which: storage writes", "of which: clear_session",
    "of which: best.keras writes", "of which: backup saves",
    "of which: tracing train/test functions", "of which: tracing data pipelines",
    "after the last trial",
)  # fmt: skip
CALLBACKS_AT = ORDER.index("callbacks") + 1  # the table lists each callback after this row


SPE1 = " spe1"  # the system's name ends so: --steps-per-execution 1


def run_one(system: str, jobs: int, tree: Path, args: Any, work: Path) -> dict[str, Any]:
    """One search in fresh processes; its phases summed over its processes."""
    import resource
    import subprocess

    hooks = work / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    (hooks / "sitecustomize.py").write_text(
        f"import sys\nsys.path.insert(0, {str(BENCH)!r})\nimport trial_costs\n"
        "trial_costs.install()\n"
    )
    out = work / "events.jsonl"
    env = {**os.environ, "TRIAL_COSTS_OUT": str(out), "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([str(hooks), str(tree), str(BENCH)])}  # fmt: skip
    if system == "loop":
        command = [sys.executable, str(BENCH / "search_loop.py"), "--task", "digits", "--seed",
                   str(args.seed), "--trials", str(args.trials), "--epochs", str(args.epochs),
                   "--patience", str(args.patience or args.epochs)]  # fmt: skip
        if args.objectives or args.pruner == "none":  # no single-objective pruning to mirror
            command.append("--no-pruning")
    else:
        study = work / "digits.py"
        objectives = dict(p.split(":") for p in (args.objectives or "").split(",") if p)
        extra = f", objectives={objectives!r}" if objectives else ""
        extra += f", pruner={args.pruner!r}" if args.pruner else ""
        study.write_text(STUDY.format(bench=str(BENCH), epochs=args.epochs, trials=args.trials,
                                      seed=args.seed, patience=args.patience or None,
                                      extra=extra))  # fmt: skip
        command = [sys.executable, "-m", "tunecb", "search", str(study), "--results",
                   str(work / "results"), "--jobs", str(jobs), "--quiet"]  # fmt: skip
        if system.endswith(SPE1):  # Keras' one batch per call: the tracing it saves
            command += ["--steps-per-execution", "1"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{system} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    events = [json.loads(line) for line in out.read_text().splitlines()]
    return {"system": system, "jobs": jobs, "wall": wall, "cpu": cpu, "command": command,
            **summarize(events, system == "loop")}  # fmt: skip


def summarize(events: list[dict[str, Any]], loop: bool) -> dict[str, Any]:
    """Per phase: total wall and CPU seconds; the trials and epochs; the rest of each trial."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for event in events:
        phase = event["phase"]
        if phase.startswith("callback "):
            totals["callbacks"][0] += event["wall"]
            totals["callbacks"][1] += event["cpu"]
        totals[phase][0] += event["wall"]
        totals[phase][1] += event["cpu"]
    trials = sum(1 for e in events if e["phase"] == "trial")
    epochs = sum(1 for e in events if e["phase"] in ("epoch 1 (tracing)", "epochs 2+"))
    # A trial's own work outside the phases measured. tunecb asks and tells outside its
    # runner's run(), the loop inside optuna's _run_trial (its tell is not Study.tell).
    outside = ("start-up", "compile", "rest of trial", "after the last trial", "tell")
    inner = [p for p in ORDER if p not in outside and not p.startswith("of which")]
    if not loop:
        inner.remove("ask")
    if "trial" in totals:
        rest = list(totals["trial"])
        for phase in inner:
            if phase in totals:
                rest = [rest[0] - totals[phase][0], rest[1] - totals[phase][1]]
        totals["rest of trial"] = rest
        whole = list(totals["trial"])
        for phase in () if loop else ("ask", "tell"):
            if phase in totals:
                whole = [whole[0] + totals[phase][0], whole[1] + totals[phase][1]]
        totals["trial total"] = whole
    return {
        "trials": trials,
        "epochs": epochs,
        "phases": {k: [round(v[0], 4), round(v[1], 4)] for k, v in totals.items()},
    }


def table(runs: list[dict[str, Any]]) -> str:
    """Markdown: per system, the median over runs of each phase's seconds per trial (wall and
    CPU, in ms), and per run the totals."""
    systems = sorted({label(r) for r in runs}, key=lambda name: (name.startswith("loop"), name))
    callbacks = sorted({p for r in runs for p in r["phases"] if p.startswith("callback ")})
    rows = [*ORDER[:CALLBACKS_AT], *[f"  {c}" for c in callbacks], *ORDER[CALLBACKS_AT:]]
    head = "| phase (ms per trial: wall / CPU) | " + " | ".join(systems) + " |"
    lines = [head, "|---" * (len(systems) + 1) + "|"]
    for row in rows:
        phase = row.strip()
        cells = []
        for system in systems:
            mine = [r for r in runs if label(r) == system]
            walls = [r["phases"].get(phase, [0, 0])[0] / max(r["trials"], 1) for r in mine]
            cpus = [r["phases"].get(phase, [0, 0])[1] / max(r["trials"], 1) for r in mine]
            cells.append(f"{1000 * statistics.median(walls):.0f} / "
                         f"{1000 * statistics.median(cpus):.0f}")  # fmt: skip
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    for key, name in (("trials", "trials"), ("epochs", "epochs trained"), ("wall", "run wall s"),
                      ("cpu", "run CPU s")):  # fmt: skip
        cells = []
        for system in systems:
            values = [r[key] for r in runs if label(r) == system]
            cells.append(f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def label(run: dict[str, Any]) -> str:
    return "loop" if run["system"] == "loop" else f"{run['system']} --jobs {run['jobs']}"


def main(argv: list[str] | None = None) -> int:
    import argparse
    import platform
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--patience", type=int, default=5, help="0: no early stopping")
    parser.add_argument("--objectives", help="e.g. val_accuracy:max,params:min (multi-objective)")
    parser.add_argument("--pruner", help="tunecb's --pruner (default: the study's default)")
    parser.add_argument("--jobs", default="0,2", help="tunecb's --jobs values, comma-separated")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--base", type=Path, help="a folder holding another tunecb package")
    parser.add_argument("--no-loop", action="store_true")
    parser.add_argument(
        "--spe1",
        action="store_true",
        help="add tunecb with --steps-per-execution 1 (what 16 costs to trace)",
    )
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "trial_costs.json")
    args = parser.parse_args(argv)
    systems = [("tunecb", int(j), ROOT) for j in args.jobs.split(",")]
    if args.base is not None:
        systems += [("tunecb@base", int(j), args.base.resolve()) for j in args.jobs.split(",")]
    if args.spe1:
        systems += [("tunecb" + SPE1, int(j), ROOT) for j in args.jobs.split(",")]
    if not args.no_loop:
        systems.append(("loop", 1, ROOT))
    load_before = os.getloadavg()
    runs = []
    for repeat in range(args.repeats):
        shift = repeat % len(systems)
        for system, jobs, tree in systems[shift:] + systems[:shift]:  # the order rotates
            with tempfile.TemporaryDirectory(prefix="trial-costs-") as work:
                run = run_one(system, jobs, tree, args, Path(work))
            run["repeat"] = repeat
            runs.append(run)
            print(
                f"{label(run)} (repeat {repeat}): {run['trials']} trials, {run['epochs']} "
                f"epochs, {run['wall']:.1f} s wall, {run['cpu']:.1f} s CPU",
                flush=True,
            )
    text = table(runs)
    print(text)
    load_after = os.getloadavg()
    print(f"load average before {load_before}, after {load_after}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "task": "digits", "trials": args.trials, "epochs": args.epochs, "seed": args.seed,
        "patience": args.patience, "objectives": args.objectives, "pruner": args.pruner,
        "repeats": args.repeats, "load_before": load_before, "load_after": load_after,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "runs": runs, "table": text,
    }, indent=1) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
