"""The promotion scheduler on a multi-objective study (MOASHA's count): the order at a rung
(non-dominated rank, then the hypervolume each adds to its front), the top ``n // eta``,
the pausing callback on a fake study, and a whole search loop with a fake runner: pauses,
tickets, continuations."""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from tunecb.execution._base import STOP_BUDGET, Limits
from tunecb.execution.loop import run_trials
from tunecb.oracle import attrs, budget, pareto, promotions
from tunecb.oracle.outcome import COMPLETE, PRUNED, TrialOutcome
from tunecb.study.objectives import parse_objectives
from tunecb.study.promotion import PromotionPruner, configuration

optuna.logging.set_verbosity(optuna.logging.WARNING)

UP_DOWN = [True, False]
EPOCHS = 9  # rungs at 1 and 3 (PromotionPruner(1, 9))


# --- the order at a rung ------------------------------------------------------------------


def _brute_ranks(vectors, maximize):
    left, rank, result = set(range(len(vectors))), 0, [None] * len(vectors)
    while left:
        now = {
            i for i in left
            if not any(pareto.dominates(vectors[j], vectors[i], maximize) for j in left)
        }  # fmt: skip
        for i in now:
            result[i] = rank
        left -= now
        rank += 1
    return result


@pytest.mark.parametrize("seed", range(4))
def test_the_numpy_sort_ranks_as_pairwise_dominance_does(seed):
    rng = random.Random(seed)
    dims = 2 + seed % 2
    vectors = [tuple(rng.choice((0, 1, 2, 3)) for _ in range(dims)) for _ in range(60)]
    maximize = [True, False, True][:dims]
    assert pareto.ranks(vectors, maximize) == _brute_ranks(vectors, maximize)


def test_the_order_is_by_rank_then_the_hypervolume_each_adds():
    # Front: (0.9, 10), (0.95, 40), (0.97, 60), (0.99, 90); reference (0.451, 109): they
    # add 13.47, 1.0, 0.6 and 0.38; then the dominated ones by rank.
    at_rung = [(0.95, 40), (0.5, 100), (0.99, 90), (0.9, 10), (0.97, 60), (0.8, 50)]
    order = pareto.promotion_order(at_rung, UP_DOWN)
    assert order == [3, 0, 4, 2, 5, 1]
    assert [pareto.place(i, at_rung, UP_DOWN) for i in order] == list(range(6))


def test_crowding_and_the_order_are_the_same_whatever_the_scale_of_an_objective():
    front = [(0.5, 1e3), (0.6, 4e3), (0.7, 2e5), (0.9, 5e5), (0.95, 9e5)]
    scaled = [(a * 1e4, b / 1e6) for a, b in front]
    assert pareto.crowding(scaled) == pytest.approx(pareto.crowding(front))
    spans = [(0.0, 1000), (0.8, 1001), (0.85, 1002), (0.9, 2000), (0.95, 3000), (0.3, 2500)]
    rescaled = [(a * 1e4, b / 1e6) for a, b in spans]
    assert pareto.promotion_order(rescaled, UP_DOWN) == pareto.promotion_order(spans, UP_DOWN)


def test_crowding_depends_on_the_points_not_their_order_nor_a_constant_objective():
    # 3 objectives, the last the same for all: it marks no end. (Before, the first and
    # last by index got an infinite distance from it: here the two middle points.)
    front = [(2.0, 4.0, 7.0), (1.0, 5.0, 7.0), (4.0, 2.0, 7.0), (3.0, 3.0, 7.0)]
    assert pareto.crowding(front) == [pytest.approx(4 / 3), math.inf, math.inf, 4 / 3]
    # equal vectors get one distance, whatever their places in the list
    with_twins = [(1.0, 5.0), (2.0, 4.0), (2.0, 4.0), (3.0, 3.0), (5.0, 1.0)]
    for shuffled in (with_twins, with_twins[::-1], [with_twins[i] for i in (2, 0, 4, 1, 3)]):
        at = dict(zip(shuffled, pareto.crowding(shuffled), strict=True))
        assert at == dict(zip(with_twins, pareto.crowding(with_twins), strict=True))
    assert pareto.crowding(with_twins)[1:3] == [1.0, 1.0]


