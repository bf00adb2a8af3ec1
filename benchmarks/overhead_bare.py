"""The "bare loop" sides of ``benchmarks/overhead.py``: the fits of ``tunecb search``, no tunecb.

It runs the study of ``overhead_study.py`` by hand: N times ``clear_session``, the
trial's seed, the same model, and ``model.fit``, driven by a trial of an in-memory Optuna
study, with

- ``--callbacks tunecb`` (default): the callbacks tunecb uses (from
  ``tunecb.training.callbacks.make_callbacks``), so the difference to ``tunecb search`` is
  tunecb's work outside ``fit``: journal storage, sampler, trial records and results files;
- ``--callbacks keras``: only what a Keras user would add by hand, Keras' own
  ``EarlyStopping(restore_best_weights=True)`` and ``ModelCheckpoint(save_best_only=True)``,
  so the difference to ``tunecb search`` is everything tunecb does, its callbacks included.

It prints one JSON line with its inner timings.

    python benchmarks/overhead_bare.py --trials 12 --workdir /tmp/bare [--callbacks keras]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as `tunecb search` does

import keras  # noqa: E402  (after the environment variable, like the CLI)
import optuna  # noqa: E402

from tunecb.study.samplers_pruners import make_pruner, make_sampler  # noqa: E402
from tunecb.study.settings import resolve  # noqa: E402
from tunecb.training.callbacks import make_callbacks  # noqa: E402
from tunecb.training.trial_env import trial_seed  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overhead_study  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--callbacks", choices=("tunecb", "keras"), default="tunecb")
    args = parser.parse_args(argv)
    imported = time.perf_counter()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = resolve(
        overhead_study.study.settings,
        {"n_trials": args.trials, "pruner": "none", "results": str(args.workdir)},
        default_name="overhead",
    )
    (x_train, y_train), validation = overhead_study.load()
    # As tunecb does: the default pruner of create_study (median) would prune trials here.
    study = optuna.create_study(
        direction=settings.direction,
        sampler=make_sampler(settings.sampler, settings.seed),
        pruner=make_pruner(settings.pruner, settings.epochs),
    )

    fits: list[float] = []
    values: list[float | None] = []
    epochs: list[int] = []
    for _ in range(args.trials):
        trial = study.ask()
        start = time.perf_counter()
        folder = args.workdir / "trials" / str(trial.number)
        folder.mkdir(parents=True, exist_ok=True)
        keras.backend.clear_session(free_memory=False)
        keras.utils.set_random_seed(trial_seed(settings.seed, trial.number))
        model = overhead_study.build(trial)
        if args.callbacks == "tunecb":
            cbs = make_callbacks(
                trial,
                settings,
                settings.lr_schedule,
                folder / "best.keras",
                folder / "history.csv",
                [],
            )
            callbacks = cbs.as_list()
        else:
            mode = "max" if settings.maximize else "min"
            callbacks = [
                keras.callbacks.EarlyStopping(
                    settings.monitor, patience=settings.patience, mode=mode,
                    restore_best_weights=True,
                ),
                keras.callbacks.ModelCheckpoint(
                    str(folder / "best.keras"), monitor=settings.monitor, mode=mode,
                    save_best_only=True,
                ),
            ]  # fmt: skip
        history = model.fit(
            x=x_train,
            y=y_train,
            batch_size=settings.batch_size,
            validation_data=validation,
            epochs=settings.epochs,
            callbacks=callbacks,
            verbose=settings.verbose,
            **settings.fit_kwargs,
        )
        seen = history.history[settings.monitor]
        best = (max if settings.maximize else min)(seen)
        study.tell(trial, best)
        fits.append(round(time.perf_counter() - start, 4))
        values.append(best)
        epochs.append(len(seen))

    done = time.perf_counter()
    print(
        json.dumps(
            {
                "startup_s": round(imported - STARTED, 4),
                "fits_s": fits,
                "values": values,
                "epochs_run": epochs,
                "inner_total_s": round(done - STARTED, 4),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
