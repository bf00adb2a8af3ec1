"""What tunecb's per-epoch work costs, against the callbacks a Keras user would run instead.

Run it from the repository root (the default run takes about five minutes on 2 cores)::

    python benchmarks/callbacks.py [--repeats R] [--epochs E] [--quick] [--json PATH]

Everything runs in this one process: the MLP of ``benchmarks/overhead_study.py`` on
scikit-learn's digits, ``--epochs`` epochs (30), batch 64, and before every fit
``keras.backend.clear_session(free_memory=False)``, ``keras.utils.set_random_seed(0)`` and
a freshly built model, so every variant trains the same model on the same data. Early
stopping has patience = epochs everywhere, so every fit runs all its epochs (checked).

Variants:

- ``keras``: ``model.fit`` with Keras' ``EarlyStopping(monitor="val_accuracy",
  restore_best_weights=True)`` and ``ModelCheckpoint(path, monitor="val_accuracy",
  save_best_only=True)`` only.
- ``tunecb``: a trial of a real Optuna study (created by tunecb's ``open_study`` on its
  journal file, in a temporary results folder; tunecb's default pruner, ``median``) run the
  way ``TrialRunner.run`` runs it: ``make_callbacks`` (NaN guard, best checkpoint with its
  atomic write, early stopping, history file, pruning reports), ``TrialBackup`` with
  ``backup_every`` 10 s (the default), an ``EpochNotice`` with a no-op hook, the backup
  look-up before ``fit``, and after it the backup removal and ``TrialRunner.record`` (user
  attributes to the storage, ``trial.json``).
- ``tunecb_backup0``: the same with ``backup_every=0`` (a backup after every epoch).
- ablations, the ``tunecb`` variant minus one part: ``no_storage`` (the trial's study is in
  memory: pruning reports and user attributes go to no file), ``no_history``,
  ``no_backup`` (no ``TrialBackup``, so no look-up or removal either), ``no_notice``,
  ``no_record`` (no ``TrialRunner.record``). Parts that cannot be taken out without
  editing tunecb are listed in the output (``SKIPPED``).

The timed region of a fit starts when its callbacks are made and ends after ``fit`` returns
(for tunecb: after the backup removal and the record); seeding, model building, ``ask`` and
``tell`` are outside it. The variants alternate in rounds (the order reverses every other
round), ``--repeats`` rounds after an untimed warm-up. It reports per variant the median
wall time, per epoch (wall / epochs), the spread (max - min) / median, tunecb / keras (the
ratio of the medians and the per-round paired ratios), and per part the median paired
difference to ``tunecb``, per epoch: what that part costs. The goal is tunecb / keras <=
1.03. Wall-time differences of a few ms per epoch drown in the noise of a busy machine, so
it also times, in every fit, the inside of each callback's epoch-level hooks (a wrapper on
the instance; batch hooks are untouched) and the timed work before and after ``fit``: the
median ms per epoch of each, for ``keras``, ``tunecb``, ``tunecb_backup0`` and
``no_storage``. It prints the tables and writes the numbers as JSON to
``benchmarks/out/callbacks.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as `tunecb search` does

import keras
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overhead_study
from common import machine, spread, write_result

from tunecb.oracle.opening import open_study
from tunecb.oracle.outcome import COMPLETE, FAIL, PRUNED, TrialOutcome
from tunecb.results import StudyDir
from tunecb.storage.urls import open_storage
from tunecb.study.data import Data
from tunecb.study.declaration import LoadedStudy
from tunecb.study.settings import Settings, resolve
from tunecb.training import backup as backups
from tunecb.training.callbacks import EpochNotice, make_callbacks
from tunecb.training.runner import TrialRunner

HERE = Path(__file__).resolve().parent
STUDY_FILE = HERE / "overhead_study.py"
DEFAULT_JSON = HERE / "out" / "callbacks.json"
MONITOR = "val_accuracy"
SEED = 0
GOAL = 1.03  # tunecb / keras
NOISY_SPREAD = 0.10  # (max - min) / median above this: say the numbers are noisy
PRUNER = "median"  # tunecb's default pruner: should_prune reads the study every epoch
HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
         "on_test_begin", "on_test_end")  # fmt: skip
BEFORE, AFTER = "before fit", "after fit"  # timed region outside fit: set-up, record
HOOK_COLUMNS = ("keras", "tunecb", "tunecb_backup0", "no_storage")


@dataclass(frozen=True)
class Variant:
    """One way to fit: Keras' callbacks, or tunecb's with some parts taken out."""

    name: str
    what: str
    keras_only: bool = False
    backup_every: float = 10.0
    journal: bool = True  # False: an in-memory storage
    history: bool = True
    backup: bool = True
    notice: bool = True
    record: bool = True


VARIANTS = (
    Variant("keras", "Keras EarlyStopping + ModelCheckpoint", keras_only=True),
    Variant("tunecb", "tunecb, full (backup_every 10 s)"),
    Variant("tunecb_backup0", "tunecb, full, backup_every 0", backup_every=0.0),
    Variant("no_storage", "tunecb minus the journal (in-memory study)", journal=False),
    Variant("no_history", "tunecb minus the history file", history=False),
    Variant("no_backup", "tunecb minus the backup", backup=False),
    Variant("no_notice", "tunecb minus the epoch notice", notice=False),
    Variant("no_record", "tunecb minus the record step", record=False),
)
SKIPPED = {
    "checkpoint not atomic": "BestCheckpoint always saves through results.atomic_write "
    "(temporary file, fsync, rename, fsync of the folder); there is no switch",
    "no NaN guard (EpochWatch)": "TrialCallbacks.stop_reason and TrialBackup read cbs.watch",
    "no pruning callback": "TrialCallbacks.stop_reason reads cbs.pruning; no_storage keeps "
    "the callback but reports to memory",
    "no best checkpoint": "TrialBackup and the outcome read cbs.checkpoint",
}
# Part -> (variant with more work, variant with less): the cost of the part is the
# difference, per epoch.
PARTS = {
    "journal (reports, should_prune, attrs)": ("tunecb", "no_storage"),
    "history file": ("tunecb", "no_history"),
    "backup (every 10 s)": ("tunecb", "no_backup"),
    "backup every epoch instead of every 10 s": ("tunecb_backup0", "tunecb"),
    "epoch notice": ("tunecb", "no_notice"),
    "record step": ("tunecb", "no_record"),
    "all of tunecb over Keras": ("tunecb", "keras"),
}


@dataclass
class Side:
    """A tunecb variant's study, results folder, settings and runner (for ``record``)."""

    settings: Settings
    study_dir: StudyDir
    study: optuna.Study
    runner: TrialRunner


