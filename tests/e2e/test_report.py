"""`tunecb report` and `tunecb.report` / `tunecb.load_best` on a finished real search."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys

import optuna
import pytest

import tunecb
from tunecb.reporting.data.records import BASE_COLUMNS

PARAMS = ["params_lr", "params_units"]


def test_report_dataframe_is_ranked_by_the_objective(finished_study):
    df = tunecb.report(finished_study)
    assert list(df.columns) == [*BASE_COLUMNS, *PARAMS, "checkpoint"]
    assert len(df) == 4 and list(df.index) == [1, 2, 3, 4]
    assert df["value"].is_monotonic_decreasing  # val_accuracy: maximize
    assert set(df["state"]) == {"COMPLETE"} and df["checkpoint"].str.endswith("best.keras").all()
    assert tunecb.report(finished_study, top=2)["trial"].tolist() == df["trial"][:2].tolist()


@pytest.mark.parametrize("fmt", ["table", "csv", "markdown", "json"])
def test_every_report_format(cli, finished_study, fmt, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: every column fits on one line
    df = tunecb.report(finished_study)
    code, out, err = cli("report", finished_study, "--format", fmt)
    assert code == 0, err
    if fmt == "json":
        rows = json.loads(out)
        assert [r["trial"] for r in rows] == df["trial"].tolist()
        assert set(rows[0]) == {*BASE_COLUMNS, *PARAMS, "checkpoint"}
        assert rows[0]["value"] == pytest.approx(df["value"].iloc[0])
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        assert [int(r["trial"]) for r in rows] == df["trial"].tolist()
        assert float(rows[0]["value"]) == pytest.approx(df["value"].iloc[0])
    elif fmt == "markdown":
        lines = out.strip().splitlines()
        assert lines[0].startswith("| rank | trial | state | value |") and len(lines) == 6
    else:
        lines = out.strip().splitlines()
        assert lines[0].startswith("study 'fin': val_accuracy (maximize); 4 complete")
        # 4 trials x 3 epochs, no pruning or early stopping, run in the launcher
        assert lines[1].startswith("trained 12 of 12 epochs (100%) · ")
        assert re.search(
            r"· 1 worker process · on tensorflow [0-9.]+ · checkpoints 4 files, [0-9.]+ KiB$",
            lines[1],
        )
        assert lines[2].split()[:4] == ["rank", "trial", "state", "value"] and len(lines) == 7


def test_report_top_and_output_file(cli, finished_study, tmp_path):
    target = tmp_path / "out" / "top.json"
    code, out, err = cli("report", finished_study, "--top", "2", "--format", "json",
                         "--output", target)  # fmt: skip
    assert code == 0 and out == "" and "wrote 2 trials" in err
    assert len(json.loads(target.read_text())) == 2


def test_report_on_a_study_tunecb_did_not_create(cli, tmp_path):
    url = f"sqlite:///{tmp_path / 'foreign.db'}"
    study = optuna.create_study(study_name="foreign", storage=url, direction="minimize")
    for x in (3.0, 1.0, 2.0):
        trial = study.ask()
        trial.suggest_float("x", 0, 5)
        trial.report(x * 2, step=1)
        trial.report(x, step=2)
        study.tell(trial, x)
    pruned = study.ask()
    pruned.report(9.0, step=1)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    code, out, err = cli("report", "--storage", url, "--study-name", "foreign", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["value"] for r in rows] == [1.0, 2.0, 3.0, 9.0]
    assert [r["state"] for r in rows] == ["COMPLETE"] * 3 + ["PRUNED"]
    assert all(r["checkpoint"] is None for r in rows) and rows[0]["epochs"] == 2
    assert rows[0]["stop_reason"] == "completed" and rows[-1]["stop_reason"] == "pruned"


def test_load_best_evaluates_to_the_recorded_value(finished_study):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    xv, yv = (x[400:500] / 16.0).astype("float32"), y[400:500]
    df = tunecb.report(finished_study)
    for rank in (1, 2):
        model = tunecb.load_best(finished_study, rank=rank)
        got = model.evaluate(xv, yv, batch_size=64, verbose=0, return_dict=True)["accuracy"]
        assert got == pytest.approx(df["value"].iloc[rank - 1], abs=1e-6)
    number = int(df["trial"].iloc[3])
    model = tunecb.load_best(finished_study, trial=number)
    got = model.evaluate(xv, yv, batch_size=64, verbose=0, return_dict=True)["accuracy"]
    assert got == pytest.approx(df["value"].iloc[3], abs=1e-6)


def test_load_best_errors(finished_study):
    with pytest.raises(tunecb.ResultsError, match="has only 4 trials"):
        tunecb.load_best(finished_study, rank=9)
    with pytest.raises(tunecb.ConfigError, match="rank=0"):
        tunecb.load_best(finished_study, rank=0)
    with pytest.raises(tunecb.ResultsError, match="no such trial"):
        tunecb.load_best(finished_study, trial=99)


def test_load_best_works_without_the_study_file_in_a_fresh_process(finished_study, tmp_path):
    code = (
        "import sys, tunecb\n"
        f"m = tunecb.load_best({str(finished_study)!r})\n"
        "print(type(m).__name__, m.compiled)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=180)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["Sequential", "True"]


def test_output_to_a_pipe_writes_through_it_and_leaves_it_a_pipe(finished_study, cli, tmp_path):
    """`--output /dev/null` or a FIFO: written through, never replaced by a regular file
    (an atomic rename over /dev/null, as root, would have destroyed the device)."""
    import os
    import stat
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    code, out, err = cli("report", finished_study, "--format", "csv", "--output", fifo)
    reader.join(timeout=30)
    assert code == 0, err
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert received and received[0].decode().count("\n") == 5  # header + 4 trials
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]  # no temp file left behind
