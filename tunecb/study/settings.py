"""Resolved settings of one search: CLI flags > study file > defaults, validated once.

:data:`FIELDS` is the one list of the settings: ``Study(...)``'s keywords, the defaults, the
``tunecb search`` flags (:mod:`tunecb.cli.parser`) and the README's reference table
(:func:`reference_markdown`) all come from it.

>>> s = resolve({"monitor": "val_accuracy"}, {"epochs": 3}, default_name="digits")
>>> (s.name, s.direction, s.epochs, s.n_trials)
('digits', 'maximize', 3, 20)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tunecb.errors import ConfigError
from tunecb.study.direction_check import check_direction
from tunecb.study.schedules import Schedule, parse_schedule

BACKENDS = ("tensorflow", "jax", "torch")  # Keras 3's, each also its module's name
SAMPLERS = ("tpe", "random", "cmaes", "qmc", "gp", "nsgaii", "bruteforce")
PRUNERS = ("median", "successive_halving", "hyperband", "none")
_PRUNER_ALIASES = {"sha": "successive_halving", "asha": "successive_halving", "nop": "none"}

# How a flag's text becomes a value; tunecb.cli.parser maps each to an argparse type.
CliType = Literal[
    "str", "int", "positive_int", "non_negative_int", "positive_float", "non_negative_float",
    "switch",
]  # fmt: skip


class _FileStem:
    """The default of ``name``: the study file's stem, known only when the file is loaded."""

    def __repr__(self) -> str:
        return "FILE_STEM"


FILE_STEM: Any = _FileStem()


@dataclass(frozen=True)
class Field:
    """One study setting: its default, how ``Study(...)`` and ``tunecb search`` take it, and
    what the README says about it."""

    name: str
    default: Any  # when neither a flag nor the study file sets it (FILE_STEM for ``name``)
    meaning: str  # the README's "meaning" cell (Markdown)
    flag: str | None = None  # the ``tunecb search`` flag; None: no flag
    cli_type: CliType = "str"
    help: str | None = None  # the flag's --help text
    metavar: str | None = None
    choices: tuple[Any, ...] | None = None
    in_study: bool = True  # a keyword argument of Study(...); False: flag only
    unset: Any = None  # Study(...)'s default, meaning "not set in the study file"
    default_text: str | None = None  # the README's default cell, when repr does not say it

    @property
    def dest(self) -> str | None:
        """The attribute of the parsed ``argparse`` namespace that holds the flag's value."""
        return self.flag.removeprefix("--").replace("-", "_") if self.flag else None


def _one_of(names: tuple[str, ...]) -> str:
    return f"{', '.join(names[:-1])} or {names[-1]}"


