"""Resolved settings of one search: CLI flags > study file > defaults, validated once.

>>> s = resolve({"monitor": "val_accuracy"}, {"epochs": 3}, default_name="digits")
>>> (s.name, s.direction, s.epochs, s.n_trials)
('digits', 'maximize', 3, 20)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunecb.errors import ConfigError
from tunecb.schedules import Schedule, parse_schedule

DEFAULTS: dict[str, Any] = {
    "monitor": "val_loss",
    "direction": "auto",
    "epochs": 20,
    "batch_size": 32,
    "fit_kwargs": {},
    "n_trials": 20,
    "timeout": None,
    "sampler": "tpe",
    "pruner": "median",
    "seed": None,
    "patience": 5,
    "min_delta": 0.0,
    "lr_schedule": "none",
    "verbose": 0,
    "backup_every": 10.0,
    "heartbeat": 30,
    "tensorboard": False,
    "keep_checkpoints": None,
    "storage": None,
    "results": "results",
}

SAMPLERS = ("tpe", "random", "cmaes", "qmc", "gp", "nsgaii", "bruteforce")
PRUNERS = ("median", "successive_halving", "hyperband", "none")
_PRUNER_ALIASES = {"sha": "successive_halving", "asha": "successive_halving", "nop": "none"}

# fit() arguments that tunecb sets itself; the study declares them another way.
_RESERVED_FIT_KWARGS = {
    "x": "the data function",
    "y": "the data function",
    "validation_data": "the data function",
    "epochs": "epochs=",
    "batch_size": "batch_size=",
    "callbacks": "@study.callbacks",
    "verbose": "verbose=",
    "initial_epoch": "nothing (tunecb starts every trial at epoch 0)",
}
_MAXIMIZED = ("acc", "auc", "precision", "recall", "f1", "fbeta", "iou", "r2", "top_k")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Settings:
    """Everything a search needs to know besides the study's functions."""

    name: str
    monitor: str
    direction: str
    epochs: int
    batch_size: int | None
    fit_kwargs: dict[str, Any]
    n_trials: int | None
    timeout: float | None
    sampler: Any
    pruner: Any
    seed: int | None
    patience: int | None
    min_delta: float
    lr_schedule: Schedule
    verbose: int
    backup_every: float
    heartbeat: int
    tensorboard: bool
    keep_checkpoints: int | None
    storage: str | None
    results: Path
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"


