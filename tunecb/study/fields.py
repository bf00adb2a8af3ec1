"""The one table of a search's settings: :data:`FIELDS`. ``Study(...)``'s keywords, the
defaults, the ``tunecb search`` flags (:mod:`tunecb.cli.parser`), the resolver
(:mod:`tunecb.study.settings`) and the README's reference table (:func:`reference_markdown`)
all come from it.

>>> FIELDS_BY_NAME["epochs"].flag, DEFAULTS["epochs"]
('--epochs', 20)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tunecb.study import checks, configurations
from tunecb.study.checks import Check
from tunecb.study.objectives import parse_objectives

BACKENDS = ("tensorflow", "jax", "torch")  # Keras 3's, each also its module's name
SAMPLERS = ("tpe", "random", "cmaes", "qmc", "gp", "nsgaii", "bruteforce")
PRUNERS = ("median", "successive_halving", "hyperband", "promotion", "pareto", "none")
GRAPH_OPTIMIZER = ("auto", "tensorflow", "off")  # tunecb.training.grappler's settings
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
    check: Check | None = None  # the value given -> the value used, or raises checks.Invalid

    @property
    def dest(self) -> str | None:
        """The attribute of the parsed ``argparse`` namespace that holds the flag's value."""
        return self.flag.removeprefix("--").replace("-", "_") if self.flag else None


def _one_of(names: tuple[str, ...]) -> str:
    return f"{', '.join(names[:-1])} or {names[-1]}"


_POSITIVE = checks.integer(1, "must be a positive integer")
_POSITIVE_OR_NONE = checks.integer(1, "must be a positive integer", none=True)

# A number of seconds > 0, or None (no limit): --timeout, --trial-timeout, --epoch-timeout.
_SECONDS = checks.number(
    0, "must be a positive number of seconds", above=True, finite=True, none=True
)