def test_only_the_top_n_over_eta_are_promotable_and_the_best_when_nothing_more_comes():
    chain = [(0.9 - k / 10, 10 + k) for k in range(6)]  # each dominates the next
    assert [pareto.promotable(i, chain, UP_DOWN, eta=3) for i in range(6)] == [True, True] + [
        False
    ] * 4
    assert not pareto.promotable(0, chain[:2], UP_DOWN, eta=3)  # fewer than eta: wait
    assert pareto.promotable(0, chain[:2], UP_DOWN, eta=3, last=True)
    assert not pareto.promotable(1, chain[:2], UP_DOWN, eta=3, last=True)


def _at_rung(number: int, vector, state=TrialState.PRUNED, history=None):
    trial = create_trial(
        state=state,
        values=vector if state == TrialState.COMPLETE else None,
        user_attrs={f"{attrs.PARETO_RUNG}1": vector},
        system_attrs={attrs.RETRY_HISTORY: history} if history else {},
    )
    trial.number = number
    return trial


def test_a_configuration_counts_once_and_a_failed_attempt_not_at_all():
    trials = [
        _at_rung(0, [0.9, 10.0]),
        _at_rung(1, [0.9, 10.0], state=TrialState.RUNNING, history=[0]),  # 0's continuation
        _at_rung(2, [0.99, 1.0], state=TrialState.FAIL),  # a dead worker's: rerun later
        _at_rung(3, [0.5, 100.0]),
    ]
    assert promotions.rung_vectors(trials, 1) == {0: [0.9, 10.0], 3: [0.5, 100.0]}
    # Three configurations with the newcomer: the top one (n // 3 = 1) is promotable.
    assert promotions.pareto_promotable(trials, 4, [0.95, 5.0], 1, UP_DOWN, eta=3)
    assert not promotions.pareto_promotable(trials, 4, [0.6, 50.0], 1, UP_DOWN, eta=3)
    assert not promotions.pareto_promotable(trials, 4, [float("nan"), 5.0], 1, UP_DOWN, eta=3)


# --- the pausing callback, on a fake study -----------------------------------------------


def _callback(tmp_path: Path, others: list, accuracy: float, params: float, stopping=False):
    from tunecb.training.pareto_pruning import ParetoPruning

    history = tmp_path / "history.csv"
    with open(history, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["epoch", "loss", "val_accuracy"])
        writer.writeheader()
        writer.writerow({"epoch": 1, "loss": 1.0, "val_accuracy": accuracy})
    study = SimpleNamespace(
        get_trials=lambda deepcopy=False: others, pruner=PromotionPruner(1, EPOCHS)
    )
    trial = SimpleNamespace(number=9, user_attrs={}, system_attrs={}, study=study)
    trial.set_user_attr = trial.user_attrs.__setitem__
    objectives = parse_objectives("val_accuracy:max,params:min")
    cb = ParetoPruning(trial, objectives, {"params": params}, history, epochs=EPOCHS)
    saved: list[int] = []
    cb.on_pause = saved.append
    cb.set_model(SimpleNamespace(stop_training=stopping))
    return cb, saved


OTHERS = [_at_rung(0, [0.9, 10.0]), _at_rung(1, [0.8, 50.0]), _at_rung(2, [0.85, 70.0])]


def test_the_callback_judges_at_the_schedulers_rungs_and_pauses_a_dominated_trial(tmp_path):
    cb, saved = _callback(tmp_path, OTHERS, accuracy=0.5, params=200.0)
    assert cb.rungs == {1, 3}
    cb.on_epoch_end(0, {"loss": 1.0, "val_accuracy": 0.5})
    assert (cb.pruned_at, cb.paused, cb.model.stop_training, saved) == (1, True, True, [1])
    assert cb.trial.user_attrs == {f"{attrs.PARETO_RUNG}1": [0.5, 200.0]}


def test_the_callback_lets_a_promotable_trial_go_on(tmp_path):
    cb, saved = _callback(tmp_path, OTHERS, accuracy=0.95, params=5.0)
    cb.on_epoch_end(0, {"loss": 1.0, "val_accuracy": 0.95})
    assert (cb.pruned_at, cb.paused, cb.model.stop_training, saved) == (None, False, False, [])


def test_a_trial_that_stops_at_the_rung_anyway_is_not_paused(tmp_path):
    cb, saved = _callback(tmp_path, OTHERS, accuracy=0.5, params=200.0, stopping=True)
    cb.on_epoch_end(0, {"loss": 1.0, "val_accuracy": 0.5})
    assert (cb.pruned_at, cb.paused, saved) == (None, False, [])


# --- a whole search loop with a fake runner ----------------------------------------------


