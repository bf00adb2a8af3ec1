"""tunecb's default sampler learns only from the trials inside the space asked now (real
Optuna studies and TPE; no fit)."""

from __future__ import annotations

import statistics

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution

from tunecb.study.samplers_pruners import make_sampler
from tunecb.study.space_sampler import InSpaceTPESampler

OLD, NEW = FloatDistribution(0, 10), FloatDistribution(0, 5)


def _continued(sampler: optuna.samplers.BaseSampler, joint: bool) -> optuna.Study:
    """A study whose range of ``x`` narrowed from 0..10 to 0..5: its best earlier trials lie
    near 10 (outside now), the trials inside are best near 1."""
    study = optuna.create_study(sampler=sampler)
    extra = {"u": IntDistribution(1, 4)} if joint else {}
    for i in range(12):
        x = 6 + 4 * i / 11
        study.add_trial(optuna.trial.create_trial(
            params={"x": x, **({"u": 2} if joint else {})},
            distributions={"x": OLD, **extra}, value=(x - 10) ** 2,
        ))  # fmt: skip
    for i in range(12):
        x = 5 * i / 11
        study.add_trial(optuna.trial.create_trial(
            params={"x": x, **({"u": 2} if joint else {})},
            distributions={"x": NEW, **extra}, value=100 + (x - 1) ** 2,
        ))  # fmt: skip
    return study


def _draws(study: optuna.Study, joint: bool, n: int = 8) -> list[float]:
    xs = []
    for _ in range(n):
        trial = study.ask()
        x = trial.suggest_float("x", 0, 5)
        if joint:
            trial.suggest_int("u", 1, 4)
        xs.append(x)
        study.tell(trial, 100 + (x - 1) ** 2)
    return xs


@pytest.mark.parametrize("joint", [False, True], ids=["one-parameter", "multivariate-group"])
def test_trials_outside_a_narrowed_range_do_not_pull_the_draws_to_its_edge(joint):
    # Optuna's own TPE: the good trials outside (near 10) pull every draw to the edge 5.
    plain = optuna.samplers.TPESampler(seed=0, multivariate=True, group=True, constant_liar=True)
    assert statistics.median(_draws(_continued(plain, joint), joint)) > 4.5
    # tunecb's: only the trials inside count, whose best lies near 1.
    ours = make_sampler("tpe", 0)
    assert statistics.median(_draws(_continued(ours, joint), joint)) < 2.5


def test_with_every_trial_inside_it_samples_as_optunas_tpe():
    def study(sampler):
        s = optuna.create_study(sampler=sampler)
        s.optimize(lambda t: (t.suggest_float("x", 0, 5) - 1) ** 2 + t.suggest_int("u", 1, 4),
                   n_trials=14)  # fmt: skip
        return [t.params for t in s.trials]

    kwargs = {"seed": 3, "multivariate": True, "group": True, "constant_liar": True}
    assert study(InSpaceTPESampler(**kwargs)) == study(optuna.samplers.TPESampler(**kwargs))
