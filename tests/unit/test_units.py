"""Settings, schedules, storage URLs, atomic writes and renderers: no training here."""

from __future__ import annotations

import json

import pytest

from tunecb.errors import ConfigError
from tunecb.reporting.text.table import render
from tunecb.results import atomic_write, atomic_write_text, finite
from tunecb.storage.urls import redact
from tunecb.study import schedules
from tunecb.study.settings import resolve
from tunecb.training.trial_env import trial_seed


def test_cli_overrides_study_file_overrides_defaults():
    s = resolve({"epochs": 7, "n_trials": 3, "monitor": "val_accuracy"}, {"epochs": 2},
                default_name="digits")  # fmt: skip
    got = (s.epochs, s.n_trials, s.name, s.batch_size, s.pruner)
    assert got == (2, 3, "digits", 32, "median")
    assert s.sources["epochs"] == "--epochs" and s.sources["n_trials"] == "n_trials="


@pytest.mark.parametrize(
    ("monitor", "direction"),
    [("val_loss", "minimize"), ("val_accuracy", "maximize"), ("auc", "maximize"),
     ("val_mean_absolute_error", "minimize")],
)  # fmt: skip
def test_direction_is_inferred_from_the_metric_name(monitor, direction):
    assert resolve({"monitor": monitor}, {}, default_name="s").direction == direction


@pytest.mark.parametrize(
    ("settings", "overrides", "message"),
    [
        ({}, {"n_trials": 0}, "--n-trials 0: must be a positive integer"),
        ({"epochs": -1}, {}, "epochs= -1: must be a positive integer"),
        ({"direction": "up"}, {}, "direction= 'up': use 'maximize', 'minimize' or 'auto'"),
        ({}, {"sampler": "annealing"}, "--sampler 'annealing': use one of"),
        ({}, {"pruner": "sometimes"}, "--pruner 'sometimes': use one of"),
        ({"monitor": "score"}, {}, "cannot tell whether monitor 'score'"),
        ({"fit_kwargs": {"epochs": 3}}, {}, "has 'epochs': tunecb sets it"),
        ({"lr_schedule": "exp"}, {}, "lr_schedule='exp' is not a schedule"),
        ({}, {"name": "a/b"}, "--study-name 'a/b'"),
        ({"timeout": 0}, {}, "must be a positive number of seconds"),
    ],
)
def test_bad_settings_name_the_field_the_value_and_the_fix(settings, overrides, message):
    with pytest.raises(ConfigError) as err:
        resolve(settings, overrides, default_name="s", study_path=None)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_pruner_and_sampler_instances_pass_through():
    import optuna

    pruner = optuna.pruners.ThresholdPruner(lower=0.5)
    s = resolve({"pruner": pruner, "sampler": "RANDOM"}, {}, default_name="s")
    assert s.pruner is pruner and s.sampler == "random"


def test_schedules_by_name_and_searched_choices_are_checked():
    assert schedules.parse_schedule(None) == schedules.Constant()
    assert schedules.parse_schedule("plateau") == schedules.ReduceOnPlateau()
    assert schedules.parse_schedule("search").choices == ("none", "plateau", "cosine", "step")
    with pytest.raises(ConfigError, match="'linear' is not a schedule"):
        schedules.Searched(["cosine", "linear"])


def test_storage_passwords_are_redacted():
    assert redact("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert redact("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_trial_seeds_follow_the_study_seed_and_the_trial_number():
    assert trial_seed(0, 1) == trial_seed(0, 1)
    assert len({trial_seed(0, n) for n in range(100)}) == 100
    assert trial_seed(0, 1) != trial_seed(1, 1)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "best.keras"
    target.write_bytes(b"old model")

    def crash(tmp):
        tmp.write_bytes(b"half a mod")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, crash, suffix=".keras")
    assert target.read_bytes() == b"old model"
    assert [p.name for p in tmp_path.iterdir()] == ["best.keras"]
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and oct(target.stat().st_mode & 0o777) != "0o600"


def test_json_has_no_nan():
    assert json.dumps(finite({"a": float("nan"), "b": [float("inf"), 1.0]})) == (
        '{"a": null, "b": [null, 1.0]}'
    )


RECORDS = [
    {"trial": 3, "state": "COMPLETE", "value": 0.97, "checkpoint": "r/3/best.keras"},
    {"trial": 1, "state": "FAIL", "value": None, "checkpoint": None},
]


@pytest.mark.parametrize("fmt", ["table", "csv", "markdown", "json"])
def test_every_format_renders_every_row(fmt):
    text = render(RECORDS, fmt, ["trial", "state", "value", "checkpoint"])
    if fmt == "json":
        assert json.loads(text) == [
            {"trial": 3, "state": "COMPLETE", "value": 0.97, "checkpoint": "r/3/best.keras"},
            {"trial": 1, "state": "FAIL", "value": None, "checkpoint": None},
        ]
    else:
        lines = text.splitlines()
        assert len(lines) == (4 if fmt == "markdown" else 3)
        assert "r/3/best.keras" in lines[-2 if fmt != "csv" else 1]


def test_long_errors_become_one_short_line():
    from tunecb.errors import first_line

    assert first_line("ValueError: bad\n  detail\n  more") == "ValueError: bad"
    assert first_line("x" * 500, 100) == "x" * 97 + "..."
    assert first_line(None) == ""


@pytest.mark.parametrize(
    ("monitor", "direction", "source"),
    [("val_loss", "maximize", {"direction": "maximize"}), ("loss", "max", {"direction": "max"}),
     ("val_mae", "maximize", {"direction": "maximize"}),
     ("val_accuracy", "minimize", {"direction": "minimize"}),
     ("val_auc_1", "minimize", {"direction": "minimize"})],
)  # fmt: skip
def test_a_monitor_optimised_the_way_its_name_says_is_worse_is_refused(monitor, direction, source):
    with pytest.raises(ConfigError) as caught:
        resolve({"monitor": monitor, **source}, {}, default_name="s", study_path="s.py")
    text = str(caught.value)
    shown = {"max": "maximize"}.get(direction, direction)
    assert text.startswith(f"s.py: direction= {shown!r} with monitor {monitor!r}: ")
    assert "worst epoch" in text and "direction='" in text and "name=" in text
    with pytest.raises(ConfigError, match=r"^--direction 'maximize' with monitor 'val_loss'"):
        resolve({"monitor": "val_loss"}, {"direction": "maximize"}, default_name="s")


@pytest.mark.parametrize(
    ("monitor", "direction"),
    [("val_loss", "minimize"), ("val_accuracy", "maximize"), ("my_score", "minimize"),
     ("my_score", "maximize"), ("val_cosine_similarity", "maximize")],
)  # fmt: skip
def test_a_monitor_whose_name_does_not_fix_a_way_takes_either(monitor, direction):
    assert (
        resolve({"monitor": monitor, "direction": direction}, {}, default_name="s").direction
        == direction
    )
