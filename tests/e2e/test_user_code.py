"""User code that ends in every way it can (SystemExit, KeyboardInterrupt raised by code,
an error of the framework whose cause is its last line), at import, in the data function,
in the builder and in a user callback: one line naming the function and file, the trial
recorded, and the search goes on or stops with a summary and a non-zero exit code. Data
that cannot be right is refused once, at load. Real fits, the CLI run in this process
except where worker processes or another backend need a process of its own."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEFAULT_SETTINGS, trial_json, write_study
from test_workers import journal_study


def tunecb(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    """The real CLI in a fresh process: for what needs one (worker processes, a backend)."""
    return subprocess.run(
        [sys.executable, "-m", "tunecb", *map(str, args)], capture_output=True, text=True,
        cwd=cwd, timeout=300, env={**os.environ, "TUNECB_JOBS": "0"},
    )  # fmt: skip


@pytest.fixture
def here(cli, tmp_path, monkeypatch):
    """The CLI in this process, run in the test's folder (as ``tunecb`` for everything
    that is not about processes): ``here(*args) -> CompletedProcess``."""
    monkeypatch.chdir(tmp_path)

    def run(*args: object) -> subprocess.CompletedProcess:
        code, out, err = cli(*args)
        return subprocess.CompletedProcess(["tunecb", *map(str, args)], code, out, err)

    return run


ENDINGS = """
import sys

import keras