def resolve(
    study_settings: dict[str, Any],
    overrides: dict[str, Any],
    *,
    default_name: str,
    study_path: str | Path | None = None,
) -> Settings:
    """Merge the study file's settings with CLI overrides (``None`` = not given) and defaults.

    Raises :class:`ConfigError` naming the flag or study-file field, the value and the fix.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    where_file = f"{study_path}: " if study_path else ""
    for key in (*DEFAULTS, "name"):
        if overrides.get(key) is not None:
            values[key] = overrides[key]
            sources[key] = "--" + ("study-name" if key == "name" else key.replace("_", "-"))
        elif key in study_settings:
            values[key] = study_settings[key]
            sources[key] = f"{where_file}{key}="
        else:
            values[key] = DEFAULTS.get(key, default_name)
            sources[key] = f"default {key}"

    def bad(key: str, expected: str) -> ConfigError:
        return ConfigError(f"{sources[key]} {values[key]!r}: {expected}")

    name = values["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise bad("name", "a study name is letters, digits, '_', '-' or '.', e.g. 'digits'")
    monitor = values["monitor"]
    if not isinstance(monitor, str) or not monitor:
        raise bad("monitor", "name a logged metric, e.g. 'val_accuracy'")
    direction = _direction(values["direction"], monitor, bad)
    for key in ("epochs", "n_trials", "batch_size"):
        value = values[key]
        if value is None and key != "epochs":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise bad(key, "must be a positive integer")
    timeout = values["timeout"]
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise bad("timeout", "must be a positive number of seconds")
    patience = values["patience"]
    if patience is not None and (
        isinstance(patience, bool) or not isinstance(patience, int) or patience < 0
    ):
        raise bad("patience", "must be an integer >= 0, or None to turn early stopping off")
    min_delta = values["min_delta"]
    if isinstance(min_delta, bool) or not isinstance(min_delta, int | float) or min_delta < 0:
        raise bad("min_delta", "must be a number >= 0")
    seed = values["seed"]
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise bad("seed", "must be an integer >= 0")
    fit_kwargs = values["fit_kwargs"]
    if not isinstance(fit_kwargs, dict):
        raise bad("fit_kwargs", "must be a dict of model.fit arguments")
    for key in fit_kwargs:
        if key in _RESERVED_FIT_KWARGS:
            raise ConfigError(
                f"{sources['fit_kwargs']} has {key!r}: tunecb sets it; "
                f"declare it with {_RESERVED_FIT_KWARGS[key]}"
            )
    sampler = _choice(values["sampler"], SAMPLERS, {}, "optuna.samplers", bad, "sampler")
    pruner = _choice(values["pruner"], PRUNERS, _PRUNER_ALIASES, "optuna.pruners", bad, "pruner")
    try:
        schedule = parse_schedule(values["lr_schedule"])
    except ConfigError as exc:
        raise ConfigError(f"{sources['lr_schedule']} {exc}") from None
    verbose = values["verbose"]
    if verbose not in (0, 1, 2, "auto"):
        raise bad("verbose", "Keras fit verbosity is 0, 1, 2 or 'auto'")
    backup_every = values["backup_every"]
    if (
        isinstance(backup_every, bool)
        or not isinstance(backup_every, int | float)
        or not backup_every >= 0
    ):
        raise bad("backup_every", "seconds between trial backups: a number >= 0")
    heartbeat = values["heartbeat"]
    if isinstance(heartbeat, bool) or not isinstance(heartbeat, int) or heartbeat < 0:
        raise bad("heartbeat", "seconds between heartbeats: an integer >= 0 (0: off)")
    tensorboard = values["tensorboard"]
    if not isinstance(tensorboard, bool):
        raise bad(
            "tensorboard", "True writes TensorBoard logs with HParams; False (default) does not"
        )
    keep = values["keep_checkpoints"]
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep <= 0):
        raise bad(
            "keep_checkpoints",
            "keep the checkpoints of the K best trials: a positive integer, or None to keep all",
        )
    results = values["results"]
    if not isinstance(results, str | Path) or not str(results):
        raise bad("results", "must be a folder path")
    storage = values["storage"]
    if storage is not None and (not isinstance(storage, str) or not storage.strip()):
        raise bad("storage", "must be an Optuna storage URL, e.g. sqlite:///study.db")
    return Settings(
        name=name,
        monitor=monitor,
        direction=direction,
        epochs=values["epochs"],
        batch_size=values["batch_size"],
        fit_kwargs=dict(fit_kwargs),
        n_trials=values["n_trials"],
        timeout=float(timeout) if timeout is not None else None,
        sampler=sampler,
        pruner=pruner,
        seed=seed,
        patience=patience,
        min_delta=float(min_delta),
        lr_schedule=schedule,
        verbose=verbose,
        backup_every=float(backup_every),
        heartbeat=heartbeat,
        tensorboard=tensorboard,
        keep_checkpoints=keep,
        storage=storage,
        results=Path(results),
        sources=sources,
    )


def _direction(value: Any, monitor: str, bad) -> str:
    if not isinstance(value, str):
        raise bad("direction", "use 'maximize', 'minimize' or 'auto'")
    value = value.strip().lower()
    aliases = {"max": "maximize", "min": "minimize"}
    value = aliases.get(value, value)
    if value in ("maximize", "minimize"):
        return value
    if value != "auto":
        raise bad("direction", "use 'maximize', 'minimize' or 'auto'")
    base = monitor.lower().removeprefix("val_")
    if "loss" in base or "error" in base:
        return "minimize"
    if any(tag in base for tag in _MAXIMIZED):
        return "maximize"
    raise ConfigError(
        f"cannot tell whether monitor {monitor!r} should go up or down; "
        "set direction='maximize' or direction='minimize' in the study (or --direction)"
    )


def _choice(value: Any, names: tuple[str, ...], aliases: dict, module: str, bad, key: str):
    if isinstance(value, str):
        name = value.strip().lower().replace("-", "_")
        name = aliases.get(name, name)
        if name in names:
            return name
        raise bad(key, f"use one of {list(names)} or an {module} instance")
    import optuna

    base = optuna.samplers.BaseSampler if key == "sampler" else optuna.pruners.BasePruner
    if isinstance(value, base):
        return value
    raise bad(key, f"use one of {list(names)} or an {module} instance")
