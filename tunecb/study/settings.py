"""Resolved settings of one search: CLI flags > study file > defaults, validated once.

Every setting is a row of the one table, :data:`tunecb.study.fields.FIELDS`; this module
turns the values given into :class:`Settings`, each checked by its row.

>>> s = resolve({"monitor": "val_accuracy"}, {"epochs": 3}, default_name="digits")
>>> (s.name, s.direction, s.epochs, s.n_trials)
('digits', 'maximize', 3, 20)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunecb.errors import ConfigError
from tunecb.study.checks import Invalid
from tunecb.study.direction_check import check_direction
from tunecb.study.fields import FIELDS, FILE_STEM
from tunecb.study.objectives import Objective, settle
from tunecb.study.schedules import Schedule

_MAXIMIZED = ("acc", "auc", "precision", "recall", "f1", "fbeta", "iou", "r2", "top_k")


@dataclass(frozen=True)
class Settings:
    """Everything a search needs to know besides the study's functions."""

    name: str
    monitor: str
    direction: str
    objectives: tuple[Objective, ...] | None  # None: a single-objective study
    epochs: int
    batch_size: int | None
    fit_kwargs: dict[str, Any]
    n_trials: int | None
    timeout: float | None
    trial_timeout: float | None
    epoch_timeout: float | None
    sampler: Any
    pruner: Any
    seed: int | None
    patience: int | None
    min_delta: float
    lr_schedule: Schedule
    backend: str | None
    verbose: int
    backup_every: float
    heartbeat: int
    reconnect: float
    tensorboard: bool
    mlflow: str | None
    mlflow_experiment: str | None
    wandb: str | None
    keep_checkpoints: int | None
    max_params: int | None
    storage: str | None
    results: Path
    enqueue: Any = None
    warm_start: str | None = None
    warm_start_study: str | None = None
    warm_start_enqueue: int = 3
    allow_other_file: bool = False
    steps_per_execution: int | str = "auto"
    graph_optimizer: str = "auto"
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
    """Merge the study file's settings with CLI overrides (``None`` = not given) and defaults,
    check each with its field's check, then the few checks across fields.

    Raises :class:`ConfigError` naming the flag or study-file field, the value and the fix.
    """
    given, sources = _given(study_settings, overrides, default_name, study_path)
    values: dict[str, Any] = {}
    for f in FIELDS:
        try:
            values[f.name] = f.check(given[f.name]) if f.check else given[f.name]
        except Invalid as exc:
            raise _invalid(f.name, given[f.name], sources[f.name], exc) from None
    values.update(across_fields(values, sources))
    return Settings(**values, sources=sources)


def across_fields(values: dict[str, Any], sources: dict[str, str] | None = None) -> dict[str, Any]:
    """The checks that read more than one setting (each already checked on its own); the
    settings they decide. Raises :class:`ConfigError` (``sources`` name where each came from).

    >>> across_fields({"monitor": "val_auc", "direction": "auto"})
    {'direction': 'maximize'}
    """
    sources = sources or {}
    objectives = values.get("objectives")
    if objectives:
        return settle(objectives, values, sources)
    if values.get("pruner") == "pareto":
        raise ConfigError(
            f"{sources.get('pruner', 'pruner=')} 'pareto' judges trials on several objectives; "
            "set objectives= (--objectives), or use another pruner"
        )
    direction = _direction(values["direction"], values["monitor"])
    check_direction(values["monitor"], direction, sources.get("direction", "direction="))
    return {"direction": direction}


def _given(
    study_settings: dict[str, Any],
    overrides: dict[str, Any],
    default_name: str,
    study_path: str | Path | None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Each setting's value before its check, and where it came from (flag > file > default)."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    where_file = f"{study_path}: " if study_path else ""
    for f in FIELDS:
        key = f.name
        if overrides.get(key) is not None:
            values[key] = overrides[key]
            sources[key] = f.flag or f"override {key}"
        elif key in study_settings:
            values[key] = study_settings[key]
            sources[key] = f"{where_file}{key}="
        else:
            values[key] = default_name if f.default is FILE_STEM else f.default
            sources[key] = f"default {key}"
    return values, sources


def _invalid(key: str, value: Any, source: str, exc: Invalid) -> ConfigError:
    """The one-line error of a setting whose check failed: where it came from, the value and
    what it takes."""
    if key == "name" and source == "default name":  # the study file's stem
        return ConfigError(
            f"the study file's name {value!r} cannot name the study: {exc.expected}; "
            "pass --study-name NAME, or set name= in the study file"
        )
    if not exc.quote:
        return ConfigError(f"{source} {exc.expected}")
    return ConfigError(f"{source} {value!r}: {exc.expected}")


def _direction(value: str, monitor: str) -> str:
    """``maximize`` or ``minimize``: as given, or (``auto``) read from the monitor's name."""
    if value != "auto":
        return value
    base = monitor.lower().removeprefix("val_")
    if "loss" in base or "error" in base:
        return "minimize"
    if any(tag in base for tag in _MAXIMIZED):
        return "maximize"
    raise ConfigError(
        f"cannot tell whether monitor {monitor!r} should go up or down; "
        "set direction='maximize' or direction='minimize' in the study (or --direction)"
    )
