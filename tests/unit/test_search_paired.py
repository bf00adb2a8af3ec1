"""The paired hand loop of ``benchmarks/search.py --paired`` (``search_loop.py
--tunecb-draws``) draws the parameters tunecb's default sampler draws for the same seed and
trial number, start-up and TPE phase alike: if tunecb's per-trial streams change, the paired
comparison would silently stop being paired."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna

from tunecb.study.samplers_pruners import make_sampler, reseed

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from paired_draws import TunecbDrawsTPE
from search_tasks import suggest


def _draws(study: optuna.Study, seed: int, n: int, tunecb_side: bool) -> list[dict]:
    found = []
    for _ in range(n):
        trial = study.ask()
        if tunecb_side:  # as tunecb.execution.loop does after study.ask()
            reseed(study.sampler, seed, trial.number)
        params = suggest(trial)
        study.tell(trial, params["lr"] * params["units"] + params["dropout"])
        found.append(params)
    return found


def test_the_paired_loop_draws_what_tunecb_draws_start_up_and_tpe_phase():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed, n = 3, 13  # 10 random start-up trials, then TPE's
    tunecb = _draws(optuna.create_study(sampler=make_sampler("tpe", seed)), seed, n, True)
    paired = _draws(optuna.create_study(sampler=TunecbDrawsTPE(seed)), seed, n, False)
    plain = _draws(optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed)), seed, n,
                   False)  # fmt: skip
    assert paired == tunecb
    assert plain != tunecb  # unpaired, each system's seed draws its own start-up