class ExitsInFit(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        sys.exit(4)


@study.callbacks
def user_callbacks(trial):
    return [ExitsInFit()] if trial.number == 3 else []
"""

BUILD_ENDINGS = """
if trial.number == 1:
    sys.exit(0)
if trial.number == 2:
    raise KeyboardInterrupt
"""


@pytest.mark.parametrize("jobs", [0, 2])
def test_user_code_that_exits_fails_its_trial_and_the_search_goes_on(tmp_path, jobs, here):
    settings = DEFAULT_SETTINGS.replace("n_trials=3", "n_trials=5")
    path = write_study(tmp_path, settings=settings, build_extra=BUILD_ENDINGS, extra=ENDINGS)
    text = path.read_text().replace("import keras\n", "import sys\n\nimport keras\n", 1)
    path.write_text(text)
    if jobs:  # worker processes
        proc = tunecb("search", path.name, "--jobs", jobs, cwd=tmp_path)
    else:  # the trials in the search's own process: this one
        proc = here("search", path.name, "--jobs", jobs)
    assert proc.returncode == 0, proc.stderr  # trials 0 and 4 completed
    assert "search done" in proc.stdout, proc.stdout
    results = tmp_path / "results"
    errors = {n: trial_json(results, "tiny", n)["error"] for n in range(5)}
    states = [trial_json(results, "tiny", n)["state"] for n in range(5)]
    assert states == ["COMPLETE", "FAIL", "FAIL", "FAIL", "COMPLETE"]
    line = lambda n: errors[n].splitlines()[0]  # noqa: E731
    assert line(1).startswith("SystemExit: sys.exit(0) was called (at tiny.py:")
    assert line(1).endswith("in build())")
    assert line(2).startswith("KeyboardInterrupt: raised by code, not by Ctrl-C (at tiny.py:")
    assert line(3).startswith("SystemExit: sys.exit(4) was called (at tiny.py:")
    assert line(3).endswith("in on_epoch_end())")
    shown = {int(m[1]): m[2] for m in re.finditer(r"trial +(\d+) +FAIL +(.*)", proc.stdout)}
    for n in (1, 2, 3):  # the terminal shows each failure with its cause and place
        assert line(n) in shown[n]


LOSES_CTRL_C = """
import signal

import keras


class LosesCtrlC(keras.callbacks.Callback):
    # What C++ code inside fit can do to a Ctrl-C that lands in it: raise it, then lose it.
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            try:
                signal.raise_signal(signal.SIGINT)
                for _ in range(10_000):  # the handler runs here
                    pass
            except KeyboardInterrupt:
                pass


@study.callbacks
def user_callbacks(trial):
    return [LosesCtrlC()]
"""


def test_a_ctrl_c_whose_keyboardinterrupt_is_lost_inside_fit_still_stops_the_search(tmp_path, cli):
    settings = DEFAULT_SETTINGS.replace("epochs=3", "epochs=20")
    path = write_study(tmp_path, settings=settings, extra=LOSES_CTRL_C)
    code, out, err = cli("search", str(path), "--results", str(tmp_path / "r"))
    assert code == 130, out + err
    assert "interrupted" in err
    trial = journal_study(tmp_path / "r", "tiny").trials[0]
    assert trial.state.name == "FAIL" and trial.user_attrs["stop_reason"] == "interrupted"
    history = tmp_path / "r" / "tiny" / "trials" / "0" / "history.csv"
    assert len(history.read_text().splitlines()) - 1 <= 2  # stopped at once, not after 20
    # The next search in this process starts clean: the answered Ctrl-C is not pending.
    path.write_text(path.read_text().replace("return [LosesCtrlC()]", "return []"))
    code, out, err = cli("search", str(path), "--results", str(tmp_path / "r"), "--epochs", "1")
    assert code == 0, out + err


def test_a_study_file_or_data_function_that_exits_is_a_one_line_error(tmp_path, here):
    path = write_study(tmp_path, extra="import sys\nsys.exit(3)\n")
    proc = here("search", path.name)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "tiny.py:" in proc.stderr
    assert "importing the study file raised SystemExit: sys.exit(3) was called" in proc.stderr

    path.write_text(path.read_text().replace("sys.exit(3)\n", "").replace(
        "    x, y = load_digits(return_X_y=True)", "    import sys\n    sys.exit('no data here')"
    ))  # fmt: skip
    proc = here("search", path.name)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "the data function load() in tiny.py raised SystemExit: sys.exit('no data here') " in (
        proc.stderr
    )
    assert "(at tiny.py:" in proc.stderr and "in load())" in proc.stderr
    assert not (tmp_path / "results" / "tiny" / "trials" / "0").exists()  # no trial spent


def test_a_framework_error_keeps_its_cause_and_a_search_of_failures_exits_1(tmp_path, here):
    # Labels 0..19 for a 10-way softmax, in tf.data datasets (arrays are checked before
    # the fit): TensorFlow's "Graph execution error:" has the reason on its last line.
    path = write_study(tmp_path, settings=DEFAULT_SETTINGS.replace("n_trials=3", "n_trials=2"))
    path.write_text(path.read_text().replace("    y = y[:500]", "    y = y[:500] * 2").replace(
        "    return (x[:400], y[:400]), (x[400:], y[400:])",
        "    import tensorflow as tf\n\n"
        "    ds = lambda a, b: tf.data.Dataset.from_tensor_slices((a, b)).batch(64)\n"
        "    return ds(x[:400], y[:400]), ds(x[400:], y[400:])",
    ))  # fmt: skip
    proc = here("search", path.name)
    assert proc.returncode == 1, proc.stderr
    assert "search done" in proc.stdout  # the summary, then the error
    assert "all 2 trials of this run failed" in proc.stderr
    # TensorFlow words the cause one of two ways: its deterministic kernels (op determinism,
    # which an earlier test in this process may have turned on) check the label by a gather
    cause = re.compile(r"(Received a label value of 1\d which is outside the valid range of "
                       r"\[0, 10\)|indices\[\d+\] = 1\d is not in \[0, 10\))")  # fmt: skip
    assert cause.search(proc.stdout), proc.stdout
    assert "Graph execution error" not in proc.stdout
    error = trial_json(tmp_path / "results", "tiny", 0)["error"]
    assert error.startswith("InvalidArgumentError: ") and cause.match(error.split(": ", 1)[1])
    report = here("report", "results/tiny", "--format", "json")
    rows = json.loads(report.stdout)
    assert all(cause.search(r["error"]) for r in rows)


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_labels_the_model_cannot_take_stop_the_search_in_one_line(tmp_path, backend, here):
    """Labels 0..19 for a 10-unit sparse softmax: JAX would train on them silently, so
    they are refused before the first fit, on every backend, naming the data function.
    (JAX needs a process of its own; TensorFlow, this process's backend, runs here.)"""
    path = write_study(tmp_path, settings=DEFAULT_SETTINGS.replace("n_trials=3", "n_trials=2"))
    path.write_text(path.read_text().replace("    y = y[:500]", "    y = y[:500] * 2"))
    args = ("search", path.name, "--backend", backend)
    proc = here(*args) if backend == "tensorflow" else tunecb(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    message = (
        "the model of trial 0 ends in 10 units, but the data function load() in "
        f"{path.name} returns class labels from 0 to 18; sparse_categorical_crossentropy needs "
        "labels in [0, 10)"
    )
    assert message in proc.stderr, proc.stderr
    trial = trial_json(tmp_path / "results", "tiny", 0)
    assert trial["state"] == "FAIL" and message in trial["error"]
    assert trial["epochs_run"] == 0  # nothing was trained on them


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("return (x[:400], y[:400])", "return (x[:400], y[:399])"),
            "returned train data of different lengths: x has 400 samples, y 399",
        ),
        (
            ("(x[400:], y[400:])", "(x[500:], y[500:])"),
            "returned empty validation data (x has 0 samples, y has 0 samples)",
        ),
        (("(x[400:], y[400:])", "None"), "monitor 'val_accuracy' needs validation data"),
    ],
)
def test_data_that_cannot_be_right_is_refused_before_any_trial(tmp_path, cli, change, message):
    path = write_study(tmp_path)
    path.write_text(path.read_text().replace(*change))
    code, out, err = cli("search", path, "--results", tmp_path / "results")
    assert code == 2 and err.count("\n") == 1
    assert message in err and "load()" in err
    assert not (tmp_path / "results" / "tiny" / "trials" / "0").exists()
