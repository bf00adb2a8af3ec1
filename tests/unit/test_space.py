"""The search space a continued study holds, against the one its builder asks now (real
Optuna studies and trials, no fit), and the study-level refusals of a continued study."""

from __future__ import annotations

import optuna
import pytest
from conftest import write_study
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from tunecb.errors import ConfigError
from tunecb.oracle import attrs, space
from tunecb.oracle.opening import open_study
from tunecb.results import StudyDir
from tunecb.storage.urls import open_storage
from tunecb.study.samplers_pruners import make_sampler
from tunecb.study.settings import resolve
from tunecb.study.study_file import load_study_file

LR = FloatDistribution(1e-3, 1e-1, log=True)


def _study(*values: float, sha: str = "sha-0") -> optuna.Study:
    """Trials of ``lr`` run by the study file of hash ``sha``."""
    study = optuna.create_study()
    for lr in values:
        study.add_trial(optuna.trial.create_trial(
            params={"lr": lr}, distributions={"lr": LR}, value=lr,
            user_attrs={attrs.TRIAL_STUDY_SHA: sha},
        ))  # fmt: skip
    return study


@pytest.mark.parametrize(
    "now",
    [
        FloatDistribution(1e-3, 1e-1),  # log dropped
        IntDistribution(1, 10),  # float -> int
        CategoricalDistribution([0.001, 0.01]),  # another kind
    ],
)
def test_an_incompatible_suggest_raises_before_optuna_stores_it(now):
    study = _study(0.01)
    trial = study.ask()
    space.guard(trial)
    with pytest.raises(space.SpaceChanged, match=r"parameter 'lr' was float 0.001..0.1 \(log\)"):
        trial._suggest("lr", now)
    assert study.trials[-1].params == {}  # nothing was stored


def test_a_compatible_change_is_stored_and_described_once_per_study_file():
    study = _study(0.002, 0.05)
    trial = study.ask()
    found = space.guard(trial)
    value = trial.suggest_float("lr", 1e-2, 1e-1, log=True)
    trial.suggest_int("units", 8, 16)
    assert 1e-2 <= value <= 1e-1 and set(found.asked) == {"lr", "units"}
    lines = space.notice(study, found, "sha-1")
    assert lines[1] == (
        "  lr: range 0.001..0.1 (log) is now 0.01..0.1 (log); 1 finished trial falls outside"
    )
    assert lines[2] == "  units: new parameter (the earlier trials have no value for it)"
    assert lines[3].startswith(  # a plain Optuna TPE (this study's): what it does is said
        "  1 finished trial falls outside the new space; this sampler (Optuna's TPE) still "
        "learns from it, truncated to the new range"
    )
    assert space.notice(study, found, "sha-1") == []  # said once
    assert space.notice(study, found, "sha-2")  # a newer file version: said again


def test_with_tunecbs_default_sampler_the_trials_outside_are_said_to_be_ignored():
    study = _study(0.002, 0.003, 0.05)
    study.sampler = make_sampler("tpe", 0)
    trial = study.ask()
    found = space.guard(trial)
    trial.suggest_float("lr", 1e-2, 1e-1, log=True)
    assert space.notice(study, found, "sha-1")[-1].startswith(
        "  2 finished trials fall outside the new space; the sampler ignores them; to learn "
        "only from the trials that fit, in a new study: --study-name NEW --warm-start "
    )


def test_a_conditional_space_of_the_same_study_file_says_nothing():
    study = _study(0.01, sha="sha")
    trial = study.ask()
    found = space.guard(trial)
    trial.suggest_int("units", 8, 16)  # this branch asks no lr
    assert space.notice(study, found, "sha") == []


def test_the_same_space_says_nothing():
    study = _study(0.01)
    trial = study.ask()
    found = space.guard(trial)
    trial.suggest_float("lr", 1e-3, 1e-1, log=True)
    assert space.notice(study, found, "sha") == []


def test_a_first_trial_has_nothing_to_compare_with():
    study = optuna.create_study()
    trial = study.ask()
    found = space.guard(trial)
    trial.suggest_categorical("act", ["relu"])
    assert found.earlier == {} and space.notice(study, found, "sha") == []


def test_outside_counts_finished_trials_only_and_values_of_another_type():
    study = _study(0.002, 0.05)
    study.ask().suggest_float("lr", 1e-3, 1e-1, log=True)  # RUNNING: not counted
    assert space.outside(study.trials, "lr", FloatDistribution(1e-2, 1.0, log=True)) == 1
    assert space.outside(study.trials, "lr", CategoricalDistribution(["a"])) == 2


def _opened(tmp_path, monitor: str = "val_score", direction: str = "maximize"):
    loaded = load_study_file(write_study(tmp_path))
    overrides = {"monitor": monitor, "direction": direction}
    settings = resolve(loaded.study.settings, overrides, default_name=loaded.default_name,
                       study_path=loaded.path)  # fmt: skip
    study_dir = StudyDir(tmp_path / "results" / settings.name)
    study_dir.prepare()
    storage = open_storage(None, study_dir.root)
    return open_study(loaded, settings, study_dir, storage), storage


@pytest.mark.parametrize(
    ("monitor", "direction"), [("val_loss", "minimize"), ("val_score", "minimize")]
)
def test_a_monitor_or_direction_change_with_finished_trials_is_refused(
    tmp_path, monitor, direction
):
    (study, created, _), _ = _opened(tmp_path)
    assert created
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5))
    with pytest.raises(ConfigError, match=r"optimises val_score \(maximize\).*--study-name"):
        _opened(tmp_path, monitor, direction)
