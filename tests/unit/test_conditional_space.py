"""The default TPE samples a conditional space (parameters that exist only for some values
of others) jointly: real in-memory Optuna studies, no Keras."""

from __future__ import annotations

import warnings

import optuna
import pytest

from tunecb.study.samplers_pruners import make_sampler, reseed

CONDITIONAL = {f"{p}{i}" for i in (1, 2) for p in "uv"}  # only when n_layers > i


def objective(trial: optuna.Trial) -> float:
    """Per layer two modes, (3, 3) and (-3, -3): a draw of u and v one at a time mixes them."""
    n = trial.suggest_int("n_layers", 1, 3)
    total = (3 - n) * 2.0
    for i in range(n):
        u, v = trial.suggest_float(f"u{i}", -5, 5), trial.suggest_float(f"v{i}", -5, 5)
        total += 0.1 * min((u - 3) ** 2 + (v - 3) ** 2, (u + 3) ** 2 + (v + 3) ** 2)
    return total


def run(sampler: optuna.samplers.BaseSampler, n_trials: int, seed: int) -> tuple:
    """The study after ``n_trials`` asked and told as tunecb's trial loop does (reseeded per
    trial), and the (trial, parameter) pairs the sampler drew one parameter at a time."""
    alone: list[tuple[int, str]] = []
    independent = sampler.sample_independent

    def spy(study, trial, name, distribution):
        alone.append((trial.number, name))
        return independent(study, trial, name, distribution)

    sampler.sample_independent = spy  # the real method, with a record of its calls
    study = optuna.create_study(sampler=sampler)
    for _ in range(n_trials):
        trial = study.ask()
        reseed(sampler, seed, trial.number)
        study.tell(trial, objective(trial))
    return study, alone


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_default_tpe_draws_conditional_parameters_from_the_joint_model(seed):
    study, alone = run(make_sampler("tpe", seed), 40, seed)
    startup = 10  # TPE's random start-up trials draw everything independently
    late = [(n, name) for n, name in alone if n >= startup and name in CONDITIONAL]
    seen = [t for t in study.trials[startup:] if CONDITIONAL & set(t.params)]
    assert len(seen) >= 5  # the conditional layers were explored after the start-up
    assert late == []  # and every draw of theirs came from the joint (grouped) model
    # Its relative search space holds the conditional parameters, not only the shared ones.
    space = study.sampler.infer_relative_search_space(study, study.trials[-1])
    assert set(space) >= CONDITIONAL


def test_without_groups_the_conditional_parameters_were_drawn_one_at_a_time():
    # What the default was before: the test above would fail on it (it can fail).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=0, multivariate=True, constant_liar=True)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # its "sampled independently" warning
    try:
        study, alone = run(sampler, 40, 0)
    finally:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    assert any(n >= 10 and name in CONDITIONAL for n, name in alone)
    assert not CONDITIONAL & set(sampler.infer_relative_search_space(study, study.trials[-1]))
