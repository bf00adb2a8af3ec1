"""The pieces of ``benchmarks/search.py`` behind the figures README reports: the conditional
(``perlayer``) and image (``cnn``) tasks build the model their drawn parameters describe, and
the seed-by-seed verdict counts and tests as it says."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from search_combine import combine, main
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


def test_combine_keeps_only_the_seeds_and_tasks_asked_for_and_the_later_run_of_a_seed():
    def run(system, seed, best):
        return {"system": system, "task": "diabetes", "seed": seed, "best": best,
                "wall_s": 10.0, "epochs_trained": 20, "states": {"COMPLETE": 2},
                "curve": [[5.0, best]], "trials": [], "exit": 0, "error": None}  # fmt: skip

    def result(seeds, runs):
        settings = {"tasks": ["diabetes"], "systems": sorted({r["system"] for r in runs}),
                    "seeds": seeds, "budgets": {"diabetes": {"trials": 2, "epochs": 3}},
                    "patience": 5}  # fmt: skip
        return {"kind": "search", "date": "d", "settings": settings, "runs": runs}

    old = result([0, 1, 2], [run("loop", s, 0.5) for s in (0, 1, 2)] + [run("tunecb", 0, 0.6)])
    new = result([0], [run("tunecb", 0, 0.4), run("tunecb[v]", 0, 0.3)])
    both = combine([old, new], later_wins=True, seeds=[0])
    assert both["settings"]["seeds"] == [0]
    assert sorted((r["system"], r["seed"], r["best"]) for r in both["runs"]) == [
        ("loop", 0, 0.5), ("tunecb", 0, 0.4), ("tunecb[v]", 0, 0.3)]  # fmt: skip
    assert len(combine([old], seeds=None)["runs"]) == 4
    # tasks={i: [...]}: of the second file only another task's runs, so none replace the first's
    kept = combine([old, new], later_wins=True, seeds=[0], tasks={1: ["digits"]})
    assert sorted((r["system"], r["best"]) for r in kept["runs"]) == [
        ("loop", 0.5), ("tunecb", 0.6)]  # fmt: skip


def test_combine_names_a_task_its_file_did_not_run(tmp_path, capsys):
    part = tmp_path / "part.json"
    settings = {"tasks": ["cnn"], "systems": ["loop"], "seeds": [5],
                "budgets": {"cnn": {"trials": 2, "epochs": 3}}, "patience": 5}  # fmt: skip
    part.write_text(json.dumps({"kind": "search", "settings": settings, "runs": []}))
    with pytest.raises(SystemExit) as exit_:
        main([f"{part}:cnm", "--json", str(tmp_path / "out.json")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "ran no task 'cnm'; it ran cnn" in err and "Traceback" not in err
    assert not (tmp_path / "out.json").exists()
