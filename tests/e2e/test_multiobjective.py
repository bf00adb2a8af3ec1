"""Multi-objective searches on real fits: values per objective told to a multi-objective
Optuna study, tunecb's Pareto pruner (in-process and in --jobs workers on the journal), the
front in the report, a front member picked by load_best and retrain, --keep-checkpoints
never deleting a front member."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import tunecb
from tests.conftest import write_study
from tunecb.oracle import attrs as keys
from tunecb.reporting.data.records import BASE_COLUMNS

MO = (
    'objectives={"val_accuracy": "max", "params": "min"}, epochs=3, batch_size=64, '
    "n_trials=5, seed=0, patience=None"
)
BOARD = ", tensorboard=True"  # the HParams tab of a multi-objective study (mo_study only)
# mo_study's data: the template's training and validation splits, and a test split
TEST_SPLIT = """
@study.data
def load():
    x, y = load_digits(return_X_y=True)
    x, y = (x[:600] / 16.0).astype("float32"), y[:600]
    return (x[:400], y[:400]), (x[400:500], y[400:500]), (x[500:], y[500:])
"""


@pytest.fixture(scope="module")
def mo_study(tmp_path_factory) -> Path:
    """A finished 5-trial search on accuracy and parameter count, keeping 2 checkpoints
    (one rung, at epoch 1); its data has a test split."""
    from tunecb.cli import main

    folder = tmp_path_factory.mktemp("mo")
    path = write_study(folder, name="mo", settings=MO + BOARD, extra=TEST_SPLIT)
    results = folder / "results"
    assert main(["search", str(path), "--results", str(results), "--keep-checkpoints", "2"]) == 0
    return results / "mo"


def _study(folder: Path) -> optuna.Study:
    return tunecb.load_study(str(folder))


def test_trials_are_told_one_value_per_objective_at_the_best_epoch(mo_study):
    study = _study(mo_study)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert complete
    for trial in complete:
        record = json.loads((mo_study / "trials" / str(trial.number) / "trial.json").read_text())
        assert trial.values == [record["objectives"]["val_accuracy"], record["n_params"]]
        assert trial.values[0] == trial.user_attrs[keys.BEST_VALUE]  # the monitor's best epoch


def test_the_hparams_tab_has_a_column_per_objective(mo_study):
    from test_tensorboard import scalars

    for trial in _study(mo_study).get_trials(states=(TrialState.COMPLETE,)):
        own = scalars(mo_study / "tensorboard" / f"trial_{trial.number}")
        best = trial.user_attrs[keys.BEST_EPOCH] - 1  # Keras' epoch scalars count from 0
        assert own["best_val_accuracy"] == {best: pytest.approx(trial.values[0])}
        assert own["best_params"] == {best: pytest.approx(trial.values[1])}


def test_the_pareto_pruner_judges_at_its_rungs_from_the_storage(mo_study):
    trials = _study(mo_study).get_trials()
    rung1 = [t for t in trials if f"{keys.PARETO_RUNG}1" in t.user_attrs]
    assert len(rung1) == len(trials)  # every trial reached epoch 1 and stored its values
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "5 trials judged at epoch 1 prune some"
    for trial in pruned:
        assert trial.user_attrs[keys.STOP_REASON] == keys.PRUNED
        assert trial.user_attrs[keys.EPOCHS_RUN] == 1
        assert (mo_study / "trials" / str(trial.number) / "history.csv").is_file()
        assert trial.user_attrs[keys.CHECKPOINT] == f"trials/{trial.number}/best.keras"


def test_the_report_puts_the_front_first_with_a_column_per_objective(mo_study, cli):
    df = tunecb.report(mo_study)
    assert list(df.columns[:5]) == ["trial", "state", "value", "front", "val_accuracy"]
    assert "params" in df.columns and set(BASE_COLUMNS) <= set(df.columns)
    front = df[df["front"]]
    assert len(front) >= 1 and df["front"].tolist() == sorted(df["front"], reverse=True)
    assert (front["state"] == "COMPLETE").all()
    assert front["val_accuracy"].is_monotonic_decreasing  # the front by the monitor
    for fmt in ("json", "csv", "markdown"):
        code, out, err = cli("report", mo_study, "--format", fmt)
        assert code == 0 and "front" in out and "params" in out, err
    rows = json.loads(cli("report", mo_study, "--format", "json")[1])
    assert [r["trial"] for r in rows] == df["trial"].tolist()
    code, out, _ = cli("report", mo_study, "--trial", df["trial"].iloc[0])
    assert code == 0 and "on the Pareto front" in " ".join(out.split())


def test_keep_checkpoints_never_deletes_a_front_members_checkpoint(mo_study):
    df = tunecb.report(mo_study)
    for _, row in df[df["front"]].iterrows():
        assert (mo_study / "trials" / str(row["trial"]) / "best.keras").is_file()
    kept = {int(p.parent.name) for p in mo_study.glob("trials/*/best.keras")}
    assert kept == set(df[df["front"]]["trial"]) | set(df["trial"][:2])


def test_load_best_and_retrain_pick_a_front_member_within_limits(mo_study, cli):
    df = tunecb.report(mo_study)
    front = df[df["front"]]
    limit = float(front["params"].max())
    smallest = front.sort_values("params").iloc[0]
    model = tunecb.load_best(mo_study, best_on="params", within={"val_accuracy": 0.0})
    assert model.count_params() == smallest["params"]
    code, out, err = cli(
        "retrain", mo_study, "--within", f"params={limit:g}", "--epochs", "1", "--train-only"
    )
    assert code == 0, err
    assert out.startswith(f"retrained trial {front.iloc[0]['trial']} ")  # the most accurate
    code, _, err = cli("retrain", mo_study, "--within", "params=1", "--epochs", "1")
    assert code == 2 and "no model on the Pareto front" in err and "params <= 1" in err


def test_rerun_reproduces_a_front_member_that_is_not_the_best(mo_study, cli):
    """A front member chosen as load_best chooses it trains again to its recorded epochs
    and objectives, the Pareto pruner's rung reads (from the other trials) leaving it alone
    as they did in the search."""
    df = tunecb.report(mo_study)
    front = df[df["front"]]
    assert len(front) >= 2, "the fixture's front has a member that is not the best"
    number = int(front.sort_values("params")["trial"].iloc[0])  # the smallest: least accurate
    code, out, err = cli("rerun", mo_study, "--best-on", "params")
    assert code == 0, err
    assert out.startswith(f"trial {number}, val_accuracy per epoch"), out
    assert "identical: val_accuracy" in out, out
    row = front[front["trial"] == number].iloc[0]
    assert f"objectives at the result epoch: val_accuracy {row['val_accuracy']:.6g} as " \
        f"recorded, params {row['params']:.6g} as recorded" in out, out  # fmt: skip
    recorded = json.loads((mo_study / "trials" / str(number) / "rerun.json").read_text())
    assert recorded["identical"] is True and recorded["epochs"] == recorded["recorded_epochs"]
    assert recorded["objectives"]["params"] == [row["params"]] * 2


def test_evaluate_takes_a_front_member_by_choice_number_or_rank(mo_study, cli):
    """evaluate's --best-on/--within pick the member load_best picks, and its checkpoint's
    test metrics are those of the model load_best gives; --top K puts the front first.
    Every front member's checkpoint gives again the objectives it was recorded with."""
    import numpy as np
    from sklearn.datasets import load_digits

    df = tunecb.report(mo_study)
    front = df[df["front"]]
    x, y = load_digits(return_X_y=True)
    x_val, y_val = (x[400:500] / 16.0).astype("float32"), y[400:500]
    for _, row in front.iterrows():
        member = tunecb.load_best(mo_study, trial=int(row["trial"]))
        again = member.evaluate(x_val, y_val, verbose=0, return_dict=True, batch_size=64)
        assert again["accuracy"] == pytest.approx(row["val_accuracy"], abs=1e-6)
        assert member.count_params() == row["params"]
    smallest = int(front.sort_values("params")["trial"].iloc[0])
    model = tunecb.load_best(mo_study, best_on="params")
    expected = model.evaluate((x[500:600] / 16.0).astype("float32"), y[500:600], verbose=0,
                              return_dict=True, batch_size=64)  # fmt: skip
    code, out, err = cli("evaluate", mo_study, "--best-on", "params")
    assert code == 0, err
    assert out.startswith("rank ") and f", trial {smallest} (val_accuracy " in out, out
    assert len(out.splitlines()) == 1
    written = json.loads((mo_study / "trials" / str(smallest) / "test.json").read_text())
    assert written["test"]["test_accuracy"] == pytest.approx(expected["accuracy"])
    assert np.isfinite(written["test"]["test_loss"])
    code, out, err = cli("evaluate", mo_study, "--trial", smallest)
    assert code == 0 and f"trial {smallest} (val_accuracy" in out and "params" in out, err
    code, out, err = cli("evaluate", mo_study, "--top", len(front))
    assert code == 0, err
    shown = [int(line.split("trial ")[1].split(" ")[0]) for line in out.splitlines()]
    assert shown == front["trial"].tolist()  # the front first, by the monitor
    code, _, err = cli("evaluate", mo_study, "--best-on", "params", "--top", "2")
    assert code == 2 and "give the K best trials or one trial" in err
    code, _, err = cli("rerun", mo_study, 0, "--within", "params=1e9")
    assert code == 2 and "--trial 0 and --best-on/--within both pick a trial" in err
    code, _, err = cli("evaluate", mo_study, "--best-on", "flops")
    assert code == 2 and "'flops' is not an objective of" in err


