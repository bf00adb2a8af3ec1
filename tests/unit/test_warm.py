"""Warm start's checks and its seeding of a study (real Optuna studies, no fit)."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution

from tunecb.errors import ConfigError
from tunecb.oracle import attrs, budget, front, warm
from tunecb.storage.urls import open_storage
from tunecb.study.promotion import rung_values

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
        f"warm start: 2 of the 3 complete trials and 0 of the 0 pruned trials of {root} fit "
        "this study's space and were added as prior knowledge"
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


def _pruned(study: optuna.Study, x: float, values: dict[int, float]) -> None:
    study.add_trial(optuna.trial.create_trial(
        params={"x": x}, distributions={"x": X}, state=optuna.trial.TrialState.PRUNED,
        intermediate_values=values,
    ))  # fmt: skip


def test_pruned_trials_come_with_their_last_intermediate_value_at_their_last_epoch(tmp_path):
    root = _source(tmp_path, values=(0.2,))
    earlier = optuna.load_study(study_name="s", storage=open_storage(None, root))
    _pruned(earlier, 0.4, {1: 0.9, 2: 0.7, 3: 0.6})
    _pruned(earlier, 0.5, {1: float("nan")})  # nothing usable: left out
    _pruned(earlier, 0.6, {})
    study = optuna.create_study(direction="minimize")
    warm.prepare(study, str(root), "val_loss", "minimize")
    note = warm.seed(study, {"x": X}, 0)[0]
    assert note.startswith("warm start: 1 of the 1 complete trials and 1 of the 1 pruned trials")
    (copy,) = study.get_trials(states=(optuna.trial.TrialState.PRUNED,))
    assert copy.params == {"x": 0.4} and copy.intermediate_values == {3: 0.6}
    assert copy.user_attrs[attrs.WARM_START] == {"from": str(root), "number": 1, "epoch": 3}
    assert budget.finished(study.get_trials()) == 0  # prior knowledge, not counted
    assert rung_values(study.get_trials(), 3, False) == {}  # no rival in the promotion pruner


def _sqlite(tmp_path, names=("a", "b"), direction="minimize", monitor="val_loss") -> str:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    for name in names:
        study = optuna.create_study(study_name=name, storage=url, direction=direction)
        study.set_user_attr(attrs.STUDY_MONITOR, monitor)
        study.add_trial(optuna.trial.create_trial(params={"x": 0.25}, distributions={"x": X},
                                                  value=0.25))  # fmt: skip
    return url


def test_a_storage_url_with_several_studies_needs_the_study_named(tmp_path):
    url = _sqlite(tmp_path)
    study = optuna.create_study(direction="minimize")
    with pytest.raises(
        ConfigError,
        match=r"2 studies in this storage \(a, b\); name the one "
        r"to start from with --warm-start-study NAME",
    ):
        warm.prepare(study, url, "val_loss", "minimize")
    with pytest.raises(ConfigError, match=r"no study 'c' in this storage \(a, b\)"):
        warm.prepare(study, url, "val_loss", "minimize", "c")
    assert "(study 'b')" in warm.prepare(study, url, "val_loss", "minimize", "b")[0]
    assert "1 of the 1 complete trials" in warm.seed(study, {"x": X}, 0)[0]
    (copy,) = study.get_trials()
    assert copy.user_attrs[attrs.WARM_START] == {"from": url, "number": 0}


def test_a_journal_file_with_one_study_needs_no_name_and_its_monitor_is_checked(tmp_path):
    path = tmp_path / "old.journal"
    earlier = optuna.create_study(study_name="only", storage=open_storage(str(path), tmp_path))
    earlier.set_user_attr(attrs.STUDY_MONITOR, "val_mae")
    with pytest.raises(ConfigError, match=r"optimises val_mae \(minimize\), this one val_loss"):
        warm.prepare(optuna.create_study(), str(path), "val_loss", "minimize")
    note = warm.prepare(optuna.create_study(), str(path), "val_mae", "minimize")[0]
    assert f"warm start from journal:{path} (study 'only')" in note


@pytest.mark.parametrize("missing", ["sqlite:///{}/none.db", "{}/none.journal"])
def test_a_storage_that_does_not_exist_is_refused_and_not_created(tmp_path, missing):
    source = missing.format(tmp_path)
    with pytest.raises(ConfigError, match=r"--warm-start .*: no such .*; give a tunecb results"):
        warm.prepare(optuna.create_study(), source, "val_loss", "minimize")
    assert list(tmp_path.iterdir()) == []


def test_the_best_k_are_queued_first_as_given_and_a_value_outside_is_sampled(tmp_path):
    from tunecb.oracle import space

    root = _source(tmp_path, values=(0.1, 0.5, 0.9, 0.4))
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(0))
    note = warm.prepare(study, str(root), "val_loss", "minimize", best=2)[0]
    assert note.endswith("its best 2 complete trials queued to run first (a value outside "
                         "this study's space is sampled instead)")  # fmt: skip
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs[attrs.GIVEN] for t in waiting] == [
        {"from": f"--warm-start-enqueue: {root} trial {n}", "params": {"x": x}, "warm": True}
        for n, x in ((0, 0.1), (3, 0.4))
    ]  # queued before any trial ran, with the values as the source holds them
    assert budget.left(study.get_trials(), 5) == 5  # queued, not run: they count when run
    assert warm.prepare(study, str(root), "val_loss", "minimize", best=2)  # continued:
    assert len(study.get_trials()) == 2  # not queued again
    ran = []
    for _ in range(3):
        trial = study.ask()
        found = space.guard(trial)
        x = trial.suggest_float("x", 0.3, 1.0)  # narrowed: 0.1, the best, no longer fits
        texts = space.built(trial, found, "sha", "RESULTS/s")
        study.tell(trial, x)
        ran.append((x, trial.user_attrs.get(attrs.GIVEN, {}).get("dropped"), texts))
    (x0, dropped, texts), second, third = ran
    assert 0.3 <= x0 <= 1.0 and dropped == ["x=0.1 is outside float 0.3..1: sampled instead"]
    assert texts[0].startswith("warm start: 3 of the 4 complete trials")  # the priors: once
    assert texts[1] == f"trial 0: --warm-start-enqueue: {root} trial 0: {dropped[0]}"
    assert second == (0.4, None, [])  # the second best, as given
    assert third[0] not in (0.1, 0.4) and third[1:] == (None, [])  # then the sampler's own


def test_the_pruner_does_not_count_the_copies_as_finished_trials(tmp_path):
    # Copies have no epochs: counted by the median pruner's start-up, they let it prune
    # every trial against the first real one (measured in benchmarks/warmstart.py).
    from tunecb.oracle.pruning import should_prune
    from tunecb.study.samplers_pruners import make_pruner

    root = _source(tmp_path, values=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6))
    study = optuna.create_study(direction="minimize", pruner=make_pruner("median", epochs=5))
    warm.prepare(study, str(root), "val_loss", "minimize")
    warm.seed(study, {"x": X}, 0)
    first = study.ask()
    first.report(0.2, 1)
    study.tell(first, 0.2)
    trial = study.ask()
    trial.report(0.9, 1)
    assert not should_prune(trial)  # one real finished trial: the pruner is still starting


def test_the_reports_dataframe_names_the_warm_start_source_without_its_url(tmp_path):
    from tunecb.reporting.data.records import study_report

    root = _source(tmp_path)
    study = optuna.load_study(study_name="s", storage=open_storage(None, root))
    assert study_report(root).attrs == {}
    mark = {"from": "old/s", "study": "s", "url": "sqlite:///old.db", "added": 2, "queued": 0}
    study.set_user_attr(attrs.WARM_FROM, mark)
    assert study_report(root).attrs["warm_from"] == {
        "from": "old/s", "study": "s", "added": 2, "queued": 0
    }  # fmt: skip
