"""The "hand loop" side of ``benchmarks/search.py``: an Optuna search of Keras fits written the
way a Keras user writes one, without tunecb.

    python benchmarks/search_loop.py --task digits --seed 0 --trials 20 --epochs 30 --patience 5

In-memory storage, ``TPESampler(seed=seed)``, ``HyperbandPruner(min_resource=1,
max_resource=epochs, reduction_factor=3)``; ``keras.utils.set_random_seed(seed)`` once at the
start and ``keras.backend.clear_session()`` at the top of every trial. Each trial builds the
model of :mod:`search_tasks` from :func:`search_tasks.suggest` and fits it with
``EarlyStopping(monitor, patience, restore_best_weights=True)``, ``ModelCheckpoint`` (best
only, a ``.keras`` file per trial in a temporary folder) and a pruning callback that, as
optuna-integration's ``KerasPruningCallback`` does, calls ``trial.report(value, epoch)`` with
Keras' 0-based epoch and raises ``optuna.TrialPruned`` from ``on_epoch_end`` (Keras then ends
``fit`` at once, skipping the callbacks' ``on_train_end``; the checkpoint of the best epoch so
far is already on disk). The objective is the best monitored value over the epochs.

It prints one JSON line per finished trial: ``trial``, ``state`` (COMPLETE, PRUNED, FAIL),
``value`` (the objective; for a PRUNED trial the best value it reached, for information),
``epochs`` trained, ``t`` (seconds since this process started) and ``time`` (Unix seconds).
For ``search.py --time-trial``: ``--params JSON`` gives every trial these fixed parameters and
``--no-pruning`` uses Optuna's ``NopPruner``.

``--tunecb-draws`` (``search.py --paired``) draws as tunecb does, for a paired comparison
(common random numbers; :mod:`paired_draws`): the sampler's random states reseeded per trial
number from the seed and each trial's Keras seed tunecb's. TPE's first 10 trials are random in both
systems; with this, both try the same 10 configurations for a seed and train them alike, so
a difference in the best model is the search's (pruner, TPE's phase, workers), not which
random configurations a seed's stream happened to draw.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import optuna  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired_draws import TunecbDrawsTPE, keras_seed  # noqa: E402
from search_tasks import TASKS, build, suggest  # noqa: E402


class PruningCallback(keras.callbacks.Callback):
    """Report the monitored value every epoch; raise ``TrialPruned`` when Optuna says so."""

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        super().__init__()
        self.trial, self.monitor = trial, monitor
        self.epochs = 0
        self.values: list[float] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = float((logs or {})[self.monitor])
        self.epochs = epoch + 1
        self.values.append(value)
        self.trial.report(value, step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"trial {self.trial.number} pruned at epoch {epoch}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--params", type=json.loads, help="fixed parameters of every trial")
    parser.add_argument("--no-pruning", action="store_true", help="NopPruner (for timing)")
    parser.add_argument(
        "--tunecb-draws", action="store_true", help="draw per trial as tunecb does (paired)"
    )
    args = parser.parse_args(argv)
    task = TASKS[args.task]
    mode = "max" if task.maximize else "min"
    best = max if task.maximize else min

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_val, y_val) = task.load()
    workdir = Path(tempfile.mkdtemp(prefix="tunecb-search-loop-"))
    study = optuna.create_study(
        direction=task.direction,
        sampler=TunecbDrawsTPE(args.seed)
        if args.tunecb_draws
        else optuna.samplers.TPESampler(seed=args.seed),
        pruner=optuna.pruners.NopPruner()
        if args.no_pruning
        else optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=args.epochs, reduction_factor=3
        ),
    )
    for _ in range(args.trials if args.params else 0):
        study.enqueue_trial(args.params, skip_if_exists=False)
    pruners: dict[int, PruningCallback] = {}

    def objective(trial: optuna.Trial) -> float:
        keras.backend.clear_session()
        if args.tunecb_draws:
            keras.utils.set_random_seed(keras_seed(args.seed, trial.number))
        model = build(task, **suggest(trial, task))
        pruning = pruners[trial.number] = PruningCallback(trial, task.monitor)
        history = model.fit(
            x_train,
            y_train,
            batch_size=args.batch_size,
            epochs=args.epochs,
            validation_data=(x_val, y_val),
            verbose=0,
            callbacks=[
                keras.callbacks.EarlyStopping(
                    task.monitor, patience=args.patience, mode=mode, restore_best_weights=True
                ),
                keras.callbacks.ModelCheckpoint(
                    str(workdir / f"trial_{trial.number}.keras"),
                    monitor=task.monitor,
                    mode=mode,
                    save_best_only=True,
                ),
                pruning,
            ],
        )
        return best(history.history[task.monitor])

    def finished(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        pruning = pruners.pop(trial.number, None)
        seen = [v for v in (pruning.values if pruning else []) if math.isfinite(v)]
        value = trial.value if trial.state.name == "COMPLETE" else (best(seen) if seen else None)
        line = {
            "trial": trial.number,
            "state": trial.state.name,
            "value": value,
            "epochs": pruning.epochs if pruning else 0,
            "t": round(time.perf_counter() - STARTED, 3),
            "time": round(time.time(), 3),
        }
        print(json.dumps(line), flush=True)

    study.optimize(objective, n_trials=args.trials, callbacks=[finished], catch=(Exception,))
    for path in workdir.glob("*.keras"):
        path.unlink()
    workdir.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
