"""The sampler learns from a configuration that kept killing its process (issue 21).

A trial that FAILs for good as ``killed`` (:mod:`tunecb.oracle.deaths`) is invisible to
TPE, which ignores FAIL trials: it proposed the same region again, and each new proposal
cost up to three more deaths. Now a finished prior trial with the same parameters, marked
infeasible, tells the sampler; like a warm-start prior it is not counted and never the best.

Real Optuna studies in memory with tunecb's TPE sampler; a "killed" trial is buried as a
dead worker's is (:func:`tunecb.oracle.attempts.bury`). No training.
"""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from tunecb.oracle import attempts, attrs, budget, deaths
from tunecb.oracle.deaths import Death
from tunecb.oracle.front import best_trial
from tunecb.study.samplers_pruners import make_sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)
SIZES = ["small", "medium", "large", "huge"]


def _search(n_trials: int, seed: int, direction: str = "minimize") -> optuna.Study:
    """A search where every "huge" model kills its worker (the OOM killer, every time),
    run as the workers run it: the waiting rerun first, each death judged by ``bury``,
    until ``n_trials`` trials count. The others' value depends on ``x`` only."""
    study = optuna.create_study(direction=direction, sampler=make_sampler("tpe", seed))
    for _ in range(20 * n_trials):  # bounded
        if budget.finished(study.get_trials(deepcopy=False)) >= n_trials:
            break
        trial = study.ask()
        size = trial.suggest_categorical("size", SIZES)
        x = trial.suggest_float("x", 0.0, 1.0)
        if size == "huge":
            attempts.bury(study, trial.number, Death("SIGKILL"))
            continue
        value = (x - 0.3) ** 2 + SIZES.index(size) * 0.01
        study.tell(trial, value if direction == "minimize" else -value)
    return study


def _killed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials() if t.user_attrs.get(attrs.STOP_REASON) == attrs.KILLED]


SEEDS = range(4)


def test_after_a_killed_configuration_tpe_rarely_proposes_its_region_again(monkeypatch):
    """Each "huge" configuration costs three deaths. Without the prior, TPE kept proposing
    "huge" (it sees no trial of it at all); with it, far less often."""
    with_prior = [len(_killed(_search(40, seed))) for seed in SEEDS]
    monkeypatch.setattr(deaths, "tell_sampler", lambda study, trial, reason: None)
    without = [len(_killed(_search(40, seed))) for seed in SEEDS]
    assert sum(with_prior) * 3 <= sum(without), (with_prior, without)


def test_the_prior_is_finished_infeasible_marked_and_not_counted():
    study = _search(20, seed=0)
    trials = study.get_trials()
    killed = _killed(study)
    assert killed, "the seed drew no 'huge' trial: the test would prove nothing"
    priors = [t for t in trials if attrs.WARM_START in t.user_attrs]
    assert len(priors) == len(killed)
    for prior, dead in zip(priors, killed, strict=True):
        assert prior.state == TrialState.COMPLETE and prior.params == dead.params
        assert prior.constraints and all(v > 0 for v in prior.constraints.values())
        assert prior.user_attrs[attrs.STOP_REASON] == attrs.WARM_START_REASON
        assert prior.user_attrs[attrs.WARM_START] == {
            "from": attrs.KILLED_PRIOR,
            "number": dead.number,
        }
    # the budget: 20 counted trials, the killed ones among them, the priors not
    assert budget.finished(trials) == 20
    assert budget.left(trials, 20) == 0
    # never the best, whatever its placeholder value
    assert best_trial(study).params["size"] != "huge"


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_the_priors_value_is_the_worst_the_study_had_seen(direction):
    study = _search(20, seed=0, direction=direction)
    trials = study.get_trials()
    priors = [t for t in trials if attrs.WARM_START in t.user_attrs]
    assert priors
    pick = max if direction == "minimize" else min
    for prior in priors:
        own = [
            t.value
            for t in trials[: prior.number]
            if t.state == TrialState.COMPLETE and attrs.WARM_START not in t.user_attrs
        ]
        assert prior.value == (pick(own) if own else 0.0)


def test_the_report_does_not_show_the_prior(tmp_path):
    """``tunecb report`` lists the killed trial with its reason, and no row for the prior."""
    from tunecb.reporting.data.records import study_records
    from tunecb.storage.urls import open_storage

    url = f"journal:{tmp_path / 'optuna.journal'}"
    storage = open_storage(url, None)
    study = optuna.create_study(study_name="s", storage=storage, sampler=make_sampler("tpe", 0))
    study.enqueue_trial({"size": "huge", "x": 0.5})
    for _ in range(deaths.MAX_DEATHS):
        trial = study.ask()
        trial.suggest_categorical("size", SIZES)
        trial.suggest_float("x", 0.0, 1.0)
        attempts.bury(study, trial.number, Death("SIGKILL"))
    records = study_records(storage=url, study_name="s").records
    reasons = [r["stop_reason"] for r in records]
    assert reasons.count("killed") == 1 and len(reasons) == deaths.MAX_DEATHS, reasons
    assert len(study.get_trials()) == deaths.MAX_DEATHS + 1  # the prior is there, not shown


def test_a_sampler_that_cannot_read_constraints_gets_no_prior():
    """Random, QMC, CMA-ES, GP read the values only: a placeholder value would mislead them."""
    study = optuna.create_study(sampler=make_sampler("random", 0))
    study.enqueue_trial({"size": "huge"})
    for _ in range(deaths.MAX_DEATHS):
        trial = study.ask()
        trial.suggest_categorical("size", SIZES)
        attempts.bury(study, trial.number, Death("SIGKILL"))
    assert [t.state for t in study.get_trials()][-1] == TrialState.FAIL
    assert not [t for t in study.get_trials() if attrs.WARM_START in t.user_attrs]
