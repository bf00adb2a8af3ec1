"""A finished tunecb study made with Optuna's API, no training: for report tests and the
report benchmarks (``benchmarks/`` puts this folder on ``sys.path``).

>>> make_big_study(Path(tempfile.mkdtemp()) / "big", 20)
"""

from __future__ import annotations

import datetime as dt
import json
import random
import tempfile  # noqa: F401  (the docstring example)
from pathlib import Path

EPOCHS = 10


def make_big_study(
    folder: Path,
    n_trials: int,
    seed: int = 0,
    workers: int = 0,
    states: tuple[float, float] = (0.6, 0.9),
    objectives: bool | int = False,
) -> None:
    """A finished study as ``tunecb search`` leaves it, made with Optuna's API (no training):
    ``optuna.journal``, ``study.json``, and per trial the user attributes tunecb records,
    ~10 epochs of intermediate values, ``trial.json`` and an (empty) checkpoint file.

    ``workers``: trials name one of this many worker processes and overlap in time (0: none,
    one after another); ``states``: the draws below which a trial is COMPLETE, then PRUNED
    (the rest FAIL), e.g. ``(0, 0)`` for a study of failed trials only; ``objectives``: a
    multi-objective study (val_accuracy:max, params:min; ``3``: and latency_ms:min, noisy in the
    parameter count) with its Pareto-pruner rung values."""
    import optuna
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    from optuna.trial import TrialState, create_trial

    from tunecb._version import __version__
    from tunecb.results import StudyDir, write_json

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_dir = StudyDir(folder)
    study_dir.trials.mkdir(parents=True)
    storage = JournalStorage(JournalFileBackend(str(folder / "optuna.journal")))
    n_objectives = 0 if not objectives else 2 if objectives is True else int(objectives)
    names = ["val_accuracy", "params", "latency_ms"][:n_objectives]
    directions = ["maximize"] + ["minimize"] * max(0, n_objectives - 1)
    spelled = ",".join(f"{n}:{d[:3]}" for n, d in zip(names, directions, strict=False))
    study = optuna.create_study(storage=storage, study_name="big", directions=directions)
    sha = "0" * 64
    study_attrs = {
        "monitor": "val_accuracy",
        "epochs": EPOCHS,
        "study_sha256": sha,
        "study_file": "studies/big.py",
        "tunecb_version": __version__,
        **({"objectives": spelled} if objectives else {}),
    }
    for key, value in study_attrs.items():
        study.set_user_attr(key, value)
    write_json(
        study_dir.study_json,
        {
            "name": "big",
            "monitor": "val_accuracy",
            "direction": "maximize",
            "epochs": EPOCHS,
            "storage": None,
            "study_file": "studies/big.py",
            "tunecb_version": __version__,
        },
    )
    distributions = {
        "layers": IntDistribution(1, 3),
        "units_0": IntDistribution(16, 256, log=True),
        "activation_0": CategoricalDistribution(["relu", "gelu"]),
        "dropout_0": FloatDistribution(0.0, 0.5),
        "lr": FloatDistribution(1e-4, 3e-2, log=True),
    }
    versions = {"keras": "3.15.1", "optuna": optuna.__version__, "tensorflow": "2.21.0"}
    versions["tunecb"] = __version__
    rng = random.Random(seed)
    start = dt.datetime(2025, 1, 1, 12, 0, 0)
    trials = []
    for number in range(n_trials):
        params = {
            "layers": rng.randint(1, 3),
            "units_0": round(2 ** rng.uniform(4, 8)),
            "activation_0": rng.choice(["relu", "gelu"]),
            "dropout_0": rng.uniform(0.0, 0.5),
            "lr": 10 ** rng.uniform(-4, -1.53),
        }
        draw = rng.random()
        state = TrialState.COMPLETE if draw < states[0] else (
            TrialState.PRUNED if draw < states[1] else TrialState.FAIL
        )  # fmt: skip
        if state == TrialState.COMPLETE:
            epochs = EPOCHS if rng.random() < 0.7 else rng.randint(4, EPOCHS - 1)
            reason = "completed" if epochs == EPOCHS else "early_stopped"
        elif state == TrialState.PRUNED:
            epochs, reason = rng.randint(1, EPOCHS - 1), "pruned"
        else:
            epochs = rng.randint(0, 3)
            reason = rng.choice(["failed", "nan"])
        curve, acc, ceiling = {}, rng.uniform(0.3, 0.6), rng.uniform(0.85, 0.985)
        for epoch in range(1, epochs + 1):  # a noisy learning curve towards its ceiling
            acc += (ceiling - acc) * rng.uniform(0.2, 0.6) + rng.uniform(-0.01, 0.01)
            curve[epoch] = acc
        best_epoch = max(curve, key=curve.__getitem__) if curve else None
        best = curve[best_epoch] if best_epoch else None
        if state == TrialState.FAIL:
            best, best_epoch = None, None
        duration = round(rng.uniform(0.5, 3.0) * max(epochs, 1), 3)
        checkpoint = f"trials/{number}/best.keras" if best is not None else None
        attrs = {
            "best_epoch": best_epoch,
            "epochs_run": epochs,
            "stop_reason": reason,
            "error": "ValueError: boom" if state == TrialState.FAIL else None,
            "checkpoint": checkpoint,
            "duration_s": duration,
            "n_params": 64 * params["units_0"] + params["units_0"] * 10 + 10,
            "seed": number * 7_919,
            "lr_schedule": "none",
            "best_value": best,
            "study_sha256": sha,
            "versions": versions,
        }
        value = None
        if state == TrialState.COMPLETE:
            value = best
        elif state == TrialState.PRUNED and not objectives:
            value = curve[max(curve)]  # Optuna's value of a pruned trial is its last report
        values = None if value is None else [value]
        if objectives and best is not None:
            latency = attrs["n_params"] / 20_000 * random.Random(number).uniform(0.5, 1.5)
            sizes = [attrs["n_params"], round(latency, 4)][: n_objectives - 1]
            attrs["objectives"] = dict(zip(names, [best, *sizes], strict=True))
            for rung in (1, 3, 9):  # the Pareto pruner's rungs of a 10-epoch budget
                if rung <= epochs:
                    attrs[f"pareto_rung_{rung}"] = [max(curve[e] for e in range(1, rung + 1)),
                                                    *sizes]  # fmt: skip
            if value is not None:
                values = [value, *sizes]
        if workers:
            attrs["worker"] = f"host{number % 2}:{1000 + number % workers}"
            began = start + dt.timedelta(seconds=30 * (number // workers))
        else:
            began = start + dt.timedelta(seconds=30 * number)
        trials.append(
            create_trial(
                state=state,
                values=values,
                params=params,
                distributions=distributions,
                user_attrs=attrs,
                intermediate_values=curve,
            )
        )
        trials[-1].datetime_start = began
        trials[-1].datetime_complete = began + dt.timedelta(seconds=duration)
        folder_n = study_dir.trial_dir(number)
        folder_n.mkdir()
        if checkpoint:
            (folder / checkpoint).touch()  # the report only checks that the file exists
        record = {"number": number, "state": state.name, "value": value, "params": params}
        record |= {"monitor": "val_accuracy", "direction": "maximize", "study": "big", **attrs}
        study_dir.trial_json(number).write_text(json.dumps(record, indent=2), encoding="utf-8")
    study.add_trials(trials)
