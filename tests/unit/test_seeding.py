"""Seeding: a stream per trial number, so nothing replays and a seeded search reproduces."""

from __future__ import annotations

import optuna
import pytest

from tunecb.study.samplers_pruners import make_sampler, reseed

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _draw(study: optuna.Study, seed: int | None) -> dict:
    trial = study.ask()
    reseed(study.sampler, seed, trial.number)
    params = {
        "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
        "units": trial.suggest_int("units", 2, 256),
    }
    study.tell(trial, params["lr"])
    return params


@pytest.mark.parametrize("sampler", ["tpe", "random", "qmc", "nsgaii"])
def test_two_workers_with_one_seed_on_one_study_never_propose_the_same_parameters(sampler):
    storage = optuna.storages.InMemoryStorage()
    first = optuna.create_study(storage=storage, study_name="s", sampler=make_sampler(sampler, 0))
    second = optuna.load_study(storage=storage, study_name="s", sampler=make_sampler(sampler, 0))
    drawn = [_draw(study, 0) for _ in range(8) for study in (first, second)]
    assert len({tuple(p.items()) for p in drawn}) == len(drawn)


def test_a_rerun_of_a_seeded_study_does_not_replay_its_first_run():
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="s", sampler=make_sampler("tpe", 0))
    first_run = [_draw(study, 0) for _ in range(4)]
    again = optuna.load_study(storage=storage, study_name="s", sampler=make_sampler("tpe", 0))
    second_run = [_draw(again, 0) for _ in range(4)]
    assert not {tuple(p.items()) for p in first_run} & {tuple(p.items()) for p in second_run}


def test_a_seeded_search_in_one_process_reproduces_exactly():
    def run() -> list[dict]:
        study = optuna.create_study(sampler=make_sampler("tpe", 3), study_name="s")
        return [_draw(study, 3) for _ in range(14)]  # past TPE's 10 random start-up trials

    assert run() == run()


def test_a_user_sampler_instance_is_kept_and_reseeded_per_trial():
    import copy

    sampler = optuna.samplers.TPESampler(seed=1)
    assert make_sampler(sampler, 0) is sampler
    fresh = copy.deepcopy(sampler)
    first = _draw(optuna.create_study(sampler=sampler, study_name="a"), 0)
    _draw(optuna.create_study(sampler=sampler, study_name="b"), 0)  # its state moves on
    # Trial 0 of another study: the instance's advanced state does not matter, only
    # (seed, trial number) does, and the unused copy draws the same.
    again = _draw(optuna.create_study(sampler=sampler, study_name="c"), 0)
    assert again == first == _draw(optuna.create_study(sampler=fresh, study_name="d"), 0)
