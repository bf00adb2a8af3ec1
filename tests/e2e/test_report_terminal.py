"""`tunecb report` reads well: the table fits an 80-column terminal, `--trial N` shows one
trial in detail, sentences agree with their numbers, and the plots zoom where the good
trials are, with integer ticks for integer hyperparameters."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import optuna
import pytest
from conftest import DEFAULT_SETTINGS, write_study
from synthetic import make_big_study

from tunecb.oracle.ranking import rank_key, trial_record
from tunecb.progress.printers import SearchPrinter
from tunecb.reporting.data.records import StudyRecords, study_records
from tunecb.reporting.html.page import html_report
from tunecb.reporting.plots.curves import curves_plot, history_plot
from tunecb.reporting.plots.study import render_plots, slices_plot

LONG_ERROR = "units and lr disagree: " + "x" * 150
FAILING = f"""
if trial.number == 1:
    raise ValueError({LONG_ERROR!r} + "\\nsecond line of the message")
"""
PLURALS = re.compile(r"\b1 (trials|files|worker processes|rows|hosts|epochs|plots)\b|1\.0 trial")


def lines_of(text: str) -> list[str]:
    return text.rstrip("\n").splitlines()


def assert_fits(text: str, width: int = 80) -> None:
    """Every line fits, but a checkpoint path: it stays whole (the tests' paths are long)."""
    too_long = [line for line in lines_of(text) if len(line) > width and ".keras" not in line]
    assert not too_long, too_long


@pytest.fixture(scope="module")
def failing_study(tmp_path_factory):
    """A real 3-trial search whose trial 1 fails in the model builder with a long,
    two-line error; returns (results folder, what `tunecb search` printed)."""
    from tunecb.cli import main

    folder = tmp_path_factory.mktemp("failing")
    settings = DEFAULT_SETTINGS.replace("epochs=3", "epochs=2")
    path = write_study(folder, name="oops", settings=settings, build_extra=FAILING)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["search", str(path), "--results", str(folder / "results")])
    assert code == 0, printed.getvalue()
    return folder / "results" / "oops", printed.getvalue()


# -- the table -------------------------------------------------------------------------