@dataclass
class Fit:
    """One timed fit."""

    variant: str
    round: int
    wall_s: float
    epochs_run: int
    stop_reason: str
    val_accuracy: list[float]
    saves: int  # strict improvements of the monitored value: checkpoint writes
    spent_s: dict[str, float]  # inside each callback's hooks, and before / after fit


class Bench:
    def __init__(self, tmp: Path, epochs: int) -> None:
        self.tmp = tmp
        self.epochs = epochs
        source = STUDY_FILE.read_bytes()
        self.loaded = LoadedStudy(
            study=overhead_study.study, path=STUDY_FILE, sha256=hashlib.sha256(source).hexdigest()
        )
        (x_train, y_train), validation = overhead_study.load()
        self.data = Data(train=(x_train, y_train), validation=validation)
        self.sides: dict[str, Side] = {}

    def side(self, name: str, variant: Variant, epochs: int) -> Side:
        if name not in self.sides:
            settings = resolve(
                overhead_study.study.settings,
                {
                    "name": name, "epochs": epochs, "patience": epochs, "pruner": PRUNER,
                    "backup_every": variant.backup_every, "results": str(self.tmp / name),
                },
                default_name=name,
            )  # fmt: skip
            study_dir = StudyDir(self.tmp / name)
            study_dir.prepare()
            if variant.journal:
                storage = open_storage(None, study_dir.root)
            else:
                storage = optuna.storages.InMemoryStorage()
            study, _, _ = open_study(self.loaded, settings, study_dir, storage)
            # data is only read by TrialRunner.run, which this benchmark does not call
            runner = TrialRunner(self.loaded, settings, study_dir, data=None)  # type: ignore[arg-type]
            self.sides[name] = Side(settings, study_dir, study, runner)
        return self.sides[name]

    def fit(self, variant: Variant, round_: int, study_name: str | None = None,
            epochs: int | None = None) -> Fit:  # fmt: skip
        """One fit of ``variant`` from a fresh model; timed as the module docstring says."""
        epochs = epochs or self.epochs
        keras.backend.clear_session(free_memory=False)
        keras.utils.set_random_seed(SEED)
        model = overhead_study.build(None)
        spent: dict[str, float] = {}
        if variant.keras_only:
            wall, history, run, reason = self._keras(model, round_, epochs, spent)
        else:
            side = self.side(study_name or variant.name, variant, epochs)
            wall, history, run, reason = self._tunecb(model, variant, side, spent)
        values = [float(v) for v in history.history[MONITOR]]
        saves = sum(1 for i, v in enumerate(values) if i == 0 or v > max(values[:i]))
        spent = {k: round(v, 5) for k, v in spent.items()}
        return Fit(variant.name, round_, round(wall, 4), run, reason, values, saves, spent)

    def _keras(self, model: keras.Model, round_: int, epochs: int, spent: dict) -> tuple:
        folder = self.tmp / "keras" / str(round_)
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        early = keras.callbacks.EarlyStopping(
            monitor=MONITOR, patience=epochs, restore_best_weights=True
        )
        checkpoint = keras.callbacks.ModelCheckpoint(
            str(folder / "best.keras"), monitor=MONITOR, save_best_only=True
        )
        callbacks = timed_hooks([early, checkpoint], spent)
        spent[BEFORE] = time.perf_counter() - start
        history = model.fit(
            **self.data.fit_arguments(overhead_study.BATCH_SIZE),
            epochs=epochs,
            callbacks=callbacks,
            verbose=0,
        )
        wall = time.perf_counter() - start
        spent[AFTER] = 0.0
        run = len(history.history["loss"])
        reason = "early_stopped" if early.stopped_epoch else "completed"
        return wall, history, run, reason

    def _tunecb(self, model: keras.Model, variant: Variant, side: Side, spent: dict) -> tuple:
        """What TrialRunner.run does around fit, in its order, minus the removed parts."""
        s, study_dir = side.settings, side.study_dir
        trial = side.study.ask()
        number = trial.number
        folder = study_dir.reset_trial(number)
        start = time.perf_counter()
        backup_dir = study_dir.backup_dir(backups.origin(trial))
        cbs = make_callbacks(
            trial, s, s.lr_schedule, study_dir.checkpoint(number), study_dir.history(number), []
        )
        if not variant.history:
            cbs.history = None  # type: ignore[assignment]  # as_list() skips it
        resumed = 0
        if variant.backup:
            stamp = backups.fingerprint(trial.params, self.loaded.sha256, s.epochs)
            cbs.backup = backups.TrialBackup(backup_dir, stamp, number, cbs, s.backup_every)
        if variant.notice:
            hook = _no_op
            cbs.notice = EpochNotice(s.monitor, lambda epoch, value: hook(number, epoch, value))
        if variant.backup:
            resumed = backups.restore(
                model, cbs.backup, folder, study_dir.trial_dir, trial, s.monitor
            )
        callbacks = timed_hooks(cbs.as_list(), spent)
        fit_start = time.perf_counter()
        spent[BEFORE] = fit_start - start
        history = model.fit(
            **{**self.data.fit_arguments(s.batch_size), **s.fit_kwargs},
            epochs=s.epochs,
            initial_epoch=resumed,
            callbacks=callbacks,
            verbose=s.verbose,
        )
        fit_end = time.perf_counter()
        reason = cbs.stop_reason(s.epochs)
        state = {"nan": FAIL, "pruned": PRUNED}.get(reason, COMPLETE)
        if variant.backup:
            backups.discard(backup_dir)
        checkpoint = study_dir.checkpoint(number)
        outcome = TrialOutcome(
            number=number, state=state, value=cbs.checkpoint.best,
            best_epoch=cbs.checkpoint.best_epoch, epochs_run=cbs.watch.epochs_run,
            stop_reason=reason, error=None,
            checkpoint=study_dir.relative(checkpoint) if checkpoint.exists() else None,
            duration_s=round(time.perf_counter() - start, 3), n_params=int(model.count_params()),
            seed=SEED, lr_schedule=s.lr_schedule.name, resumed_from_epoch=resumed or None,
        )  # fmt: skip
        if variant.record:
            side.runner.record(trial, outcome, folder)
        wall = time.perf_counter() - start
        spent[AFTER] = wall - (fit_end - start)
        if state == PRUNED:
            side.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            side.study.tell(trial, cbs.checkpoint.best)
        return wall, history, cbs.watch.epochs_run, reason


