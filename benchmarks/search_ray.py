"""The Ray Tune side of ``benchmarks/search.py``: ASHA with Ray's Optuna searcher on a task of
:mod:`search_tasks`, written as a Keras user of Ray Tune writes it.

    python benchmarks/search_ray.py --task digits --seed 0 --trials 20 --epochs 20 --patience 5

``ray.init(num_cpus=cores)``; ``Tuner(with_resources(with_parameters(train, data=...), {"cpu":
1}), TuneConfig(metric="best", mode, search_alg=OptunaSearch(suggest, sampler=TPESampler(
seed)), scheduler=ASHAScheduler(time_attr="epoch", max_t=epochs, grace_period=first_rung,
reduction_factor=3), num_samples=trials, max_concurrent_trials=cores, reuse_actors=True),
RunConfig(storage_path=TMP, checkpoint_config=CheckpointConfig(num_to_keep=1,
checkpoint_score_attribute="best")))``. The space is :func:`search_tasks.suggest`, the same
Optuna calls as the other systems (a define-by-run space). ``reuse_actors=True`` is Ray's
advice for short trials (its default, False, starts a new process with TensorFlow's import
per trial); it favours Ray here.

Each trial (a Ray actor, one CPU): ``keras.utils.set_random_seed`` (the seed and the trial's
id) and ``clear_session()``, the model of :func:`search_tasks.build`, ``fit`` with ``EarlyStopping(
monitor, patience, restore_best_weights=True)`` and a callback that calls ``tune.report`` after
every epoch with the epoch's ``monitor``, ``best`` (the best so far, the metric ASHA and the
searcher read, as the other systems' objective is the best epoch's value) and ``epoch``
(1-based, ASHA's time); when ``best`` improved, the report carries a ``tune.Checkpoint`` of
the model saved with ``model.save`` (Ray keeps the best one). When ``fit`` ends by itself
(all epochs, or early stopping) a last report says ``fit_done``.

It prints one JSON line when Ray is up (``event: "ray_ready"``, ``import_s``, ``init_s``: its
start-up) and one per finished trial: ``trial``, ``state`` (COMPLETE when the fit ended by
itself or reached ``max_t``, PRUNED when ASHA stopped it, FAIL on an error), ``value`` (the
best so far), ``epochs`` trained, ``t`` (seconds since this process started) and ``time``
(Unix seconds), ``params`` (the configuration) and ``optuna_number`` (with
``--tunecb-draws``); at the end ``event: "ray_shutdown"`` with ``shutdown_s``.

``--tunecb-draws`` (``search.py --paired``): the searcher's TPE draws as tunecb does
(:mod:`paired_draws`: its random states reseeded per Optuna trial number) and each trial's
Keras seed is tunecb's for that number, so for a seed Ray tries the same random start-up
configurations as tunecb and the loop, and trains them alike.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# The trial actors import search_tasks (the trainable refers to it): they inherit this.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p
)
sys.path.insert(0, str(HERE))

from paired_draws import TunecbDrawsTPE, keras_seed  # noqa: E402
from search_tasks import TASKS, build, suggest  # noqa: E402


def first_rung(epochs: int) -> int:
    """ASHA's grace period: the epoch of tunecb's first rung (a tenth of the budget, >= 1).

    >>> first_rung(20), first_rung(9)
    (2, 1)
    """
    return max(1, epochs // 10)


def params_of(config: dict[str, Any]) -> dict[str, Any]:
    """What :func:`search_tasks.suggest` drew (:func:`search_tasks.build`'s keywords) in a
    trial's config, without what :func:`numbered_space` adds.

    >>> params_of({"layers": 1, "units_0": 16, "dropout": 0.1, "lr": 0.01, "number": 3})
    {'layers': 1, 'units_0': 16, 'dropout': 0.1, 'lr': 0.01}
    """
    return {k: v for k, v in config.items() if k != "number"}


def space(trial: Any, task_name: str) -> None:
    """The define-by-run space of ``task_name`` (module functions, bound with
    ``functools.partial``: Ray pickles its searcher)."""
    suggest(trial, TASKS[task_name])


def numbered_space(trial: Any, task_name: str) -> dict[str, int]:
    """:func:`space`, and the Optuna trial's number in the config (``--tunecb-draws``: the
    trial's Keras seed is tunecb's for that number)."""
    suggest(trial, TASKS[task_name])
    return {"number": trial.number}


def emit(**fields: Any) -> None:
    print(json.dumps({**fields, "t": round(time.perf_counter() - STARTED, 3),
                      "time": round(time.time(), 3)}), flush=True)  # fmt: skip


def train(config: dict[str, Any], data: Any, task_name: str, settings: dict[str, Any]) -> None:
    """One trial, in a Ray actor: fit the task's model, report every epoch to Tune."""
    import keras
    from ray import tune

    task = TASKS[task_name]
    maximize = task.maximize
    if settings["tunecb_draws"]:
        keras.utils.set_random_seed(keras_seed(settings["seed"], config["number"]))
    else:
        trial_id = tune.get_context().get_trial_id()  # e.g. "912c938a" or "912c938a_00003"
        keras.utils.set_random_seed(settings["seed"] * 1000 + int(trial_id[:6], 16) % 1000)
    keras.backend.clear_session()
    (x_train, y_train), (x_val, y_val) = data
    params = params_of(config)
    model = build(task, **params)
    workdir = Path(tempfile.mkdtemp(prefix="tunecb-search-ray-trial-"))

    class Report(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.best: float | None = None
            self.epochs = 0

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            value = float((logs or {})[task.monitor])
            self.epochs = epoch + 1
            better = self.best is None or (value > self.best if maximize else value < self.best)
            metrics = {task.monitor: value, "epoch": self.epochs}
            if better:
                self.best = value
                model_dir = workdir / f"epoch_{self.epochs}"
                model_dir.mkdir()
                self.model.save(model_dir / "model.keras")
                tune.report({**metrics, "best": value},
                            checkpoint=tune.Checkpoint.from_directory(str(model_dir)))  # fmt: skip
            else:
                tune.report({**metrics, "best": self.best})

    report = Report()
    try:
        model.fit(
            x_train,
            y_train,
            batch_size=settings["batch_size"],
            epochs=settings["epochs"],
            validation_data=(x_val, y_val),
            verbose=0,
            callbacks=[
                keras.callbacks.EarlyStopping(
                    task.monitor, patience=settings["patience"],
                    mode="max" if maximize else "min", restore_best_weights=True,
                ),
                report,
            ],
        )  # fmt: skip
        tune.report({"best": report.best, "epoch": report.epochs, "fit_done": True})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cpus", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument(
        "--tunecb-draws", action="store_true", help="draw per trial as tunecb does (paired)"
    )
    args = parser.parse_args(argv)
    task = TASKS[args.task]
    mode = "max" if task.maximize else "min"

    import optuna
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    imported = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)  # fmt: skip
    emit(event="ray_ready", import_s=round(imported - STARTED, 3),
         init_s=round(time.perf_counter() - imported, 3), cpus=args.cpus)  # fmt: skip
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = Path(tempfile.mkdtemp(prefix="tunecb-search-ray-"))
    settings = {"seed": args.seed, "epochs": args.epochs, "patience": args.patience,
                "batch_size": args.batch_size, "tunecb_draws": args.tunecb_draws}  # fmt: skip

    class Printer(tune.Callback):
        """One JSON line per finished trial, printed by the driver."""

        def __init__(self) -> None:
            self.numbers: dict[str, int] = {}  # Ray's trial ids, numbered as they start

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info) -> None:
            self.numbers.setdefault(trial.trial_id, len(self.numbers))

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info) -> None:
            self._line(trial, failed=False)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info) -> None:
            self._line(trial, failed=True)

        def _line(self, trial: Any, failed: bool) -> None:
            last = trial.last_result or {}
            epochs = int(last.get("epoch") or 0)
            complete = bool(last.get("fit_done")) or epochs >= args.epochs
            state = "FAIL" if failed else ("COMPLETE" if complete else "PRUNED")
            number = self.numbers.setdefault(trial.trial_id, len(self.numbers))
            emit(trial=number, state=state, value=last.get("best"), epochs=epochs,
                 params=params_of(trial.config),
                 optuna_number=trial.config.get("number"))  # fmt: skip

    try:
        trainable = tune.with_resources(
            tune.with_parameters(train, data=task.load(), task_name=task.name,
                                 settings=settings),
            {"cpu": 1},
        )  # fmt: skip
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=OptunaSearch(
                    space=functools.partial(
                        numbered_space if args.tunecb_draws else space, task_name=args.task
                    ),
                    metric="best",
                    mode=mode,
                    sampler=TunecbDrawsTPE(args.seed)
                    if args.tunecb_draws
                    else optuna.samplers.TPESampler(seed=args.seed),
                ),
                scheduler=ASHAScheduler(
                    metric="best", mode=mode, time_attr="epoch", max_t=args.epochs,
                    grace_period=first_rung(args.epochs), reduction_factor=3,
                ),
                num_samples=args.trials,
                max_concurrent_trials=args.cpus,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=f"{task.name}-{args.seed}",
                storage_path=str(storage),
                verbose=0,
                callbacks=[Printer()],
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=1, checkpoint_score_attribute="best", checkpoint_score_order=mode
                ),
            ),
        )  # fmt: skip
        tuner.fit()
    finally:
        down = time.perf_counter()
        ray.shutdown()
        emit(event="ray_shutdown", shutdown_s=round(time.perf_counter() - down, 3))
        shutil.rmtree(storage, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