def test_an_objective_the_model_does_not_log_is_a_one_line_error(tmp_path, cli):
    settings = 'objectives={"val_accuracy": "max", "flops": "min"}, epochs=1, n_trials=1'
    code, _, err = cli("search", write_study(tmp_path, settings=settings), "--results", tmp_path)
    assert code == 2, err
    line = err.strip().splitlines()[-1]
    assert "objective 'flops' is neither a metric the model logs" in line
    assert "'params', 'size_mb', 'latency_ms'" in line


@pytest.mark.slow
def test_two_workers_share_the_rungs_through_the_journal(tmp_path, cli):
    settings = MO.replace("n_trials=5", "n_trials=4").replace("epochs=3", "epochs=2")
    path = write_study(tmp_path, settings=settings)
    code, _, err = cli("search", path, "--results", tmp_path / "r", "--jobs", "2")
    assert code == 0, err
    trials = _study(tmp_path / "r" / "tiny").get_trials()
    assert len({t.user_attrs[keys.WORKER] for t in trials}) == 2
    assert all(f"{keys.PARETO_RUNG}1" in t.user_attrs for t in trials)
    for t in trials:
        assert t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        assert t.state == TrialState.PRUNED or len(t.values) == 2


def test_the_html_report_draws_the_front_and_the_hypervolume(mo_study):
    from tunecb.reporting.data.records import study_records
    from tunecb.reporting.html.page import html_report
    from tunecb.reporting.plots.study import render_plots

    result = study_records(mo_study)
    plots = {p.name: p for p in render_plots(result)}
    assert list(plots)[:2] == ["front", "hypervolume"]
    assert plots["front"].png and plots["hypervolume"].png, plots
    assert plots["learning_curves"].png  # from history.csv: nothing is reported to Optuna
    assert plots["importance"].png or "complete trials" in plots["importance"].skipped
    assert "Pareto front" in html_report(result, list(plots.values()))