def _no_op(number: int, epoch: int, value: float | None) -> None:
    """The search's live-progress hook, doing nothing."""


def timed_hooks(callbacks: list, spent: dict[str, float]) -> list:
    """``callbacks``, with the time inside each one's epoch-level hooks added to
    ``spent[class name]``. Batch hooks are left alone (Keras looks at them to decide how to
    dispatch); tunecb and the two Keras callbacks override none that runs per batch."""
    for cb in callbacks:
        name = type(cb).__name__
        for hook in HOOKS:
            if getattr(type(cb), hook) is getattr(keras.callbacks.Callback, hook):
                continue  # not overridden: nothing to time
            setattr(cb, hook, _timed(getattr(cb, hook), name, spent))
    return callbacks


def _timed(method: Any, name: str, spent: dict[str, float]) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - start

    return wrapper


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repeats", type=int, default=7, help="rounds of all variants (7)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs per fit (30)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, 10 epochs")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.epochs = 2, 10
    if min(args.repeats, args.epochs) < 1:
        parser.error("--repeats and --epochs must be >= 1")

    started = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="tunecb-callbacks-"))
    load_before = os.getloadavg()
    try:
        bench = Bench(tmp, args.epochs)
        print(f"warming up (untimed fits), temporary folder {tmp}", flush=True)
        for variant in (VARIANTS[0], VARIANTS[2]):  # Keras, and tunecb with every part
            bench.fit(variant, -1, study_name="warmup", epochs=min(3, args.epochs))
        fits: list[Fit] = []
        for round_ in range(args.repeats):
            order = VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                fit = bench.fit(variant, round_)
                fits.append(fit)
                print(
                    f"  round {round_ + 1}/{args.repeats}  {variant.name:<15} {fit.wall_s:6.2f} s"
                    f"  {fit.wall_s / args.epochs * 1000:6.1f} ms/epoch  epochs {fit.epochs_run}"
                    f"  saves {fit.saves}",
                    flush=True,
                )
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()

    check = same_work(fits, args.epochs)
    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(load_before, load_after),
        "settings": vars(args)
        | {"json": str(args.json), "batch_size": overhead_study.BATCH_SIZE}
        | {"seed": SEED, "pruner": PRUNER},
        **summarize(fits, args.epochs),
        "skipped": SKIPPED,
        "identical_work": check,
        "fits": [vars(f) for f in fits],
        "total_s": round(time.perf_counter() - started, 1),
    }
    write_result(result, args.json, table(result))
    if not check["all_fits_ran_all_epochs"]:
        raise SystemExit("INVALID: some fit did not run all its epochs (see the JSON)")
    return 0