FIELDS: tuple[Field, ...] = (
    Field(
        "name", FILE_STEM, "study name; results go to `results/<name>/`",
        flag="--study-name", help="study name (default: the file's stem)",
        default_text="the file's stem",
    ),
    Field(
        "monitor", "val_loss", "a metric the model logs (`val_` ones need validation data)",
        flag="--monitor", help="metric to optimise, e.g. val_accuracy",
    ),
    Field(
        "direction", "auto",
        "`\"maximize\"` / `\"minimize\"`; `auto` reads the name (`loss`, `error` → minimize; "
        "`acc`, `auc`, `precision`, `recall`, `f1`, ... → maximize)",
        flag="--direction", help="maximize, minimize or auto",
    ),
    Field(
        "epochs", 20, "epoch budget of every trial; the pruners' resource is the epoch",
        flag="--epochs", cli_type="positive_int", help="epoch budget of every trial",
    ),
    Field(
        "batch_size", 32,
        "passed to `fit` for array data (a `tf.data.Dataset` batches itself)",
        flag="--batch-size", cli_type="positive_int", help="fit batch size",
    ),
    Field(
        "fit_kwargs", {},
        "other `fit` arguments (`class_weight`, `shuffle`, `steps_per_epoch`, ...)",
    ),
    Field(
        "n_trials", 20,
        "finished trials the study should hold; running again continues up to it",
        flag="--n-trials", cli_type="positive_int", help="trials the study should hold",
    ),
    Field(
        "timeout", None, "seconds after which no new trial starts",
        flag="--timeout", cli_type="positive_float", help="seconds; no trial starts after",
    ),
    Field(
        "sampler", "tpe",
        "`tpe` (multivariate, constant liar for parallel workers), `random`, `cmaes` "
        "(needs `cmaes`), `qmc`, `gp` (needs `torch`), `nsgaii`, "
        "`bruteforce`, or an `optuna.samplers` instance",
        flag="--sampler", help=_one_of(SAMPLERS),
    ),
    Field(
        "pruner", "median",
        "`median`, `hyperband` (first rung at a tenth of `epochs`), `successive_halving`, "
        "`none`, or an `optuna.pruners` instance",
        flag="--pruner", help=_one_of(PRUNERS),
    ),
    Field(
        "seed", None, "seeds the sampler, and with the trial number every trial's Keras seed",
        flag="--seed", cli_type="non_negative_int", help="seed of the sampler and trials",
    ),
    Field(
        "patience", 5, "early-stopping patience (with `restore_best_weights`); `None` = off",
        unset="default",  # None is a value here: no early stopping
    ),
    Field(
        "min_delta", 0.0, "smallest change that counts as an improvement for early stopping",
    ),
    Field(
        "lr_schedule", "none",
        "`none`, `plateau`, `cosine`, `step`, `search`, or "
        "`tunecb.ReduceOnPlateau(factor, patience, min_lr)`, "
        "`tunecb.Cosine(min_ratio, warmup_epochs)`, `tunecb.StepDecay(every, factor)`, "
        "`tunecb.Searched([...names])`",
    ),
    Field(
        "backend", None,
        "the Keras backend: `tensorflow`, `jax` or `torch`; none: Keras' own choice "
        "(`KERAS_BACKEND`, else `~/.keras/keras.json`, else TensorFlow)",
        flag="--backend", choices=BACKENDS,
        help="Keras backend (default: $KERAS_BACKEND, else ~/.keras/keras.json, else tensorflow)",
    ),
    Field(
        "verbose", 0, 'Keras `fit` verbosity: `0`, `1`, `2` or `"auto"`',
        flag="--verbose", cli_type="int", choices=(0, 1, 2), help="Keras fit verbosity",
    ),
    Field(
        "backup_every", 10.0,
        "seconds between backups of a running trial (`0`: every epoch); a trial whose "
        "worker dies resumes from its last backup",
        flag="--backup-every", cli_type="non_negative_float", metavar="S",
        help="back a running trial up at most every S seconds (default 10; 0: every epoch)",
    ),
    Field(
        "heartbeat", 30,
        "with a database storage, seconds between heartbeats, so that other machines rerun "
        "the trials of one that died (`0`: off)",
        flag="--heartbeat", cli_type="non_negative_int", metavar="S",
        help="with a database storage: beat every S seconds so that other machines rerun the "
        "trials of one that died (default 30; 0: off)",
        in_study=False,
    ),
    Field(
        "tensorboard", False,
        "`True` writes TensorBoard logs with HParams: [In TensorBoard](#in-tensorboard)",
        flag="--tensorboard", cli_type="switch",
        help="write each trial's TensorBoard logs with HParams under RESULTS/STUDY/tensorboard",
    ),
    Field(
        "keep_checkpoints", None,
        "keep the best checkpoints of the K best trials only, deleting the others as the "
        "search runs; none keeps all",
        flag="--keep-checkpoints", cli_type="positive_int", metavar="K",
        help="keep the best checkpoints of the K best trials only; delete the others as the "
        "search runs (default: keep all)",
    ),
    Field(
        "storage", None,
        "any Optuna storage URL or `.journal` path; none: `results/<name>/optuna.journal`",
        flag="--storage", metavar="URL", help="any Optuna storage URL or .journal path",
        in_study=False,
    ),
    Field(
        "results", "results", "the folder that holds `<name>/` (checkpoints, logs, reports)",
        flag="--results", metavar="DIR", help="results folder (default: results)",
        in_study=False,
    ),
)  # fmt: skip
FIELDS_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}

