"""The rung rules measured against the Pareto pruner's and not kept (``pareto:hv`` in
``benchmarks/mo_replay.py``): non-dominated rank, then each trial's hypervolume contribution,
the first third kept as Syne Tune's MOASHA counts it. It lives beside the benchmark that
replays it; these tests keep what it was measured as."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tunecb.oracle import pareto

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import mo_replay

UP_DOWN = [True, False]
by_share = mo_replay.survives_by_contribution


def test_by_contribution_the_first_third_of_a_chain_is_kept_as_moasha_counts_it():
    chain = [(1.0 - i / 10, float(i)) for i in range(9)]
    kept = [by_share(v, [w for w in chain if w is not v], UP_DOWN) for v in chain]
    assert kept == [True] * 4 + [False] * 5  # places 0-3 of 9: place / n <= 1/3
    assert by_share((0.1, 99.0), [], UP_DOWN)  # the first at a rung goes on
    assert by_share((0.5, 10.0), [(0.9, 100.0)], UP_DOWN)  # a trade-off: a tie
    assert not by_share((0.5, 200.0), [(0.9, 100.0)], UP_DOWN)


def test_by_contribution_a_front_member_that_adds_little_is_stopped():
    front_five = [(0.5 + i / 10, 10.0 * (i + 1)) for i in range(5)]  # trade-offs: one front
    chance = (0.1, 9.0)  # one parameter fewer than the smallest, far less accurate
    assert pareto.ranks([chance, *front_five], UP_DOWN) == [0] * 6
    assert mo_replay.survives_whole_front(chance, front_five, UP_DOWN)  # keeps a whole front
    assert not by_share(chance, front_five, UP_DOWN)
    assert by_share(front_five[1], [chance, front_five[0], *front_five[2:]], UP_DOWN)


def test_the_rung_order_is_by_rank_then_hypervolume_contribution_whatever_the_scale():
    at_rung = [(0.5, 100.0), (0.1, 9.0), (0.9, 50.0), (0.8, 10.0), (0.85, 20.0)]
    order = mo_replay.selection_order(at_rung, UP_DOWN)
    assert order == [3, 4, 2, 1, 0]  # the front by what each adds (7, 1.5, 0.2, 0.08), then 0
    scaled = [(a, p * 1e4) for a, p in at_rung]
    assert mo_replay.selection_order(scaled, UP_DOWN) == order


def test_equal_vectors_contribute_nothing():
    assert mo_replay.contributions([(0.9, 10.0), (0.9, 10.0), (0.5, 1.0)], UP_DOWN)[:2] == [0, 0]


def test_contributions_of_two_objectives_agree_with_leaving_each_vector_out():
    import random

    rng = random.Random(0)
    for _ in range(100):
        vectors = [(round(rng.random(), 2), float(rng.randint(1, 20))) for _ in range(8)]
        on = pareto.front(vectors, UP_DOWN)
        for case in (vectors, [v for v, f in zip(vectors, on, strict=True) if f] * 2):
            ref = mo_replay.reference_point(case, UP_DOWN)
            total = pareto.hypervolume(case, UP_DOWN, ref)
            left_out = [
                total - pareto.hypervolume([*case[:i], *case[i + 1 :]], UP_DOWN, ref)
                for i in range(len(case))
            ]
            assert mo_replay.contributions(case, UP_DOWN) == pytest.approx(left_out, abs=1e-9)


def _run(task: str, trials: list[tuple[float, list[float]]]) -> dict:
    curves = [{"trial": i, "params": p, "curve": c} for i, (p, c) in enumerate(trials)]
    return {"task": task, "objectives": ["val_accuracy", "params"], "trials": len(trials),
            "runs": {"none": {"curves": curves, "cpu_s": 1.0, "epochs": 1}}}  # fmt: skip


def test_the_pooled_estimate_counts_a_run_made_twice_once_and_the_bound_is_lowest():
    """--pool: larger budgets from unpruned runs in a row; the oracle bound trains the
    fewest epochs at the full hypervolume, and its CPU follows the cost model."""
    a = _run("t", [(10.0, [0.5, 0.6, 0.9]), (20.0, [0.4, 0.5, 0.6]), (30.0, [0.3, 0.3, 0.4])])
    b = _run("t", [(5.0, [0.2, 0.3, 0.5]), (40.0, [0.6, 0.7, 0.8]), (50.0, [0.1, 0.1, 0.2])])
    costs = {"per_trial": 1.0, "per_epoch": 0.5}
    found = mo_replay.pooled([a, b, a], 3, costs, sizes=(1, 2, 3))
    assert {f["trials"] for f in found} == {3, 6}  # a twice is one run: no 3-run pool
    bound = [f for f in found if f["rule"] == "oracle"]
    assert all(f["hv_ratio"] == pytest.approx(1.0) for f in bound)
    for f in bound:
        rest = [g for g in found if (g["trials"], g["start"]) == (f["trials"], f["start"])]
        assert f["epochs_ratio"] == min(g["epochs_ratio"] for g in rest)
    six = next(f for f in bound if f["trials"] == 6)  # front (0.9, 10), (0.5, 5): 3 epochs
    assert six["epochs_ratio"] == pytest.approx(10 / 18)  # the other 4 stop at epoch 1
    assert six["cpu_ratio"] == pytest.approx((6 + 0.5 * 10) / (6 + 0.5 * 18))


def test_the_rule_until_this_round_kept_a_whole_front_the_default_cuts_it():
    """``pareto:fronts`` (whole fronts kept) and ``pareto:crowding`` (a front's ends first)
    against the default: exactly the top third, a front cut by what each member adds."""
    old = mo_replay.survives_whole_front
    chain = [(1.0 - i / 10, float(i)) for i in range(9)]
    for rule in (old, pareto.survives):
        kept = [rule(v, [w for w in chain if w is not v], UP_DOWN) for v in chain]
        assert kept == [True] * 3 + [False] * 6
    front_six = [(0.5, 10.0), (0.7, 20.0), (0.71, 21.0), (0.72, 22.0), (0.8, 40.0), (0.9, 80.0)]
    inner = front_six[2]  # crowded: adds 0.01 (the others 0.4, 0.2, 0.18, 3.2, 0.7)
    others = [v for v in front_six if v is not inner]
    assert old(inner, others, UP_DOWN) and not pareto.survives(inner, others, UP_DOWN)
    assert mo_replay.survives_by_crowding(front_six[0], front_six[1:], UP_DOWN)  # an end
    assert not pareto.survives(front_six[0], front_six[1:], UP_DOWN)  # adds less than 2 others
    assert pareto.survives(front_six[4], [*front_six[:4], front_six[5]], UP_DOWN)  # adds most


def test_a_swapped_rule_is_restored_after_its_search():
    before = (pareto.rung_epochs, pareto.survives)
    with mo_replay.rung_rule("pareto:crowding") as base:
        assert base == "pareto" and pareto.survives is mo_replay.survives_by_crowding
        assert pareto.rung_epochs(20) == [1, 3, 9]
    assert (pareto.rung_epochs, pareto.survives) == before
    with mo_replay.rung_rule("pareto:fronts") as base:
        assert base == "pareto" and pareto.rung_epochs(20) == [2, 6, 18]
        assert pareto.survives is mo_replay.survives_whole_front
    assert (pareto.rung_epochs, pareto.survives) == before
    assert pareto.rung_epochs(20) == [1, 3, 9]


def test_why_through_finds_the_smallest_model_so_far_went_on_at_chance_accuracy():
    """The old rule (crowding) let every new smallest model through, whatever its accuracy;
    the default stops the one at chance accuracy, and the replay of the old run matches it."""
    good = [0.5, 0.7, 0.8, 0.85, 0.9, 0.92, 0.93, 0.94, 0.95]  # 9 epochs: rungs 1 and 3
    chance = [0.1] * 9
    trials = [(5000.0, good), (3000.0, [a - 0.05 for a in good]), (6000.0, [0.3])]
    trials += [(2000.0 - 100 * k, chance) for k in range(4)]  # ever smaller, never learns
    run = [{"trial": i, "params": p, "curve": c} for i, (p, c) in enumerate(trials)]
    found = mo_replay.why_through(run, 9)
    assert found["mismatch"] == 0 and found["through"] == 6
    assert found["smallest"] == 4 and found["stopped_instead"] == 4
    assert found["epochs_saved"] == 4 * 8 and found["new_smallest"] == 6


def test_hindsight_decides_with_every_trial_at_the_rung():
    """``synchronous``: the top third of all trials at each rung, in the default order."""
    run = [{"trial": i, "params": 10.0 + i, "curve": [0.9 - i / 100] * 9} for i in range(9)]
    got = mo_replay.synchronous(run, 9)  # a chain: 3 go past rung 1, 1 past rung 3
    assert got["epochs"] == 6 * 1 + 2 * 3 + 9 and got["points"] == [[0.9, 10.0]]
