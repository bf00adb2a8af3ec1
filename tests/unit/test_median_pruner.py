"""tunecb's median rule (best so far against the others' bests by the same epoch) on real
in-memory Optuna studies: no Keras, milliseconds."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from tunecb.oracle.pruning import should_prune
from tunecb.study.median_pruner import EpochMedianPruner, warmup_epochs
from tunecb.study.samplers_pruners import make_pruner

optuna.logging.set_verbosity(optuna.logging.WARNING)


def finished(study, curve, state=TrialState.COMPLETE, attrs=None):
    trial = study.ask()
    for epoch, value in enumerate(curve, 1):
        trial.report(value, epoch)
    for key, value in (attrs or {}).items():
        trial.set_user_attr(key, value)
    if state == TrialState.COMPLETE:
        best = max(curve) if study.direction.name == "MAXIMIZE" else min(curve)
        study.tell(trial, best)
    else:
        study.tell(trial, state=state)


def running(study, curve):
    trial = study.ask()
    for epoch, value in enumerate(curve, 1):
        trial.report(value, epoch)
    return trial


def decisions(study, curve):
    """Whether the running trial would be stopped after each of its epochs."""
    trial, out = study.ask(), []
    for epoch, value in enumerate(curve, 1):
        trial.report(value, epoch)
        out.append(should_prune(trial))
    return out


def test_early_stopped_trials_count_with_their_final_best_where_optunas_rule_sees_none():
    curves = [[0.80, 0.90, 0.91], [0.70, 0.88, 0.89], [0.60, 0.86, 0.87]]  # early-stopped
    mine = [0.50, 0.60, 0.70, 0.80, 0.85]
    ours = optuna.create_study(direction="maximize", pruner=EpochMedianPruner(warmup=2))
    optunas = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    theirs = optuna.create_study(direction="maximize", pruner=optunas)
    for study in (ours, theirs):
        for curve in curves:
            finished(study, curve)
    # epoch 2: 0.60 < median(0.90, 0.88, 0.86): ours stops it; Optuna's stops it at epoch 2
    # too, but from epoch 4 on it compares with nothing (no finished trial reached epoch 4)
    assert decisions(ours, mine)[1:] == [True, True, True, True]
    assert decisions(theirs, mine)[3:] == [False, False]


def test_best_so_far_on_both_sides():
    study = optuna.create_study(direction="maximize", pruner=EpochMedianPruner(warmup=1))
    for curve in ([0.9, 0.5, 0.5], [0.8, 0.5, 0.5], [0.7, 0.5, 0.5]):  # bests 0.9, 0.8, 0.7
        finished(study, curve)
    # at epoch 3 the others' values are all 0.5 (Optuna's rule would keep a 0.6), but their
    # bests by epoch 3 have a median of 0.8
    assert decisions(study, [0.6, 0.6, 0.6]) == [True, True, True]
    assert decisions(study, [0.85, 0.6, 0.6]) == [False, False, False]


def test_pruned_trials_count_only_up_to_where_they_trained():
    study = optuna.create_study(direction="maximize", pruner=EpochMedianPruner(warmup=1))
    finished(study, [0.9, 0.95, 0.96, 0.97])
    finished(study, [0.2, 0.3], TrialState.PRUNED)  # counts at epochs 1-2 only
    finished(study, [0.3, 0.4], TrialState.PRUNED)
    finished(study, [0.5, 0.55, 0.6, 0.65])
    # epoch 2: others 0.95, 0.3, 0.4, 0.55 -> median 0.475: 0.5 goes on;
    # epoch 3: only the two COMPLETE ones count (0.96, 0.6 -> 2 < n_min 3): goes on
    assert decisions(study, [0.45, 0.5, 0.5]) == [False, False, False]


def test_warmup_minimum_and_direction():
    study = optuna.create_study(direction="minimize", pruner=EpochMedianPruner(warmup=3, n_min=3))
    for curve in ([1.0, 0.5, 0.4, 0.3], [1.0, 0.6, 0.5, 0.4], [1.0, 0.7, 0.6, 0.5]):
        finished(study, curve)
    assert decisions(study, [2.0, 2.0, 2.0, 2.0]) == [False, False, True, True]
    few = optuna.create_study(direction="minimize", pruner=EpochMedianPruner(warmup=1, n_min=3))
    finished(few, [0.1, 0.1])
    finished(few, [0.2, 0.2])
    assert decisions(few, [9.0, 9.0]) == [False, False]  # two to compare with: not enough


def test_warm_start_copies_are_not_compared():
    study = optuna.create_study(direction="maximize", pruner=EpochMedianPruner(warmup=1))
    for curve in ([0.9, 0.9], [0.9, 0.9], [0.9, 0.9]):
        finished(study, curve, attrs={"warm_start": "results/old"})
    assert decisions(study, [0.1, 0.1]) == [False, False]


def test_the_default_pruner_is_this_rule_with_a_tenth_of_the_budget_as_warmup():
    pruner = make_pruner("median", 30)
    assert isinstance(pruner, EpochMedianPruner) and pruner.warmup == 3
    assert [warmup_epochs(e) for e in (1, 2, 5, 10, 30, 100)] == [1, 1, 2, 2, 3, 10]
    with pytest.raises(ValueError):
        EpochMedianPruner(warmup=-1)