# The defaults of every setting but ``name`` (whose default is the study file's stem).
DEFAULTS: dict[str, Any] = {f.name: f.default for f in FIELDS if f.default is not FILE_STEM}

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


def valid_name(name: object) -> bool:
    """Whether ``name`` can name a study (and its folder ``results/<name>/``): letters and
    digits of any script, ``_``, ``-`` and ``.``; not starting with ``.`` (a hidden folder)
    or ``-`` (it would read as a flag). Every Python identifier is one, so a study file
    ``données.py`` or ``模型.py`` names its study.

    >>> [valid_name(n) for n in ("digits", "données", "模型", "_tmp", "run-2.1")]
    [True, True, True, True, True]
    >>> [valid_name(n) for n in ("", ".hidden", "-x", "a b", "a/b", "a+b", "..")]
    [False, False, False, False, False, False, False]
    """
    return (
        isinstance(name, str)
        and bool(name)
        and name[0] not in ".-"
        and all(c.isalnum() or c in "_.-" for c in name)
        and len(name.encode("utf-8")) <= 200  # a folder name: 255 bytes on most filesystems
    )


def overrides_from(args: Any) -> dict[str, Any]:
    """``{setting: value}`` of every flagged setting, from a parsed ``argparse.Namespace`` (or
    a mapping of its attributes); ``None`` means the flag was not given.

    >>> overrides_from({"study_name": "digits", "epochs": 3})["name"]
    'digits'
    """
    get = args.get if isinstance(args, Mapping) else lambda dest: getattr(args, dest, None)
    return {f.name: get(f.dest) for f in FIELDS if f.dest}


def reference_markdown() -> str:
    """The README's ``tunecb.Study(...)`` reference table (Markdown, no trailing newline)."""
    rows = [
        "| `Study(...)` keyword | `tunecb search` flag | default | meaning |",
        "|---|---|---|---|",
    ]
    for f in FIELDS:
        keyword = f"`{f.name}`" if f.in_study else "—"
        flag = f"`{f.flag}`" if f.flag else "—"
        rows.append(f"| {keyword} | {flag} | {_default_cell(f)} | {f.meaning} |")
    return "\n".join(rows)


def _default_cell(f: Field) -> str:
    if f.default_text is not None:
        return f.default_text
    if f.default is None:
        return "none"
    if isinstance(f.default, str):
        return f'`"{f.default}"`'
    if isinstance(f.default, float):
        return f"`{f.default:g}`"
    return f"`{f.default!r}`"


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
    backend: str | None
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

    def bad(key: str, expected: str) -> ConfigError:
        return ConfigError(f"{sources[key]} {values[key]!r}: {expected}")

    name = values["name"]
    if not valid_name(name):
        rule = "a study name is letters, digits, '_', '-' and '.', not first, e.g. 'digits'"
        if sources["name"] == "default name":  # the study file's name
            raise ConfigError(
                f"the study file's name {name!r} cannot name the study: {rule}; "
                "pass --study-name NAME, or set name= in the study file"
            )
        raise bad("name", rule)
    monitor = values["monitor"]
    if not isinstance(monitor, str) or not monitor:
        raise bad("monitor", "name a logged metric, e.g. 'val_accuracy'")
    direction = _direction(values["direction"], monitor, bad)
    check_direction(monitor, direction, sources["direction"])
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
    backend = values["backend"]
    if isinstance(backend, str) and backend.strip().lower() == "pytorch":
        backend = "torch"
    if backend is not None and (not isinstance(backend, str) or backend.strip().lower()
                                not in BACKENDS):  # fmt: skip
        raise bad("backend", "use 'tensorflow', 'jax' or 'torch' (or None: Keras' own choice)")
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
        backend=backend.strip().lower() if backend else None,
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