@pytest.mark.slow
def test_the_pareto_pruner_reads_its_rungs_from_postgresql(tmp_path, cli, postgres_url):
    settings = MO.replace("n_trials=5", "n_trials=4").replace("epochs=3", "epochs=2")
    path = write_study(tmp_path, name="pgmo", settings=settings)
    code, _, err = cli("search", path, "--storage", postgres_url, "--results", tmp_path / "r")
    assert code == 0, err
    study = optuna.load_study(study_name="pgmo", storage=postgres_url)
    assert len(study.directions) == 2 and len(study.trials) == 4
    assert all(f"{keys.PARETO_RUNG}1" in t.user_attrs for t in study.trials)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert all(t.user_attrs[keys.EPOCHS_RUN] == 1 for t in pruned)
    df = tunecb.report(str(tmp_path / "r" / "pgmo"), storage=postgres_url)
    assert df["front"].iloc[0] and "params" in df.columns


def test_continuing_under_other_objectives_is_refused_in_one_line(mo_study, cli):
    study_file = mo_study.parent.parent / "mo.py"
    code, _, err = cli("search", study_file, "--results", mo_study.parent,
                       "--objectives", "val_accuracy:max,size_mb:min")  # fmt: skip
    line = err.strip().splitlines()[-1]
    assert code == 2 and line.endswith(
        "optimises val_accuracy:max,params:min; the study now says "
        "val_accuracy:max,size_mb:min. Use --study-name NEW for a new study, or restore the "
        "old objectives"
    )
