"""When ``steps_per_execution="auto"`` fits several batches per call: only where the calls it
avoids over the epochs a fit is sure to train outweigh the loop's one-time cost. Pure
functions and fakes (no fit): the fits themselves are in ``tests/e2e/test_fast_fit.py``."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import optuna
import pytest

from tunecb.study.samplers_pruners import first_stop, make_pruner
from tunecb.training import fast_fit
from tunecb.training.fast_fit import AUTO_STEPS, calls_avoided, choose, sure_epochs
from tunecb.training.pareto_pruning import ParetoPruning
from tunecb.training.runner import _sure_epochs

PLAIN = {"backend": "tensorflow", "compiled_steps": 1, "eager": False, "custom_step": False,
         "batch_hooks": False, "counted_steps": False}  # fmt: skip


def break_even(weights):
    """The calls avoided that pay for the loop of a model of ``weights`` weight tensors."""
    cost = fast_fit.LOOP_COST + weights * fast_fit.LOOP_COST_PER_WEIGHT
    return cost / fast_fit.CALL_COST


def test_auto_takes_the_loop_only_where_the_calls_it_avoids_pay_for_it():
    for weights in (0, 4, 8, 100):
        calls = int(break_even(weights))
        assert choose("auto", **PLAIN, calls=calls + 1, weights=weights) == AUTO_STEPS
        assert choose("auto", **PLAIN, calls=calls - 1, weights=weights) == 1
    assert break_even(8) > break_even(4)  # a bigger graph costs more to trace in the loop
    assert choose("auto", **PLAIN, calls=0) == 1
    assert choose("auto", **PLAIN) == AUTO_STEPS  # calls unknown: as before the rule


@pytest.mark.parametrize(
    "change",
    [{"backend": "jax"}, {"backend": "torch"}, {"eager": True}, {"custom_step": True},
     {"batch_hooks": True}, {"counted_steps": True}, {"compiled_steps": 4}],
)  # fmt: skip
def test_what_rules_the_loop_out_still_does_however_much_it_would_pay(change):
    settings = {**PLAIN, **change}
    assert choose("auto", **settings, calls=10**9) == settings["compiled_steps"]


@pytest.mark.parametrize("setting", [1, 4, 16, 64])
def test_an_explicit_number_is_honoured_whatever_it_saves(setting):
    assert choose(setting, **{**PLAIN, "backend": "jax", "batch_hooks": True}, calls=0) == setting


def test_calls_avoided_count_whole_calls_of_training_and_validation():
    assert calls_avoided(22, 8, epochs=1) == (22 - 2) + (8 - 1)  # digits at batch 64
    assert calls_avoided(6, 2, epochs=10) == 10 * (5 + 1)  # diabetes: 6 -> 1, 2 -> 1
    assert calls_avoided(16, 0, epochs=3) == 3 * 15
    assert calls_avoided(17, 0, epochs=1) == 15  # 17 batches: 2 calls
    assert calls_avoided(22, 8, epochs=4, validations=2) == 4 * 20 + 2 * 7
    assert calls_avoided(1, 1, epochs=100) == 0


def test_the_epochs_a_fit_is_sure_to_train():
    assert sure_epochs(20) == 20
    assert sure_epochs(20, first_stop=1) == 1
    assert sure_epochs(30, first_stop=6, patience_left=6) == 6
    assert sure_epochs(30, patience_left=3) == 3
    assert sure_epochs(20, 9, first_stop=None) == 11  # resumed at 9, no pruner
    assert sure_epochs(20, 3, first_stop=9, patience_left=2) == 2
    assert sure_epochs(5, 5) == 1  # nothing left: never below one


def test_the_first_epoch_each_pruner_may_stop_a_trial_at():
    assert first_stop(make_pruner("none", 20)) is None
    assert first_stop(make_pruner("pareto", 20)) is None  # judged by tunecb's callback
    assert first_stop(make_pruner("median", 30)) == 6  # warm-up: a fifth of the budget
    assert first_stop(make_pruner("median", 30), done=8) == 9
    assert first_stop(make_pruner("successive_halving", 30)) == 3
    assert first_stop(make_pruner("successive_halving", 30), done=3) == 9
    assert first_stop(make_pruner("hyperband", 30), done=10) == 27
    assert first_stop(make_pruner("promotion", 30)) == 3
    assert first_stop(make_pruner("promotion", 30), done=27) is None  # no rung left
    rate = optuna.pruners.SuccessiveHalvingPruner(min_resource=2, min_early_stopping_rate=1)
    assert first_stop(rate) == 8  # 2 x 4^1
    assert first_stop(optuna.pruners.SuccessiveHalvingPruner()) == 1  # "auto": unknown
    assert first_stop(optuna.pruners.ThresholdPruner(upper=1.0), done=2) == 3  # any epoch


def _callbacks(pruning, patience=None, wait=0):
    early = None if patience is None else SimpleNamespace(patience=patience, wait=wait)
    return SimpleNamespace(pruning=pruning, early_stopping=early)


def _pareto(rungs):
    pruning = ParetoPruning.__new__(ParetoPruning)  # the rungs are all the rule reads
    pruning.rungs = set(rungs)
    return pruning


def test_a_trial_is_sure_of_its_epochs_until_its_first_rung_or_its_patience():
    median = make_pruner("median", 30)
    assert _sure_epochs(30, 0, _callbacks(object(), patience=5), median) == 6
    assert _sure_epochs(30, 0, _callbacks(object()), make_pruner("none", 30)) == 30
    assert _sure_epochs(30, 0, _callbacks(object(), patience=2), None) == 1  # unknown pruner
    assert _sure_epochs(20, 0, _callbacks(_pareto([1, 3, 9])), None) == 1
    assert _sure_epochs(20, 0, _callbacks(_pareto([])), None) == 20  # not pruned: all of it
    assert _sure_epochs(20, 3, _callbacks(_pareto([1, 3, 9])), None) == 6  # resumed at 3
    # resumed with 3 of its patience of 5 used: it may stop 2 epochs on
    assert _sure_epochs(30, 10, _callbacks(object(), patience=5, wait=3), None) == 1
    assert _sure_epochs(30, 10, _callbacks(object(), 5, 3), make_pruner("none", 30)) == 2


class Batches:
    """A stand-in for a tf.data.Dataset: an element spec and a cardinality."""

    element_spec = ()

    def __init__(self, count):
        self.count = count

    def cardinality(self):
        return self.count


def test_the_calls_of_a_fit_from_its_arguments():
    x, y = np.zeros((1347, 64), "float32"), np.zeros(1347)
    val = (np.zeros((450, 64), "float32"), np.zeros(450))
    digits = {"x": x, "y": y, "batch_size": 64, "validation_data": val}
    assert fast_fit._calls(digits, 2) == 2 * 27
    assert fast_fit._calls(digits, None) is None
    assert fast_fit._calls({**digits, "validation_freq": 2}, 4) == 4 * 20 + 2 * 7
    # no batch size: Keras' 32; validation_split: the last tenth of the rows
    split = {"x": x, "y": y, "validation_split": 0.1}
    assert fast_fit._calls(split, 1) == calls_avoided(38, 5, 1)  # 1212 rows, 135 rows
    assert fast_fit._calls({"x": {"a": x, "b": x}, "y": y, "batch_size": 64}, 1) == 20
    assert fast_fit._calls({"x": Batches(100), "validation_data": Batches(20)}, 1) == (
        calls_avoided(100, 20, 1)
    )
    assert fast_fit._calls({"x": Batches(-2)}, 5) is None  # unknown size
    assert fast_fit._calls({"x": Batches(-1)}, 5) is None  # repeated for ever
    assert fast_fit._calls({"x": iter([(x, y)])}, 5) is None  # a generator


def test_a_new_trial_expects_the_mean_epochs_of_the_finished_ones_at_least_its_sure_ones():
    from tunecb.training.fast_fit import expected_epochs

    assert expected_epochs(20, 1, []) == 20  # nothing finished: the first trials run long
    assert expected_epochs(20, 1, [1, 1, 1, 20]) == 6  # 5.75
    assert expected_epochs(20, 1, [1] * 30) == 1
    assert expected_epochs(30, 6, [6, 2]) == 6  # never below what it is sure to train
    assert expected_epochs(10, 1, [40]) == 10  # never above its own budget


def test_the_finished_epochs_are_the_own_complete_and_pruned_trials():
    from optuna.trial import TrialState, create_trial

    from tunecb.oracle.attrs import EPOCHS_RUN, WARM_START
    from tunecb.oracle.pruning import finished_epochs

    study = optuna.create_study()
    for state, epochs, extra in [
        (TrialState.COMPLETE, 20, {}), (TrialState.PRUNED, 1, {}), (TrialState.FAIL, 3, {}),
        (TrialState.COMPLETE, 9, {WARM_START: "old"}), (TrialState.PRUNED, 0, {}),
    ]:  # fmt: skip
        study.add_trial(create_trial(
            state=state, value=0.5 if state == TrialState.COMPLETE else None,
            user_attrs={EPOCHS_RUN: epochs, **extra},
        ))  # fmt: skip
    study.ask()  # running: not finished
    assert sorted(finished_epochs(study)) == [1, 20]


class Runner:
    """What ``TrialRunner._expected_epochs`` reads of its runner."""

    def __init__(self, epochs, setting="auto"):
        self.settings = SimpleNamespace(epochs=epochs, steps_per_execution=setting)


def test_a_trial_expects_what_its_study_trained_and_a_resumed_one_its_sure_epochs():
    from optuna.trial import TrialState, create_trial

    from tunecb.oracle.attrs import EPOCHS_RUN
    from tunecb.training.runner import TrialRunner

    study = optuna.create_study(pruner=make_pruner("none", 20))
    trial = study.ask()
    expect = TrialRunner._expected_epochs
    cbs = _callbacks(_pareto([1, 3, 9]))
    assert expect(Runner(20), trial, cbs, 0) == 20  # nothing finished yet
    for epochs in (1, 1, 1, 9):
        study.add_trial(create_trial(state=TrialState.PRUNED, user_attrs={EPOCHS_RUN: epochs}))
    assert expect(Runner(20), trial, cbs, 0) == 3
    assert expect(Runner(20), trial, cbs, 3) == 6  # resumed at 3: to its rung at 9
    assert expect(Runner(20, setting=16), trial, cbs, 0) == 1  # forced: nothing read
    rerun = optuna.trial.FixedTrial({})  # tunecb rerun: no study, nothing finished
    assert expect(Runner(20), rerun, _callbacks(object(), patience=3), 0) == 20
