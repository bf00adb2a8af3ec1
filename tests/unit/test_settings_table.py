"""The settings table (tunecb.study.fields.FIELDS) is the one source of the study settings:
Study(...)'s keywords, the defaults, the `tunecb search` flags and the README's reference."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

from tunecb.cli.parser import CONVERTERS, build_parser
from tunecb.errors import ConfigError
from tunecb.study.declaration import SETTING_NAMES, Study
from tunecb.study.fields import (
    DEFAULTS,
    FIELDS,
    FIELDS_BY_NAME,
    FILE_STEM,
    overrides_from,
    reference_markdown,
)
from tunecb.study.settings import Settings, across_fields, resolve

README = Path(__file__).resolve().parents[2] / "README.md"
HEADING = "### `tunecb.Study(...)` reference"
FLAGGED = [f for f in FIELDS if f.flag]
# A valid value of every flagged setting, as the CLI would pass it.
VALID = {
    "name": "x", "monitor": "val_accuracy", "direction": "max",
    "objectives": "val_accuracy:max,params:min", "epochs": 1, "batch_size": 1,
    "n_trials": 1, "timeout": 1.5, "trial_timeout": 3.0, "epoch_timeout": 2.5,
    "sampler": "random", "pruner": "none", "seed": 0,
    "backend": "jax", "verbose": 1, "backup_every": 0.0, "heartbeat": 0, "reconnect": 0.0,
    "tensorboard": True,
    "keep_checkpoints": 1, "max_params": 1000, "storage": "sqlite:///x.db", "results": "r",
    "mlflow": "http://127.0.0.1:5000", "mlflow_experiment": "e", "wandb": "digits-mlp",
    "enqueue": "first.jsonl", "warm_start": "results/old", "allow_other_file": True,
    "warm_start_study": "old", "warm_start_enqueue": 2, "steps_per_execution": 8,
    "graph_optimizer": "tensorflow",
}  # fmt: skip
# A value each setting refuses, and the one line that says what it takes (as it was worded
# when resolve() was a list of ifs: these texts are what users and scripts see).
BAD = {
    "name": (".x", "a study name is letters, digits, '_', '-' and '.', not first, e.g. 'digits'"),
    "monitor": ("", "name a logged metric, e.g. 'val_accuracy'"),
    "direction": ("up", "use 'maximize', 'minimize' or 'auto'"),
    "objectives": (3, "give a dict of objective names and directions, e.g. objectives="
                   "{'val_accuracy': 'max', 'params': 'min'} (--objectives "
                   "val_accuracy:max,params:min)"),
    "epochs": (None, "must be a positive integer"),
    "batch_size": (0, "must be a positive integer"),
    "fit_kwargs": ([], "must be a dict of model.fit arguments"),
    "n_trials": (True, "must be a positive integer"),
    "timeout": (float("inf"), "must be a positive number of seconds"),
    "trial_timeout": (0, "must be a positive number of seconds"),
    "epoch_timeout": (-1.0, "must be a positive number of seconds"),
    "sampler": ("annealing", "use one of ['tpe', 'random', 'cmaes', 'qmc', 'gp', 'nsgaii', "
                "'bruteforce'] or an optuna.samplers instance"),
    "pruner": (3, "use one of ['median', 'successive_halving', 'hyperband', 'promotion', "
               "'pareto', 'none'] or an optuna.pruners instance"),
    "seed": (-1, "must be an integer >= 0"),
    "patience": (1.5, "must be an integer >= 0, or None to turn early stopping off"),
    "min_delta": (-0.1, "must be a number >= 0"),
    "lr_schedule": ("exp", None),  # the schedule's own text, see below
    "backend": ("theano", "use 'tensorflow', 'jax' or 'torch' (or None: Keras' own choice)"),
    "verbose": (3, "Keras fit verbosity is 0, 1, 2 or 'auto'"),
    "backup_every": (-1, "seconds between trial backups: a number >= 0"),
    "heartbeat": (0.5, "seconds between heartbeats: an integer >= 0 (0: off)"),
    "reconnect": (-1, "seconds to wait for the database: a number >= 0"),
    "tensorboard": (1, "True writes TensorBoard logs with HParams; False (default) does not"),
    "keep_checkpoints": (0, "keep the checkpoints of the K best trials: a positive integer, or "
                         "None to keep all"),
    "mlflow": (" ", "must be an MLflow tracking URI, e.g. http://127.0.0.1:5000"),
    "mlflow_experiment": ("", "must be an MLflow experiment name"),
    "wandb": ("team/digits", "is not a W&B project name (at most 128 characters, none of "
              "/ \\ # ? % :); the entity comes from WANDB_ENTITY"),
    "max_params": (0, "must be a positive number of parameters, or None for no limit"),
    "storage": (" ", "must be an Optuna storage URL, e.g. sqlite:///study.db"),
    "results": ("", "must be a folder path"),
    "enqueue": (
        3, "must be a .jsonl or .csv file of configurations, or a list of dicts of parameters"
    ),
    "warm_start": (3, "must be a tunecb results folder (results/digits) or a storage URL"),
    "warm_start_study": (3, "must be the name of a study in --warm-start's storage"),
    "warm_start_enqueue": (-1, "must be a number of trials to queue, 0 or more"),
    "allow_other_file": ("yes", "True continues a study another study file began; False refuses"),
    "steps_per_execution": (0, "is 'auto' or a positive number of batches per call"),
    "graph_optimizer": ("none", "use 'auto', 'tensorflow' or 'off'"),
}  # fmt: skip


def test_one_row_per_setting_in_the_order_of_the_settings_dataclass():
    names = [f.name for f in FIELDS]
    assert len(set(names)) == len(names) == 37
    assert names == [f.name for f in dataclasses.fields(Settings) if f.name != "sources"]
    assert list(FIELDS_BY_NAME) == names


def test_defaults_come_from_the_table():
    assert {f.name: f.default for f in FIELDS if f.name != "name"} == DEFAULTS
    assert FIELDS_BY_NAME["name"].default is FILE_STEM
    s = resolve({}, {}, default_name="digits")
    assert s.name == "digits"
    assert all(s.sources[f.name] == f"default {f.name}" for f in FIELDS)
    plain = {k: v for k, v in DEFAULTS.items() if k not in ("direction", "lr_schedule")}
    assert {k: getattr(s, k) for k in plain} == {**plain, "results": Path("results")}


def test_overrides_are_named_by_their_flag_from_the_table():
    assert set(VALID) == {f.name for f in FLAGGED}
    s = resolve({}, VALID, default_name="s")
    assert {f.name: s.sources[f.name] for f in FLAGGED} == {f.name: f.flag for f in FLAGGED}
    assert s.sources["patience"] == "default patience"


def test_study_signature_matches_the_table():
    params = inspect.signature(Study.__init__).parameters
    functions = ("self", "data", "model", "callbacks", "constraint")
    settings = [p for p in params.values() if p.name not in functions]
    in_study = [f for f in FIELDS if f.in_study]
    assert [p.name for p in settings] == [f.name for f in in_study] == list(SETTING_NAMES)
    assert {p.name: p.default for p in settings} == {f.name: f.unset for f in in_study}
    assert settings[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in settings[1:])
    for f in in_study:
        assert f"        {f.name}: " in Study.__doc__, f"Study's docstring lacks {f.name}"


def test_study_keeps_only_the_settings_it_was_given():
    assert Study().settings == {}
    assert Study("s", epochs=3, patience=None).settings == {"name": "s", "epochs": 3,
                                                            "patience": None}  # fmt: skip


def test_search_flags_are_made_from_the_table():
    parser = build_parser()
    args = parser.parse_args(["search", "s.py"])
    assert overrides_from(args) == {f.name: None for f in FLAGGED}
    argv = ["search", "s.py", "--study-name", "x", "--epochs", "3", "--verbose", "2",
            "--tensorboard", "--backup-every", "0.5", "--sampler", "random"]  # fmt: skip
    args = parser.parse_args(argv)
    expected = {f.name: None for f in FLAGGED} | {
        "name": "x", "epochs": 3, "verbose": 2, "tensorboard": True, "backup_every": 0.5,
        "sampler": "random",
    }  # fmt: skip
    assert overrides_from(args) == expected == overrides_from(vars(args))
    assert set(CONVERTERS) >= {f.cli_type for f in FIELDS}


def test_search_help_lists_every_flag_with_its_help_text():
    search = build_parser()._subparsers._group_actions[0].choices["search"]
    text = " ".join(search.format_help().split())
    for f in FLAGGED:
        assert f.flag in text and " ".join(f.help.split()) in text, f.name
    for flag in ("--jobs", "--gpus", "--dask", "--quiet", "--log-format", "--worker-memory"):
        assert flag in text


@pytest.mark.parametrize(("argv", "message"), [
    (["--n-trials", "0"], "expected a positive integer, got '0'"),
    (["--verbose", "3"], "invalid choice: 3"),
    (["--backup-every", "-1"], "expected a number >= 0, got '-1'"),
])  # fmt: skip
def test_search_flags_check_their_values(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["search", "s.py", *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_readme_reference_is_the_generated_table():
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(HEADING) + 2
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    assert "\n".join(lines[start:end]) == reference_markdown(), (
        "README.md's Study reference is stale: replace its table with the output of "
        "python -c 'from tunecb.study.fields import reference_markdown as r; print(r())'"
    )


def test_reference_has_a_row_per_setting_and_marks_missing_keywords_and_flags():
    rows = reference_markdown().splitlines()[2:]
    assert len(rows) == len(FIELDS)
    row_of = {f.name: row for f, row in zip(FIELDS, rows, strict=True)}
    assert row_of["fit_kwargs"].startswith("| `fit_kwargs` | — | `{}` |")
    assert row_of["heartbeat"].startswith("| — | `--heartbeat` | `30` |")
    assert row_of["name"].startswith("| `name` | `--study-name` | the file's stem |")


def test_every_setting_carries_its_own_check():
    assert set(BAD) == {f.name for f in FIELDS}
    assert all(callable(f.check) for f in FIELDS)


@pytest.mark.parametrize("name", list(BAD))
def test_each_check_refuses_in_one_line_naming_the_field_and_the_value(name):
    value, expected = BAD[name]
    settings = {"monitor": "val_accuracy", name: value}
    with pytest.raises(ConfigError) as exc:
        resolve(settings, {}, default_name="s", study_path="st.py")
    message = str(exc.value)
    if expected is None:  # the schedule's own text follows the field's name
        assert message.startswith("st.py: lr_schedule= lr_schedule='exp' is not a schedule; ")
    else:
        assert message == f"st.py: {name}= {value!r}: {expected}"


def test_a_flag_is_named_by_the_flag_and_a_bad_file_stem_by_the_file():
    with pytest.raises(ConfigError, match=r"^--epochs 0: must be a positive integer$"):
        resolve({}, {"epochs": 0}, default_name="s")
    with pytest.raises(ConfigError) as exc:
        resolve({}, {}, default_name="my study")
    assert str(exc.value) == (
        "the study file's name 'my study' cannot name the study: a study name is letters, "
        "digits, '_', '-' and '.', not first, e.g. 'digits'; pass --study-name NAME, or set "
        "name= in the study file"
    )


def test_values_are_normalised_by_their_check():
    s = resolve({"monitor": "val_accuracy", "direction": " MAX ", "backend": "PyTorch",
                 "sampler": "RANDOM", "pruner": "asha", "timeout": 5, "min_delta": 0,
                 "results": "out"}, {},
                default_name="s")  # fmt: skip
    assert (s.direction, s.backend, s.sampler, s.pruner) == (
        "maximize", "torch", "random", "successive_halving",
    )  # fmt: skip
    assert (s.timeout, s.min_delta, s.results) == (5.0, 0.0, Path("out"))
    assert type(s.timeout) is float and type(s.min_delta) is float


def test_a_nan_min_delta_is_refused():
    # NaN passed the old "min_delta < 0" test, and early stopping then never saw an improvement.
    with pytest.raises(ConfigError, match="min_delta= nan: must be a number >= 0"):
        resolve({"min_delta": float("nan")}, {}, default_name="s", study_path="st.py")


def test_checks_across_settings_run_after_each_setting_is_checked():
    assert across_fields({"monitor": "val_loss", "direction": "auto"}) == {"direction": "minimize"}
    assert across_fields({"monitor": "score", "direction": "maximize"}) == {"direction": "maximize"}
    with pytest.raises(ConfigError, match="--direction 'maximize' with monitor 'val_loss'"):
        across_fields(
            {"monitor": "val_loss", "direction": "maximize"}, {"direction": "--direction"}
        )
    with pytest.raises(ConfigError, match="cannot tell whether monitor 'score'"):
        across_fields({"monitor": "score", "direction": "auto"})
