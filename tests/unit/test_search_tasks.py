"""The pieces of ``benchmarks/search.py`` behind the figures README reports: the conditional
(``perlayer``) and image (``cnn``) tasks build the model their drawn parameters describe, and
the seed-by-seed verdict counts and tests as it says."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from search_summary import per_seed, sign_test
from search_tasks import TASKS, build, filters, suggest


def _draw(task_name: str, layers: int) -> dict:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    study.enqueue_trial({"layers": layers})
    return suggest(study.ask(), TASKS[task_name])


def test_a_conditional_space_draws_and_builds_one_width_per_layer():
    params = _draw("perlayer", layers=3)
    assert sorted(k for k in params if k.startswith("units")) == ["units_0", "units_1", "units_2"]
    model = build(TASKS["perlayer"], **params)
    widths = [layer.units for layer in model.layers if hasattr(layer, "units")]
    assert widths == [params["units_0"], params["units_1"], params["units_2"], 3]
    shallow = _draw("perlayer", layers=1)
    assert "units_1" not in shallow and "units" not in shallow


def test_the_cnn_task_builds_a_cnn_for_its_images():
    task = TASKS["cnn"]
    params = _draw("cnn", layers=2)
    model = build(task, **params)
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [filters(params["units"])] * 2
    (x, y), (vx, vy) = task.load()
    assert x.shape[1:] == (8, 8, 1) and len(vx) == 450
    out = model.predict(x[:5], verbose=0)
    assert out.shape == (5, 10) and np.allclose(out.sum(axis=1), 1, atol=1e-5)


def test_per_seed_counts_only_common_seeds_in_the_metric_direction():
    mine = [{"seed": 0, "best": 0.40}, {"seed": 1, "best": 0.50}, {"seed": 2, "best": 0.45},
            {"seed": 3, "best": None}, {"seed": 9, "best": 0.1}]  # fmt: skip
    theirs = [{"seed": 0, "best": 0.45}, {"seed": 1, "best": 0.50}, {"seed": 2, "best": 0.40},
              {"seed": 3, "best": 0.3}]  # fmt: skip
    lower = per_seed(mine, theirs, maximize=False)  # a loss: lower is better
    assert (lower["seeds"], lower["better"], lower["level"], lower["worse"]) == (3, 1, 1, 1)
    higher = per_seed(mine, theirs, maximize=True)
    assert (higher["better"], higher["worse"]) == (1, 1)
    assert per_seed(mine, [{"seed": 7, "best": 0.1}], maximize=True) is None


def test_the_sign_test_matches_the_binomial_distribution():
    assert sign_test(5, 0) == 2 / 32  # 0.0625: five of five is not significant at 0.05
    assert sign_test(0, 6) == 2 / 64
    assert sign_test(3, 3) == 1.0
    assert abs(sign_test(18, 22) - 0.6358) < 1e-3  # diabetes against Ray Tune, 40 seeds
