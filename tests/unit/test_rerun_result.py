"""What ``tunecb rerun`` calls identical (tunecb.replay.rerun.RerunResult): the monitored
curve, the result and, for a multi-objective trial, every objective at its result epoch.
Plain values; no Keras."""

from __future__ import annotations

from tunecb.cli.replaying import _verdict
from tunecb.replay.rerun import RerunResult


def _result(objectives: dict[str, list[float | None]] | None) -> RerunResult:
    return RerunResult(
        trial=3, monitor="val_accuracy", recorded=0.9, value=0.9, recorded_curve=[0.8, 0.9],
        curve=[0.8, 0.9], objectives=objectives,
    )  # fmt: skip


def test_a_single_objective_rerun_with_the_same_curve_is_identical():
    result = _result(None)
    assert result.identical and result.max_difference == 0


def test_a_multi_objective_rerun_whose_objectives_all_match_is_identical():
    assert _result({"val_accuracy": [0.9, 0.9], "params": [9.0, 9.0]}).identical


def test_an_objective_other_than_the_monitor_that_differs_is_not_identical():
    result = _result({"val_accuracy": [0.9, 0.9], "latency": [1.5, 1.75]})
    assert not result.identical


def test_an_objective_missing_on_one_side_is_not_identical():
    assert not _result({"val_accuracy": [0.9, 0.9], "params": [9.0, None]}).identical


def test_the_verdict_names_the_objective_that_differs():
    result = _result({"val_accuracy": [0.9, 0.9], "latency": [1.5, 1.75]})
    assert result.differing == {"latency": [1.5, 1.75]}
    assert _verdict(result) == (
        "differs: latency 1.75 now, 1.5 recorded; val_accuracy 0.9 as recorded, every epoch alike"
    )
    assert _verdict(_result(None)) == ("identical: val_accuracy 0.9 as recorded, every epoch alike")