def same_work(fits: list[Fit], epochs: int) -> dict[str, Any]:
    """Did every fit run all epochs, and train the same way (same curve, same saves)?"""
    curves = {tuple(round(v, 6) for v in f.val_accuracy) for f in fits}
    return {
        "all_fits_ran_all_epochs": all(
            f.epochs_run == epochs and f.stop_reason == "completed" for f in fits
        ),
        "same_val_accuracy_curve_every_fit": len(curves) == 1,
        "checkpoint_saves_per_fit": sorted({f.saves for f in fits}),
    }


def summarize(fits: list[Fit], epochs: int) -> dict[str, Any]:
    """Medians, spreads, ratios to Keras and per-part costs."""
    walls = {v.name: [f.wall_s for f in fits if f.variant == v.name] for v in VARIANTS}
    by_round = {(f.variant, f.round): f.wall_s for f in fits}
    rounds = sorted({f.round for f in fits})
    keras_med = statistics.median(walls["keras"])
    variants = {}
    for v in VARIANTS:
        med = statistics.median(walls[v.name])
        paired = [round(by_round[v.name, r] / by_round["keras", r], 4) for r in rounds]
        variants[v.name] = {
            "what": v.what,
            "median_s": round(med, 4),
            "per_epoch_ms": round(med / epochs * 1000, 3),
            "spread": round(spread(walls[v.name]), 4),
            "ratio_to_keras": round(med / keras_med, 4),
            "paired_ratios_to_keras": paired,
            "paired_ratio_median": round(statistics.median(paired), 4),
            "walls_s": walls[v.name],
        }
    keras_epoch_ms = keras_med / epochs * 1000
    parts = {}
    for part, (more, less) in PARTS.items():
        deltas = [(by_round[more, r] - by_round[less, r]) / epochs * 1000 for r in rounds]
        parts[part] = {
            "variants": f"{more} - {less}",
            "per_epoch_ms_median": round(statistics.median(deltas), 3),
            "per_epoch_ms_by_round": [round(d, 3) for d in deltas],
            "share_of_keras_epoch": round(statistics.median(deltas) / keras_epoch_ms, 4),
        }
    t = variants["tunecb"]
    hooks = hook_costs(fits, epochs)
    own = {n: hooks[n]["total"] for n in ("keras", "tunecb")}
    return {
        "variants": variants,
        "parts": parts,
        "hooks_ms_per_epoch": hooks,
        "callback_work_over_keras": {
            "per_epoch_ms": round(own["tunecb"] - own["keras"], 3),
            "share_of_keras_epoch": round((own["tunecb"] - own["keras"]) / keras_epoch_ms, 4),
        },
        "tunecb_over_keras": {
            "ratio_of_medians": t["ratio_to_keras"],
            "paired_ratios": t["paired_ratios_to_keras"],
            "paired_median": t["paired_ratio_median"],
            "goal": GOAL,
            "pass": t["ratio_to_keras"] <= GOAL,
        },
    }