def test_table_fits_an_80_column_terminal(cli, finished_study, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    best = study_records(finished_study).records[0]
    code, out, err = cli("report", finished_study)
    assert code == 0, err
    assert_fits(out)
    lines = lines_of(out)
    assert "1 worker process" in out and "checkpoints 4 files" in out  # the overview, wrapped
    header = next(i for i, line in enumerate(lines) if line.startswith("rank"))
    assert lines[header].split() == [
        "rank", "trial", "state", "value", "best_ep", "epochs", "stop", "time", "lr", "units",
    ]  # fmt: skip
    rank, trial, state, value, *_ = lines[header + 1].split()
    assert (rank, trial, state) == ("1", str(best["trial"]), "COMPLETE")
    assert value == f"{best['value']:.4f}"  # 4 significant digits (values below 1)
    lr = lines[header + 1].split()[8]
    assert len(lr.lstrip("0.").replace(".", "")) <= 3  # parameters: 3 significant digits
    assert lines[-1] == "1 more column (checkpoint): --wide, or --format csv/json"


def test_wide_shows_every_column_in_full(cli, finished_study, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = cli("report", finished_study, "--wide")
    assert code == 0, err
    header = next(line for line in lines_of(out) if line.startswith("rank"))
    assert "params_lr" in header.split() and header.split()[-1] == "checkpoint"
    assert max(len(line) for line in lines_of(out)) > 80
    assert "more column" not in out and "best.keras" in out


def test_in_a_pipe_the_table_assumes_80_columns(finished_study):
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.run([sys.executable, "-m", "tunecb", "report", str(finished_study)],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert_fits(proc.stdout)
    assert "more column" in proc.stdout


def test_long_parameter_names_are_shortened_and_listed(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    make_big_study(tmp_path / "big", 30, workers=2)
    code, out, err = cli("report", tmp_path / "big")
    assert code == 0, err
    assert_fits(out)
    header = next(line for line in lines_of(out) if line.startswith("rank")).split()
    assert {"act_0", "drop_0", "layers"} <= set(header)
    assert "units_0" in header and "lr" not in header  # lr goes least with the ranking
    assert "short names: act_0 = activation_0, drop_0 = dropout_0" in out
    assert re.search(r"^\d+ more columns: --wide, or --format csv/json$", out, re.M)
    code, out, err = cli("report", tmp_path / "big", "--format", "csv")  # complete, full names
    assert "params_activation_0" in out.splitlines()[0] and "checkpoint" in out.splitlines()[0]


def test_the_error_column_is_clipped(cli, failing_study, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    folder, _ = failing_study
    code, out, err = cli("report", folder)
    assert code == 0, err
    assert_fits(out)
    assert "error" in next(line for line in lines_of(out) if line.startswith("rank")).split()
    failed = next(line for line in lines_of(out) if " FAIL " in line)
    assert re.search(r"  ValueError: \w+…$", failed) and len(failed) <= 80
    rows = json.loads(cli("report", folder, "--format", "json")[1])  # JSON: the whole error
    error = next(r["error"] for r in rows if r["state"] == "FAIL")
    assert LONG_ERROR in error and error.endswith("second line of the message")


# -- one trial ----------------------------------------------------------------------------


def test_one_trial_shows_its_epochs_and_learning_curve(cli, failing_study, tmp_path):
    folder, _ = failing_study
    record = next(r for r in study_records(folder).records if r["trial"] == 0)
    code, out, err = cli("report", folder, "--trial", "0", "--plots", tmp_path / "plots")
    assert code == 0, err
    assert_fits(out)
    lines = lines_of(out)
    assert lines[0].startswith("trial 0 of study 'oops' · rank ")
    assert re.search(rf"^  params +lr = {record['params_lr']!r}$", out, re.M)  # in full
    assert "stopped: completed" in out and str(record["checkpoint"]) in out
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("epoch"))
    assert lines[header].split()[:3] == ["epoch", "val_accuracy", "loss"]
    epochs = [line.split()[0] for line in lines[header + 1 : header + 3]]
    assert epochs == ["1", "2"]
    best_row = lines[header + record["best_epoch"]]
    assert best_row.split()[0] == str(record["best_epoch"]) and "◀ best" in best_row
    assert re.search(r"^  val_accuracy  [▁▂▃▄▅▆▇█]{2}  ", out, re.M)  # the sparkline
    assert (tmp_path / "plots" / "trial_0.png").read_bytes()[:4] == b"\x89PNG"
    assert "wrote the learning curves of trial 0" in err


def test_one_failed_trial_shows_its_whole_error(cli, failing_study, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    folder, _ = failing_study
    code, out, err = cli("report", folder, "--trial", "1")
    assert code == 0, err
    assert_fits(out)
    assert "FAIL" in lines_of(out)[0] and "none: the trial failed" in out
    assert "stopped: failed" in out
    error = out[out.index("  error  ") :]
    assert "x" * 50 in "".join(line.strip() for line in error.splitlines())  # wrapped, whole
    assert "second line of the message" in error
    code, out, err = cli("report", folder, "--trial", "1", "--format", "json")
    assert json.loads(out)["trial"]["error"].endswith("second line of the message")


def test_one_trial_as_json_and_csv(cli, finished_study):
    code, out, err = cli("report", finished_study, "--trial", "2", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["trial"]["trial"] == 2 and [e["epoch"] for e in data["history"]] == [1, 2, 3]
    code, out, err = cli("report", finished_study, "--trial", "2", "--format", "csv")
    assert out.splitlines()[0].startswith("epoch,") and len(out.splitlines()) == 4


def test_an_unknown_trial_is_a_one_line_error(cli, finished_study):
    code, out, err = cli("report", finished_study, "--trial", "99")
    assert code == 2 and out == ""
    assert err.strip() == (
        "tunecb report: error: --trial 99: study 'fin' has no such trial; its trials are 0-3"
    )
    code, _, err = cli("report", finished_study, "--trial", "-1")
    assert code == 2 and "expected an integer >= 0, got '-1'" in err
    code, _, err = cli("report", finished_study, "--trial", "1", "--format", "html")
    assert code == 2 and err.count("\n") == 1 and "drop --trial" in err


# -- sentences -----------------------------------------------------------------------------


def test_a_study_of_one_trial_reads_in_the_singular(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    make_big_study(tmp_path / "one", 1, states=(1.0, 1.0))
    code, out, err = cli("report", tmp_path / "one")
    assert code == 0, err
    assert "1 worker process" in out and "checkpoints 1 file," in out
    result = study_records(tmp_path / "one")
    plots = render_plots(result)
    page = html_report(result, plots)
    timeline = next(p for p in plots if p.name == "timeline").caption
    assert timeline.startswith("1 worker process;")
    assert "1 trial ·" in page and "1 worker process" in page and "one trial at a time" in page
    for text in (out, page, *(p.caption for p in plots)):
        assert not PLURALS.search(text), PLURALS.search(text)


def test_the_search_summary_rounds_the_best_parameters(failing_study):
    _, printed = failing_study
    best = next(line for line in printed.splitlines() if line.startswith("best: trial"))
    lr = re.search(r"params lr=([0-9.e-]+), units=\d+$", best).group(1)
    assert len(lr.lstrip("0.").replace(".", "")) <= 3
    assert "study 3 trials" in printed


def test_search_sentences_in_the_singular(capsys):
    printer = SearchPrinter(print)
    printer.start(SimpleNamespace(
        monitor="val_accuracy", epochs=3, n_trials=1, created=False, name="s", done=1,
        best_value=0.5, best_number=0, notes=[], direction="maximize", storage="x",
    ))  # fmt: skip
    printer.summary(SimpleNamespace(
        ran={"COMPLETE": 1}, stopped_by=None, elapsed_s=1.5, done=1, monitor="val_accuracy",
        best={"number": 0, "value": 0.5, "best_epoch": 2, "params": {"lr": 0.0123456789},
              "checkpoint": None},
        checkpoints=1, checkpoint_bytes=10, keep_checkpoints=None, study_dir="results/s",
    ))  # fmt: skip
    out = capsys.readouterr().out
    assert "1 trial done" in out and "budget 1 trial;" not in out and "budget 1 trial" in out
    assert "study 1 trial\n" in out and "checkpoints: 1 file," in out
    assert "params lr=0.0123\n" in out
    assert not PLURALS.search(out), out


# -- plots ---------------------------------------------------------------------------------


def made_study(pruned_at: float) -> StudyRecords:
    """10 complete trials between 0.90 and 0.97 over 5 epochs, and 3 pruned at epoch 1 at
    ``pruned_at``; integer hyperparameters ``layers`` (1-3) and ``units`` (4-9)."""
    from optuna.distributions import IntDistribution

    study = optuna.create_study(direction="maximize")
    dists = {"layers": IntDistribution(1, 3), "units": IntDistribution(4, 9)}
    for i in range(13):
        complete = i < 10
        value = 0.90 + 0.007 * i if complete else pruned_at
        curve = {e: value - 0.02 * (5 - e) for e in range(1, 6)} if complete else {1: value}
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE if complete else optuna.trial.TrialState.PRUNED,
            value=value, params={"layers": 1 + i % 3, "units": 4 + i % 6}, distributions=dists,
            intermediate_values=curve,
        ))  # fmt: skip
    trials = study.get_trials()
    records = sorted((trial_record(t, None) for t in trials), key=lambda r: rank_key(r, True))
    return StudyRecords(name="z", direction="maximize", monitor="val_accuracy",
                        study_dir=None, records=records, epochs=5,
                        trials={t.number: t for t in trials})  # fmt: skip


def test_plots_zoom_on_the_good_trials():
    result = made_study(pruned_at=0.1)
    fig, caption = history_plot(result)
    low, high = fig.axes[0].get_ylim()
    assert 0.7 < low < 0.9 and 0.963 <= high < 1.0  # 0.1 would have flattened 0.90-0.963
    assert "Axis zoomed" in caption and "3 trials below the range are marked ▼" in caption
    fig, caption = curves_plot(result)
    low, _ = fig.axes[0].get_ylim()
    assert 0.7 < low < 0.9
    assert "Axis zoomed" in caption and "3 trials are below it all along." in caption


def test_plots_do_not_zoom_when_every_trial_is_close():
    fig, caption = history_plot(made_study(pruned_at=0.88))
    assert fig.axes[0].get_ylim()[0] < 0.88 and "zoomed" not in caption


def test_integer_hyperparameters_get_integer_ticks():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig, _ = slices_plot(made_study(pruned_at=0.1))
    FigureCanvasAgg(fig).draw()
    axes = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    for name in ("layers", "units"):
        labels = [t.get_text() for t in axes[name].get_xticklabels() if t.get_text()]
        assert labels and all(re.fullmatch(r"\d+", text) for text in labels), (name, labels)
