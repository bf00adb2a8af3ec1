"""The KerasTuner side of ``benchmarks/search.py``: ``keras_tuner.Hyperband`` on a task of
:mod:`search_tasks`, as its documentation shows.

    python benchmarks/search_kerastuner.py --task digits --seed 0 --epochs 30 --patience 5

``Hyperband(objective=Objective(monitor, direction), max_epochs=epochs, factor=3,
hyperband_iterations=1, seed=seed)`` in a temporary folder (``overwrite=True``), the model of
:mod:`search_tasks` from :func:`search_tasks.kt_params`, ``keras.utils.set_random_seed(seed)``
once at the start, and ``search(..., batch_size, callbacks=[EarlyStopping(monitor, patience,
restore_best_weights=True)], verbose=0)``. Hyperband decides how many trials it runs (one
iteration over all its brackets; a promoted configuration continues from the weights of its
previous rung as a new trial): there is no trial budget to pass. KerasTuner saves the best
epoch's weights of every trial itself.

KerasTuner has no PRUNED state: a trial that trained its rung's epochs ends COMPLETED with
its best epoch's value (what ``get_best_models`` would give back), INVALID or FAILED when it
crashed or its value is NaN. It prints one JSON line per finished trial: ``trial``, ``state``
(COMPLETE for KerasTuner's COMPLETED, else KerasTuner's status), ``value``, ``epochs``
trained in this trial, ``rung_epochs`` (Hyperband's ``tuner/epochs``), ``t`` (seconds since
this process started) and ``time`` (Unix seconds).
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_tuner  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_tasks import TASKS, build, kt_params  # noqa: E402


class Tuner(keras_tuner.Hyperband):
    """Hyperband that prints each finished trial (nothing else changed)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.epochs_run: dict[str, int] = {}

    def run_trial(self, trial, *args, **kwargs):
        histories = super().run_trial(trial, *args, **kwargs)
        self.epochs_run[trial.trial_id] = sum(len(h.history.get("loss", [])) for h in histories)
        return histories

    def on_trial_end(self, trial) -> None:
        super().on_trial_end(trial)
        ended = self.oracle.get_trial(trial.trial_id)
        status = str(ended.status)
        line = {
            "trial": int(ended.trial_id),
            "state": "COMPLETE" if status == "COMPLETED" else status,
            "value": float(ended.score) if ended.score is not None else None,
            "epochs": self.epochs_run.get(trial.trial_id, 0),
            "rung_epochs": ended.hyperparameters.values.get("tuner/epochs"),
            "t": round(time.perf_counter() - STARTED, 3),
            "time": round(time.time(), 3),
        }
        print(json.dumps(line), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    task = TASKS[args.task]
    mode = "max" if task.maximize else "min"

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_val, y_val) = task.load()
    workdir = Path(tempfile.mkdtemp(prefix="tunecb-search-kt-"))
    try:
        tuner = Tuner(
            lambda hp: build(task, **kt_params(hp, task)),
            objective=keras_tuner.Objective(task.monitor, direction=mode),
            max_epochs=args.epochs,
            factor=3,
            hyperband_iterations=1,
            seed=args.seed,
            directory=str(workdir),
            project_name=task.name,
            overwrite=True,
        )
        tuner.search(
            x_train,
            y_train,
            validation_data=(x_val, y_val),
            batch_size=args.batch_size,
            callbacks=[
                keras.callbacks.EarlyStopping(
                    task.monitor, patience=args.patience, mode=mode, restore_best_weights=True
                )
            ],
            verbose=0,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