class ParetoRunner:
    """Two objectives per configuration, constant over epochs: accuracy ``a`` (max) and
    size ``p`` (min). At each rung it stores them and pauses unless promotable (as
    :class:`ParetoPruning` does); a continuation stores the rungs it carried over and goes
    on from the paused attempt's epoch. Each epoch trained is logged."""

    def __init__(self) -> None:
        self.trained: list[tuple[int, int]] = []

    def run(self, trial: optuna.Trial) -> TrialOutcome:
        a, p = trial.suggest_float("a", 0.0, 1.0), trial.suggest_float("p", 0.0, 1.0)
        system = trial.storage.get_trial_system_attrs(trial._trial_id)
        first = (system.get(attrs.RETRY_HISTORY) or [trial.number])[0]
        start = 0
        if attrs.PROMOTED_FROM in system:
            paused = trial.study.get_trials(deepcopy=False)[system[attrs.PROMOTED_FROM]]
            start = paused.user_attrs[attrs.EPOCHS_RUN]
        pruner = trial.study.pruner
        for epoch in range(1, EPOCHS + 1):
            if epoch > start:
                self.trained.append((first, epoch))
            if epoch not in pruner.rungs:
                continue
            trial.set_user_attr(f"{attrs.PARETO_RUNG}{epoch}", [a, p])
            trials = trial.study.get_trials(deepcopy=False)
            if epoch > start and not promotions.pareto_promotable(
                trials, first, [a, p], epoch, UP_DOWN, pruner.eta
            ):
                return self._told(trial, PRUNED, attrs.PAUSED, a, p, epoch)
        return self._told(trial, COMPLETE, attrs.COMPLETED, a, p, EPOCHS)

    @staticmethod
    def _told(trial, state, reason, a, p, epochs) -> TrialOutcome:
        trial.set_user_attr(attrs.STOP_REASON, reason)  # as the runner records them
        trial.set_user_attr(attrs.EPOCHS_RUN, epochs)
        return TrialOutcome(
            number=trial.number, state=state, value=a, best_epoch=1, epochs_run=epochs,
            stop_reason=reason, error=None, checkpoint=None, duration_s=0.0, n_params=1,
            seed=0, lr_schedule="none", objectives={"a": a, "p": p},
        )  # fmt: skip


class Sink:
    def started(self, number: int) -> None: ...
    def epoch(self, number: int, epoch: int, value: float | None) -> None: ...
    def finished(self, result: TrialOutcome) -> None: ...


def test_a_multi_objective_search_pauses_and_promotes_by_pareto_rank():
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(0),
        pruner=PromotionPruner(1, EPOCHS),
    )  # fmt: skip
    study.set_user_attr("objectives", "a:max,p:min")
    runner = ParetoRunner()
    assert run_trials(study, runner, Limits(n_trials=12), Sink(), seed=0) == STOP_BUDGET
    trials = study.get_trials(deepcopy=False)
    assert budget.finished(trials) == 12  # configurations, not attempts
    assert len(runner.trained) == len(set(runner.trained))  # no epoch trained twice
    assert len(runner.trained) < 12 * EPOCHS / 2  # the paused ones saved most epochs
    continued = [t for t in trials if attrs.PROMOTED_FROM in t.system_attrs]
    assert continued, "some paused configuration became promotable and was resumed"
    vectors = {configuration(t): (t.params["a"], t.params["p"]) for t in trials}
    epochs = {c: max(e for k, e in runner.trained if k == c) for c in vectors}
    # The best at the last rung (by MOASHA's order among all that reached it) trained to
    # the end: promoted at once, or when the budget was spent.
    at_last = promotions.rung_vectors(trials, 3)
    configs = list(at_last)
    assert len(configs) >= 3
    order = pareto.promotion_order([at_last[c] for c in configs], UP_DOWN)
    assert epochs[configs[order[0]]] == EPOCHS, (configs[order[0]], epochs)
    # A configuration dominated by a third of the others never goes past the first rung.
    for c, (a, p) in vectors.items():
        beaten = sum(pareto.dominates(v, (a, p), UP_DOWN) for v in vectors.values())
        if beaten >= 8:
            assert epochs[c] == 1, (c, beaten)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert all(len(t.values) == 2 for t in complete)
    side = promotions._side_id(study, create=False)
    tickets = study._storage.get_all_trials(side, deepcopy=False)
    assert tickets, "trials were paused with a ticket each"
    by_number = {t.number: t for t in trials}
    assert not promotions.promotable(study, tickets, by_number, trials, last=True)
