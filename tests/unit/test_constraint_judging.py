"""Constraints on the built model: how they are judged, told to the sampler (a real in-memory
Optuna study), counted by the run's rules, and refused when given wrong. No Keras."""

from __future__ import annotations

from collections import Counter

import numpy as np
import optuna
import pytest

from tunecb.errors import ConfigError, SearchFailed
from tunecb.execution.events import SearchEnded, TrialFinished
from tunecb.launcher import check_fail_fast, check_some_succeeded
from tunecb.oracle import attempts, attrs
from tunecb.oracle.outcome import TrialOutcome
from tunecb.results import StudyDir
from tunecb.study.declaration import Study
from tunecb.study.samplers_pruners import make_sampler, reseed
from tunecb.study.settings import resolve
from tunecb.training.constraints import judge

LIMIT = 0.3  # the fake model of x is feasible for x <= LIMIT


def outcome(number: int, x: float, violation: float) -> TrialOutcome:
    """What the runner makes of a fake trial: infeasible ones PRUNED before any epoch."""
    infeasible = violation > 0
    return TrialOutcome(
        number=number, state="PRUNED" if infeasible else "COMPLETE",
        value=None if infeasible else -x, best_epoch=None if infeasible else 1,
        epochs_run=0 if infeasible else 1,
        stop_reason=attrs.INFEASIBLE if infeasible else attrs.COMPLETED,
        error="too big" if infeasible else None, checkpoint=None, duration_s=0.01,
        n_params=None, seed=None, lr_schedule="none", constraint=violation,
    )  # fmt: skip


def search(sampler: optuna.samplers.BaseSampler, n_trials: int, seed: int) -> optuna.Study:
    """Minimise -x (the best models are the biggest) where x > LIMIT is infeasible; stored and
    told as tunecb's runner and trial loop do (user attrs, then attempts.tell)."""
    study = optuna.create_study(sampler=sampler)
    for _ in range(n_trials):
        trial = study.ask()
        reseed(sampler, seed, trial.number)
        x = trial.suggest_float("x", 0.0, 1.0)
        result = outcome(trial.number, x, (x - LIMIT) / LIMIT)
        for key, value in result.attrs().items():
            trial.set_user_attr(key, value)
        attempts.tell(study, trial, result)
    return study


def test_the_sampler_receives_each_trials_violation():
    study = search(make_sampler("tpe", 0, attempts.violation), 30, 0)
    for trial in study.trials:  # Optuna's own record of what constraints_func returned
        assert tuple(trial.system_attrs["constraints"]) == (trial.user_attrs[attrs.CONSTRAINT],)
    states = Counter(t.state.name for t in study.trials)
    assert states["PRUNED"] and states["COMPLETE"]  # both kinds were told


def test_a_study_without_constraints_gets_a_sampler_without_them():
    assert attempts.constraints_func(Study(), None) is None
    assert attempts.constraints_func(Study(), 10) is attempts.violation
    assert attempts.constraints_func(Study(constraint=lambda model: True), None) is not None
    study = search(make_sampler("tpe", 0, None), 12, 0)
    assert all("constraints" not in t.system_attrs for t in study.trials)


def test_the_constrained_sampler_learns_to_avoid_the_infeasible_region():
    # 70% of [0, 1] is infeasible: a random search lands there 70% of the time (median 0.72
    # over seeds 0-9). The best models lie on the boundary, so the TPE keeps probing both
    # sides of it: 0.43, 0.37 and 0.50 of trials 30-59 infeasible for seeds 0-2.
    shares = []
    for seed in range(3):
        study = search(make_sampler("tpe", seed, attempts.violation), 60, seed)
        late = [t.params["x"] > LIMIT for t in study.trials[30:]]
        shares.append(sum(late) / len(late))
        assert study.best_value >= -LIMIT  # the best is a feasible one
        assert study.best_value < -0.9 * LIMIT  # near the boundary
    assert max(shares) <= 0.55 and sum(shares) / 3 < 0.5, shares


def test_judging_a_model_by_its_parameter_count_and_a_function():
    assert judge(150, max_params=100, constraint=None, where="s.py").value == 0.5
    assert judge(100, max_params=100, constraint=None, where="s.py").feasible
    both = judge(150, max_params=100, constraint=lambda model: 0.25, where="s.py")
    assert both.value == 0.75 and "150 parameters" in both.why and "returned 0.25" in both.why
    assert judge(50, max_params=None, constraint=lambda m: np.bool_(False), where="s.py").value == 1
    assert judge(50, max_params=None, constraint=lambda m: np.float32(-2), where="s.py").feasible


@pytest.mark.parametrize("answer", [None, "yes", float("nan"), [1]])
def test_a_constraint_answering_neither_a_bool_nor_a_number_is_a_config_error(answer):
    def fits(model):
        return answer

    with pytest.raises(ConfigError) as info:
        judge(50, max_params=None, constraint=fits, where="studies/s.py")
    text = str(info.value)
    assert "fits()" in text and "studies/s.py" in text and "\n" not in text


def test_bad_constraint_settings_are_one_line_errors_naming_the_setting():
    with pytest.raises(ConfigError) as info:
        resolve({"max_params": 0}, {}, default_name="s", study_path="s.py")
    assert str(info.value) == (
        "s.py: max_params= 0: must be a positive number of parameters, or None for no limit"
    )
    with pytest.raises(ConfigError) as info:
        Study(constraint=5)
    assert str(info.value).startswith("constraint=5 is not a function")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError):
        Study().constraint("small")


def _finished(number: int, tally: str) -> TrialFinished:
    state, reason = {
        "FAIL": ("FAIL", attrs.FAILED), "INFEASIBLE": ("PRUNED", attrs.INFEASIBLE),
        "COMPLETE": ("COMPLETE", attrs.COMPLETED),
    }[tally]  # fmt: skip
    result = TrialOutcome(number, state, None, None, 0, reason, "boom", None, 0.1, 9, 1, "none")
    assert result.tally == tally
    return TrialFinished(outcome=result, worker="h:1")


def _run(tallies: list[str], tmp_path) -> Counter[str]:
    ran: Counter[str] = Counter()
    for number, tally in enumerate(tallies):
        event = _finished(number, tally)
        ran[event.outcome.tally] += 1  # as the launcher's relay counts
        check_fail_fast(ran, event, StudyDir(tmp_path))
    return ran


def test_infeasible_trials_are_neither_failures_nor_successes_for_fail_fast(tmp_path):
    with pytest.raises(SearchFailed, match="the first 5 trials all failed"):
        _run(["FAIL", "INFEASIBLE", "FAIL", "INFEASIBLE", "FAIL", "FAIL", "FAIL"], tmp_path)
    _run(["INFEASIBLE"] * 6 + ["FAIL"] * 4, tmp_path)  # four failures: goes on
    _run(["FAIL"] * 4 + ["COMPLETE"] + ["FAIL"] * 3, tmp_path)  # a success came first


def test_a_run_of_failures_and_infeasible_trials_exits_1_one_of_infeasible_only_does_not(
    tmp_path,
):
    def ended(ran: dict[str, int]) -> SearchEnded:
        return SearchEnded("s", str(tmp_path), 1.0, ran, 3, "budget", None, "val_loss", "minimize")

    with pytest.raises(SearchFailed, match="the trial of this run failed"):
        check_some_succeeded(ended({"FAIL": 1, "INFEASIBLE": 2}))
    check_some_succeeded(ended({"INFEASIBLE": 3}))
    check_some_succeeded(ended({"FAIL": 1, "INFEASIBLE": 1, "COMPLETE": 1}))
