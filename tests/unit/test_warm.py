"""Warm start's checks and its seeding of a study (real Optuna studies, no fit)."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution

from tunecb.errors import ConfigError
from tunecb.oracle import attrs, budget, front, warm
from tunecb.storage.urls import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)
X = FloatDistribution(0.0, 1.0)


def _source(tmp_path, monitor="val_loss", direction="minimize", values=(0.1, 0.5, 0.9)):
    root = tmp_path / "old" / "s"
    root.mkdir(parents=True)
    (root / "study.json").write_text(
        json.dumps({"name": "s", "monitor": monitor, "direction": direction})
    )
    study = optuna.create_study(study_name="s", storage=open_storage(None, root))
    for x in values:
        study.add_trial(optuna.trial.create_trial(params={"x": x}, distributions={"x": X},
                                                  value=x))  # fmt: skip
    return root


def test_only_earlier_trials_that_fit_the_new_space_are_added_once_and_not_counted(tmp_path):
    root = _source(tmp_path)
    study = optuna.create_study(direction="minimize")
    assert "warm start from" in warm.prepare(study, str(root), "val_loss", "minimize")[0]
    narrowed = {"x": FloatDistribution(0.3, 1.0), "k": IntDistribution(1, 3)}
    first, second = study.ask(), study.ask()  # two workers' first trials, building at once
    assert warm.seed(study, narrowed, second.number) == []  # the lower one seeds
    study.tell(first, state=optuna.trial.TrialState.FAIL)
    study.tell(second, state=optuna.trial.TrialState.FAIL)
    assert warm.seed(study, narrowed, 0) == [
        f"warm start: 2 of the 3 complete trials of {root} fit this study's space and were "
        "added as prior knowledge"
    ]
    assert warm.seed(study, narrowed, 0) == []  # once per study
    trials = [t for t in study.get_trials() if attrs.WARM_START in t.user_attrs]
    assert [(t.params["x"], t.user_attrs[attrs.WARM_START]["number"]) for t in trials] == [
        (0.5, 1), (0.9, 2)
    ]  # fmt: skip
    assert budget.finished(trials) == 0 and front.best_trial(study) is None
    study.add_trial(optuna.trial.create_trial(params={"x": 0.7}, distributions={"x": X},
                                              value=0.7))  # fmt: skip
    assert front.best_trial(study).params == {"x": 0.7}  # better copies are not this study's best


@pytest.mark.parametrize(
    ("monitor", "direction", "message"),
    [
        ("val_accuracy", "maximize", "optimises val_loss \\(minimize\\), this one val_accuracy"),
        ("val_loss", "maximize", "optimises val_loss \\(minimize\\), this one val_loss \\(max"),
    ],
)
def test_a_study_with_another_monitor_or_direction_is_refused(tmp_path, monitor, direction,
                                                              message):  # fmt: skip
    root = _source(tmp_path)
    with pytest.raises(ConfigError, match=message):
        warm.prepare(optuna.create_study(), str(root), monitor, direction)


def test_a_source_with_no_trial_that_fits_is_read_once(tmp_path):
    study = optuna.create_study(direction="minimize")
    warm.prepare(study, str(_source(tmp_path)), "val_loss", "minimize")
    elsewhere = {"x": FloatDistribution(2.0, 3.0)}
    assert "0 of the 3 complete trials" in warm.seed(study, elsewhere, 0)[0]
    assert warm.seed(study, elsewhere, 1) == []
    assert study.trials == []


def test_a_folder_that_is_not_a_results_folder_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not a tunecb results folder"):
        warm.prepare(optuna.create_study(), str(tmp_path), "val_loss", "minimize")


def test_a_study_warm_started_from_one_folder_refuses_another(tmp_path):
    study = optuna.create_study(direction="minimize")
    warm.prepare(study, str(_source(tmp_path)), "val_loss", "minimize")
    other = _source(tmp_path / "b")
    with pytest.raises(ConfigError, match=r"was warm-started from .*--study-name NEW"):
        warm.prepare(study, str(other), "val_loss", "minimize")