def hook_costs(fits: list[Fit], epochs: int) -> dict[str, dict[str, float]]:
    """Per variant: median ms per epoch inside each callback's hooks, before and after fit,
    their total, and the rest of the wall time (training and Keras itself)."""
    out = {}
    for v in VARIANTS:
        mine = [f for f in fits if f.variant == v.name]
        names = list(dict.fromkeys(k for f in mine for k in f.spent_s))
        names = [BEFORE, *(n for n in names if n not in (BEFORE, AFTER)), AFTER]
        row = {
            n: round(statistics.median(f.spent_s.get(n, 0.0) for f in mine) / epochs * 1000, 3)
            for n in names
        }
        total = [sum(f.spent_s.values()) for f in mine]
        row["total"] = round(statistics.median(total) / epochs * 1000, 3)
        rest = [f.wall_s - t for f, t in zip(mine, total, strict=True)]
        row["rest of the wall time"] = round(statistics.median(rest) / epochs * 1000, 3)
        out[v.name] = row
    return out


def table(result: dict[str, Any]) -> str:
    """The results as markdown tables, with the verdict and a line on noise."""
    epochs = result["settings"]["epochs"]
    rows = [("variant", "what", "median s", "ms/epoch", "spread", "/ keras", "paired median")]
    for name, v in result["variants"].items():
        rows.append((
            name, v["what"], f"{v['median_s']:.3f}", f"{v['per_epoch_ms']:.1f}",
            f"{v['spread']:.1%}", f"{v['ratio_to_keras']:.3f}", f"{v['paired_ratio_median']:.3f}",
        ))  # fmt: skip
    lines = _markdown(rows)
    rows = [("part", "variants", "ms/epoch (median of paired)", "of a Keras epoch", "by round")]
    for part, p in result["parts"].items():
        rows.append((
            part, p["variants"], f"{p['per_epoch_ms_median']:+.2f}",
            f"{p['share_of_keras_epoch']:+.1%}",
            "[" + ", ".join(f"{d:+.1f}" for d in p["per_epoch_ms_by_round"]) + "]",
        ))  # fmt: skip
    lines += ["", *_markdown(rows)]
    hooks = result["hooks_ms_per_epoch"]
    last = (AFTER, "total", "rest of the wall time")
    names = [n for n in dict.fromkeys(n for c in HOOK_COLUMNS for n in hooks[c]) if n not in last]
    rows = [("ms/epoch inside (median)", *HOOK_COLUMNS)]
    for n in [*names, *last]:
        rows.append((n, *(f"{hooks[c][n]:.2f}" if n in hooks[c] else "" for c in HOOK_COLUMNS)))
    lines += ["", *_markdown(rows)]

    r = result["tunecb_over_keras"]
    check = result["identical_work"]
    noisy = [n for n, v in result["variants"].items() if v["spread"] > NOISY_SPREAD]
    m = result["machine"]
    verdict = "PASS" if r["pass"] else "MISS"
    if not check["all_fits_ran_all_epochs"]:
        verdict += " (INVALID: not every fit ran all its epochs)"
    lines += [
        "",
        f"tunecb / keras ({epochs} epochs): {r['ratio_of_medians']:.3f} (ratio of medians), "
        f"paired by round {_list(r['paired_ratios'])}, median {r['paired_median']:.3f}; "
        f"goal <= {r['goal']}: {verdict}",
        "callback work (hooks + before/after fit), tunecb - keras: "
        f"{result['callback_work_over_keras']['per_epoch_ms']:+.2f} ms/epoch, "
        f"{result['callback_work_over_keras']['share_of_keras_epoch']:+.1%} of a Keras epoch",
        f"identical work: every fit ran all {epochs} epochs: {check['all_fits_ran_all_epochs']}; "
        f"same val_accuracy curve in every fit: {check['same_val_accuracy_curve_every_fit']}; "
        f"checkpoint saves per fit: {check['checkpoint_saves_per_fit']}",
        "not measured (cannot be taken out without editing tunecb): "
        + "; ".join(f"{k}: {v}" for k, v in result["skipped"].items()),
        "spread (max - min) / median above "
        f"{NOISY_SPREAD:.0%}: {', '.join(noisy) if noisy else 'none'}"
        + ("  -> NOISY" if noisy else ""),
        f"{m['cpus']} CPUs; load average before {m['loadavg_1_5_15_before']}, "
        f"after {m['loadavg_1_5_15_after']}",
    ]
    return "\n".join(lines)


def _markdown(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in rows]  # fmt: skip
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return lines


def _list(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"


if __name__ == "__main__":
    raise SystemExit(main())
