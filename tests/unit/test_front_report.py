"""The report of a multi-objective study of 3+ objectives, no fit: a real Optuna study of
three objectives written to a journal with its results folder (tests/synthetic.py), reported
in every format; the front and hypervolume plots for 3, 4 and 5 objectives; the hypervolume
over time, exact and estimated."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import pytest

from tests.synthetic import make_big_study
from tunecb.oracle import pareto
from tunecb.reporting.data.records import StudyRecords, study_records
from tunecb.reporting.plots.front import front_plot, hypervolume_plot
from tunecb.reporting.plots.shared import PlotSkipped
from tunecb.study.objectives import parse_objectives

NAMES = ["val_accuracy", "params", "latency_ms"]


@pytest.fixture(scope="module")
def three(tmp_path_factory) -> Path:
    """A finished 40-trial study of val_accuracy:max, params:min, latency_ms:min."""
    folder = tmp_path_factory.mktemp("mo3") / "big"
    make_big_study(folder, 40, objectives=3)
    return folder


def _front_first(rows: list[dict]) -> None:
    marks = [r["front"] in (True, "True") for r in rows]
    assert any(marks) and not all(marks)
    assert marks == sorted(marks, reverse=True)  # the front first


def test_every_format_has_a_column_per_objective_and_the_front_first(three, cli, monkeypatch):
    result = study_records(three)
    on = {r["trial"] for r in result.records if r["front"]}
    code, out, err = cli("report", three, "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert list(rows[0])[:7] == ["trial", "state", "value", "front", *NAMES]
    _front_first(rows)
    assert {r["trial"] for r in rows if r["front"]} == on
    for r in rows:  # the front: no complete trial is at least as good everywhere
        if r["front"]:
            vector = [r[n] for n in NAMES]
            assert not any(
                pareto.dominates([o[n] for n in NAMES], vector, [True, False, False])
                for o in rows
                if o["state"] == "COMPLETE"
            )
    code, out, _ = cli("report", three, "--format", "csv")
    table = list(csv.DictReader(io.StringIO(out)))
    assert list(table[0])[:8] == ["rank", "trial", "state", "value", "front", *NAMES]
    _front_first(table)
    assert [int(r["trial"]) for r in table] == [r["trial"] for r in rows]
    code, out, _ = cli("report", three, "--format", "markdown")
    header = [c.strip() for c in out.splitlines()[0].strip("|").split("|")]
    assert header[:8] == ["rank", "trial", "state", "value", "front", *NAMES]
    monkeypatch.setenv("COLUMNS", "80")  # the narrow table keeps the front and the objectives
    code, out, _ = cli("report", three)
    head = next(line for line in out.splitlines() if line.startswith("rank"))
    assert head.split()[:7] == ["rank", "trial", "state", "value", "front", *NAMES[1:]]
    assert max(map(len, out.splitlines())) <= 80
    first = next(line for line in out.splitlines() if line.lstrip().startswith("1 "))
    assert first.split()[4] == "True" and first.split()[1] == str(rows[0]["trial"])
    code, out, _ = cli("report", three, "--wide")
    head = next(line for line in out.splitlines() if line.startswith("rank"))
    assert head.split()[:8] == ["rank", "trial", "state", "value", "front", *NAMES]


def test_the_front_and_hypervolume_plots_of_three_objectives(three):
    result = study_records(three)
    fig, caption = front_plot(result)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in panels] == [
        ("val_accuracy (max)", "params (min)"),
        ("val_accuracy (max)", "latency_ms (min)"),
        ("params (min)", "latency_ms (min)"),
    ]
    front = sum(r["front"] for r in result.records)
    assert f"the {front} trials on the Pareto front" in caption and "3 pairs" in caption
    red = panels[0].collections[2]  # pruned, complete, then the study's front
    assert len(red.get_offsets()) == front
    fig, caption = hypervolume_plot(result)
    line = fig.axes[0].lines[0].get_ydata()
    complete = [r for r in result.records if r["state"] == "COMPLETE"]
    assert len(line) == len(complete) and list(line) == sorted(line)  # it only grows
    assert line[0] > 0 and line[-1] < 1 and "(exact)" in caption
    vectors = [[r[n] for n in NAMES] for r in complete]
    ref = pareto.reference(vectors, [True, False, False])
    assert f"val_accuracy {ref[0]:.4g}, params {ref[1]:.4g}" in caption


def _records(n_objectives: int, n: int = 30) -> StudyRecords:
    """Fake records of ``n`` complete trials on ``n_objectives`` minimised objectives."""
    objectives = parse_objectives(",".join(f"o{i}:min" for i in range(n_objectives)))
    rng = random.Random(n_objectives)
    records = [
        {"trial": k, "state": "COMPLETE", **{f"o{i}": rng.random() for i in range(n_objectives)}}
        for k in range(n)
    ]
    vectors = [[r[o.name] for o in objectives] for r in records]
    for r, on in zip(records, pareto.front(vectors, [False] * n_objectives), strict=True):
        r["front"] = on
    return StudyRecords(name="s", direction="minimize", monitor="o0", study_dir=None,
                        records=records, objectives=objectives)  # fmt: skip


def test_four_objectives_get_an_estimated_hypervolume_and_five_the_first_six_pairs():
    four = _records(4)
    fig, caption = hypervolume_plot(four)
    shares = fig.axes[0].lines[0].get_ydata()
    assert "estimated from 20,000 seeded random points" in caption
    names = [o.name for o in four.objectives]
    vectors = [[r[n] for n in names] for r in four.records]
    ref = pareto.reference(vectors, [False] * 4)
    exact = pareto.hypervolume_over(vectors, [False] * 4, ref)
    box = 1.0
    for i, r in enumerate(ref):
        box *= r - min(v[i] for v in vectors)
    assert max(abs(s - e / box) for s, e in zip(shares, exact, strict=True)) < 0.01
    fig, caption = front_plot(_records(5))
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 6
    assert "the first 6 of 10 pairs" in caption


def test_the_hypervolume_plot_needs_two_complete_trials():
    one = _records(3, n=1)
    with pytest.raises(PlotSkipped, match="needs 2 or more complete trials; the study has 1"):
        hypervolume_plot(one)


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_the_hypervolume_over_time_is_each_prefixs_hypervolume(dims):
    rng = random.Random(dims)
    for _ in range(20):
        vectors = [[round(rng.random(), 2) for _ in range(dims)] for _ in range(rng.randint(1, 15))]
        maximize = [rng.random() < 0.5 for _ in range(dims)]
        ref = pareto.reference(vectors, maximize)
        over = pareto.hypervolume_over(vectors, maximize, ref)
        prefixes = [
            pareto.hypervolume(vectors[: k + 1], maximize, ref) for k in range(len(vectors))
        ]
        assert over == pytest.approx(prefixes, rel=1e-12, abs=1e-15)
        estimated = pareto.estimated_over(vectors, maximize, ref, samples=4_000)
        low = [(max if up else min)(v[i] for v in vectors) for i, up in enumerate(maximize)]
        box = 1.0
        for r, b in zip(ref, low, strict=True):
            box *= abs(r - b)
        assert max(abs(e - x) / box for e, x in zip(estimated, over, strict=True)) < 0.03


def test_a_vector_no_better_than_the_reference_adds_nothing():
    assert pareto.hypervolume_over([(5, 5, 5), (1, 1, 1)], [False] * 3, (4, 4, 4)) == [0.0, 27.0]
    assert pareto.estimated_over([(5, 5, 5)], [False] * 3, (4, 4, 4)) == [0.0]
    assert pareto.reference([(0.5, 3.0), (0.5, 1.0)], [True, False]) == [0.5 - 1e-9, 3.2]


def test_an_objective_every_trial_shares_still_gets_a_hypervolume():
    """A parameter count all trials share (a search of the learning rate only): the
    reference point lies just beyond it, however large it is."""
    same = _records(3)
    for r in same.records:
        r["o1"] = 3e8
    fig, caption = hypervolume_plot(same)
    shares = fig.axes[0].lines[0].get_ydata()
    assert 0 < shares[-1] <= 1 and "o1 3e+08" in caption