FIELDS: tuple[Field, ...] = (
    Field(
        "name", FILE_STEM, "study name; results go to `results/<name>/`",
        flag="--study-name", help="study name (default: the file's stem)",
        default_text="the file's stem",
        check=checks.study_name,
    ),
    Field(
        "monitor", "val_loss", "a metric the model logs (`val_` ones need validation data)",
        flag="--monitor", help="metric to optimise, e.g. val_accuracy",
        check=checks.metric,
    ),
    Field(
        "direction", "auto",
        "`\"maximize\"` / `\"minimize\"`; `auto` reads the name (`loss`, `error` → minimize; "
        "`acc`, `auc`, `precision`, `recall`, `f1`, ... → maximize)",
        flag="--direction", help="maximize, minimize or auto",
        check=checks.name_in(
            ("maximize", "minimize", "auto"), "use 'maximize', 'minimize' or 'auto'",
            aliases={"max": "maximize", "min": "minimize"},
        ),
    ),
    Field(
        "objectives", None,
        "two or more objectives of a multi-objective search, `{name: \"max\" or \"min\"}`: "
        "logged metrics, `params`, `size_mb`, `latency_ms`, or `(direction, function of the "
        "model)`; the first metric is the monitor: "
        "[Multi-objective search](#multi-objective-search)",
        flag="--objectives", metavar="NAME:DIR,...",
        help="multi-objective search, e.g. val_accuracy:max,params:min",
        check=parse_objectives,
    ),
    Field(
        "epochs", 20, "epoch budget of every trial; the pruners' resource is the epoch",
        flag="--epochs", cli_type="positive_int", help="epoch budget of every trial",
        check=_POSITIVE,
    ),
    Field(
        "batch_size", 32,
        "passed to `fit` for array data (a `tf.data.Dataset` batches itself)",
        flag="--batch-size", cli_type="positive_int", help="fit batch size",
        check=_POSITIVE_OR_NONE,
    ),
    Field(
        "fit_kwargs", {},
        "other `fit` arguments (`class_weight`, `shuffle`, `steps_per_epoch`, ...)",
        check=checks.fit_arguments,
    ),
    Field(
        "n_trials", 20,
        "finished trials the study should hold; running again continues up to it",
        flag="--n-trials", cli_type="positive_int", help="trials the study should hold",
        check=_POSITIVE_OR_NONE,
    ),
    Field(
        "timeout", None, "seconds after which no new trial starts",
        flag="--timeout", cli_type="positive_float", help="seconds; no trial starts after",
        check=_SECONDS,
    ),
    Field(
        "trial_timeout", None,
        "wall seconds one trial may run: it stops at the next epoch end (COMPLETE with its "
        "best so far, `time_limit`), or its worker process is ended when no epoch ends",
        flag="--trial-timeout", cli_type="positive_float", metavar="S",
        help="seconds one trial may run (stopped at an epoch end, or its process ended)",
        check=_SECONDS,
    ),
    Field(
        "epoch_timeout", None,
        "wall seconds one epoch may take: the trial stops at that epoch's end, or its "
        "worker process is ended when the epoch does not end",
        flag="--epoch-timeout", cli_type="positive_float", metavar="S",
        help="seconds one epoch may take (the trial stops, or its process is ended)",
        check=_SECONDS,
    ),
    Field(
        "sampler", "tpe",
        "`tpe` (multivariate and grouped, constant liar for parallel workers), `random`, `cmaes` "
        "(needs `cmaes`), `qmc`, `gp` (needs `torch`), `nsgaii`, "
        "`bruteforce`, or an `optuna.samplers` instance",
        flag="--sampler", help=_one_of(SAMPLERS),
        check=checks.optuna_choice("sampler", SAMPLERS, {}),
    ),
    Field(
        "pruner", "median",
        "`median`, `hyperband` (first rung at a tenth of `epochs`), `successive_halving` (ASHA, "
        "rungs at 1, 3 and 9 tenths of `epochs`), "
        "`promotion` (pauses at rungs and resumes the best from their backups), "
        "`none`, or an `optuna.pruners` instance; with `objectives=`: `pareto` (the default "
        "there), `promotion` (ranked by Pareto rank) or `none`",
        flag="--pruner", help=_one_of(PRUNERS),
        check=checks.optuna_choice("pruner", PRUNERS, _PRUNER_ALIASES),
    ),
    Field(
        "seed", None, "seeds the sampler, and with the trial number every trial's Keras seed",
        flag="--seed", cli_type="non_negative_int", help="seed of the sampler and trials",
        check=checks.integer(0, "must be an integer >= 0", none=True),
    ),
    Field(
        "patience", 5, "early-stopping patience (with `restore_best_weights`); `None` = off",
        unset="default",  # None is a value here: no early stopping
        check=checks.integer(
            0, "must be an integer >= 0, or None to turn early stopping off", none=True
        ),
    ),
    Field(
        "min_delta", 0.0, "smallest change that counts as an improvement for early stopping",
        check=checks.number(0, "must be a number >= 0"),
    ),
    Field(
        "lr_schedule", "none",
        "`none`, `plateau`, `cosine`, `step`, `search`, or "
        "`tunecb.Constant()` (as `none`), `tunecb.ReduceOnPlateau(factor, patience, min_lr)`, "
        "`tunecb.Cosine(min_ratio, warmup_epochs)`, `tunecb.StepDecay(every, factor)`, "
        "`tunecb.Searched([...names])`",
        check=checks.schedule,
    ),
    Field(
        "backend", None,
        "the Keras backend: `tensorflow`, `jax` or `torch`; none: Keras' own choice "
        "(`KERAS_BACKEND`, else `~/.keras/keras.json`, else TensorFlow)",
        flag="--backend", choices=BACKENDS,
        help="Keras backend (default: $KERAS_BACKEND, else ~/.keras/keras.json, else tensorflow)",
        check=checks.name_in(
            BACKENDS, "use 'tensorflow', 'jax' or 'torch' (or None: Keras' own choice)",
            aliases={"pytorch": "torch"}, none=True,
        ),
    ),
    Field(
        "verbose", 0, 'Keras `fit` verbosity: `0`, `1`, `2` or `"auto"`',
        flag="--verbose", cli_type="int", choices=(0, 1, 2), help="Keras fit verbosity",
        check=checks.one_of((0, 1, 2, "auto"), "Keras fit verbosity is 0, 1, 2 or 'auto'"),
    ),
    Field(
        "backup_every", 10.0,
        "seconds between backups of a running trial (`0`: every epoch); a trial whose "
        "worker dies resumes from its last backup",
        flag="--backup-every", cli_type="non_negative_float", metavar="S",
        help="back a running trial up at most every S seconds (default 10; 0: every epoch)",
        check=checks.number(0, "seconds between trial backups: a number >= 0"),
    ),
    Field(
        "heartbeat", 30,
        "with a database storage, seconds between heartbeats, so that other machines rerun "
        "the trials of one that died (`0`: off)",
        flag="--heartbeat", cli_type="non_negative_int", metavar="S",
        help="with a database storage: beat every S seconds so that other machines rerun the "
        "trials of one that died (default 30; 0: off)",
        in_study=False,
        check=checks.integer(0, "seconds between heartbeats: an integer >= 0 (0: off)"),
    ),
    Field(
        "reconnect", 180.0,
        "with a database storage, seconds a worker waits for a server that went away (a "
        "restart, a failover) before it stops; its trial runs again",
        flag="--reconnect", cli_type="non_negative_float", metavar="S",
        help="with a database storage: wait up to S seconds for a server that went away (a "
        "restart, a failover) before the worker stops (default 180)",
        in_study=False,
        check=checks.number(0, "seconds to wait for the database: a number >= 0", finite=True),
    ),
    Field(
        "tensorboard", False,
        "`True` writes TensorBoard logs with HParams: [In TensorBoard](#in-tensorboard)",
        flag="--tensorboard", cli_type="switch",
        help="write each trial's TensorBoard logs with HParams under RESULTS/STUDY/tensorboard",
        check=checks.boolean(
            "True writes TensorBoard logs with HParams; False (default) does not"
        ),
    ),
    Field(
        "mlflow", None,
        "an MLflow tracking URI (a server, a folder, `sqlite:///...`): the search as a "
        "parent run, each trial a child run ([In MLflow](#in-mlflow)); none: off",
        flag="--mlflow", metavar="URI",
        help="record the search in MLflow at URI: one parent run, a child run per trial",
        check=checks.text("must be an MLflow tracking URI, e.g. http://127.0.0.1:5000",
                          none=True),
    ),
    Field(
        "mlflow_experiment", None, "the MLflow experiment of `mlflow`; none: the study's name",
        flag="--mlflow-experiment", metavar="NAME",
        help="the MLflow experiment (default: the study's name)",
        check=checks.text("must be an MLflow experiment name", none=True),
    ),
    Field(
        "wandb", None,
        "a W&B project: the search as a group of runs, one per trial and one for the "
        "search ([In W&B](#in-wb)); W&B's `WANDB_MODE`, `WANDB_ENTITY`, `WANDB_DIR` apply; "
        "none: off",
        flag="--wandb", metavar="PROJECT",
        help="record the search in the W&B project PROJECT: a run per trial, grouped by study "
        "(WANDB_MODE=offline: no account needed)",
        check=checks.wandb_project,
    ),
    Field(
        "keep_checkpoints", None,
        "keep the best checkpoints of the K best trials only, deleting the others as the "
        "search runs; none keeps all",
        flag="--keep-checkpoints", cli_type="positive_int", metavar="K",
        help="keep the best checkpoints of the K best trials only; delete the others as the "
        "search runs (default: keep all)",
        check=checks.integer(
            1,
            "keep the checkpoints of the K best trials: a positive integer, or None to keep all",
            none=True,
        ),
    ),
    Field(
        "max_params", None,
        "the most parameters a built model may have: one with more is rejected before it "
        "trains ([Constraints](#constraints)); none: no limit",
        flag="--max-params", cli_type="positive_int", metavar="N",
        help="reject, before it trains, a model with more than N parameters (default: no limit)",
        check=checks.integer(
            1, "must be a positive number of parameters, or None for no limit", none=True
        ),
    ),
    Field(
        "storage", None,
        "any Optuna storage URL or `.journal` path; none: `results/<name>/optuna.journal`",
        flag="--storage", metavar="URL", help="any Optuna storage URL or .journal path",
        in_study=False,
        check=checks.text("must be an Optuna storage URL, e.g. sqlite:///study.db", none=True),
    ),
    Field(
        "results", "results", "the folder that holds `<name>/` (checkpoints, logs, reports)",
        flag="--results", metavar="DIR", help="results folder (default: results)",
        in_study=False,
        check=checks.folder("must be a folder path"),
    ),
    Field(
        "enqueue", None,
        "configurations to run first, once each, counted in `n_trials`: a `.jsonl` file (one "
        "object of parameters per line), a `.csv` (a column per parameter) or a list of dicts",
        flag="--enqueue", metavar="FILE",
        help="run these configurations first (.jsonl: a JSON object of parameters per line; "
        ".csv: a column per parameter)",
        check=configurations.check,
    ),
    Field(
        "warm_start", None,
        "an earlier study's results folder, or a storage URL (`sqlite:///old.db`, "
        "`postgresql://...`, a `.journal` file): its complete and pruned trials that fit this "
        "study's space become prior knowledge for the sampler (not trained, not counted in "
        "`n_trials`)",
        flag="--warm-start", metavar="DIR|URL",
        help="seed the sampler with the finished trials of an earlier study (its results "
        "folder, or a storage URL) that fit this study's space",
        check=checks.text(
            "must be a tunecb results folder (results/digits) or a storage URL", none=True
        ),
    ),
    Field(
        "warm_start_study", None,
        "the study to warm-start from in `warm_start`'s storage; none: the only one in it",
        flag="--warm-start-study", metavar="NAME",
        help="the study to warm-start from, when --warm-start's storage holds several",
        check=checks.text("must be the name of a study in --warm-start's storage", none=True),
    ),
    Field(
        "warm_start_enqueue", 3,
        "queue the K best complete trials of `warm_start` to run (again) first, counted in "
        "`n_trials` (a value outside this study's space is sampled instead); 0: none, prior "
        "knowledge only",
        flag="--warm-start-enqueue", cli_type="non_negative_int", metavar="K",
        help="queue the K best trials of --warm-start to train first; a value outside "
        "this study's space is sampled instead (default 3; 0: none)",
        check=checks.integer(0, "must be a number of trials to queue, 0 or more"),
    ),
    Field(
        "allow_other_file", False,
        "`True` lets this study file continue a study that another study file began (same "
        "`name`); without it that is refused, naming the file that began it",
        flag="--allow-other-file", cli_type="switch",
        help="continue a study of the same name that another study file began",
        in_study=False,
        check=checks.boolean("True continues a study another study file began; False refuses"),
    ),
    Field(
        "steps_per_execution", "auto",
        "batches per call into the backend during `fit` (Keras' `steps_per_execution`); "
        '`"auto"`: 16 on TensorFlow when the model was compiled with 1, no callback has a '
        "per-batch hook, and the calls it saves over the epochs a trial is expected to train "
        "pay for its one-time cost, else as compiled "
        "([What one trial does](#what-one-trial-does)); "
        "`1`: off",
        flag="--steps-per-execution", metavar="N",
        help="batches per call into the backend during fit (default auto: 16 on TensorFlow "
        "when nothing needs per-batch callbacks; 1: off)",
        check=checks.auto_or_integer(1, "is 'auto' or a positive number of batches per call"),
    ),
    Field(
        "graph_optimizer", "auto",
        "TensorFlow's graph optimizer (Grappler) during a trial's `fit`: `\"auto\"`: off on "
        "a CPU for a model of at most 200,000 parameters (it costs about 70 ms of CPU per new "
        "model and measured no faster epochs), else TensorFlow's own; `\"tensorflow\"`: "
        "TensorFlow's own (the process's options as they are); `\"off\"`: off for every "
        "model. Set around the fit and restored after it "
        "([What one trial does](#what-one-trial-does))",
        flag="--graph-optimizer", choices=GRAPH_OPTIMIZER, metavar="auto|tensorflow|off",
        help="TensorFlow's graph optimizer during a trial's fit (default auto: off on a CPU "
        "for models up to 200,000 parameters; tensorflow: TensorFlow's own; off: always off)",
        check=checks.name_in(GRAPH_OPTIMIZER, "use 'auto', 'tensorflow' or 'off'"),
    ),
)  # fmt: skip
FIELDS_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}

# The defaults of every setting but ``name`` (whose default is the study file's stem).
DEFAULTS: dict[str, Any] = {f.name: f.default for f in FIELDS if f.default is not FILE_STEM}


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
