"""A finished trial carried on: retrained on all the data (final.keras), rerun to its exact
values, evaluated on a test split; a changed data set or study file is said, a missing study
file is a one-line error. Real searches and fits on tiny bundled data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

STUDY = """
import os

import keras
from sklearn.datasets import load_digits

import tunecb

study = tunecb.Study(monitor="val_accuracy", epochs=5, batch_size=64, n_trials=3, seed=3,
                     patience=2, pruner="none", lr_schedule="cosine")


@study.data
def load():
    x, y = load_digits(return_X_y=True)
    x = (x[:600] / 16.0 + float(os.environ.get("TINY_SHIFT", "0"))).astype("float32")
    y = y[:600]
    return (x[:360], y[:360]), (x[360:480], y[360:480]), (x[480:], y[480:])


@study.model
def build(trial, data):
    import tinyhelper  # a module beside the study file, imported during the search

    model = keras.Sequential([
        keras.Input(data.input_shape),
        keras.layers.Dense(tinyhelper.units(trial), activation="relu"),
        keras.layers.Dropout(trial.suggest_float("dropout", 0.0, 0.3)),
        keras.layers.Dense(data.n_classes, activation="softmax"),
    ])
    model.compile(keras.optimizers.Adam(trial.suggest_float("lr", 3e-3, 3e-2, log=True)),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
"""


def tunecb(*args: object, env: dict | None = None, cwd: Path | None = None):
    """The real CLI in a fresh process (as a user runs it)."""
    return subprocess.run(
        [sys.executable, "-m", "tunecb", *map(str, args)], capture_output=True, text=True,
        env={**os.environ, **(env or {})}, cwd=cwd, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> Path:
    """A 3-trial search run by two worker processes (the default path), whose builder gets
    the data and imports a helper module beside the study file; its results folder."""
    folder = tmp_path_factory.mktemp("replay")
    (folder / "tiny.py").write_text(STUDY)
    (folder / "tinyhelper.py").write_text(
        "def units(trial):\n    return trial.suggest_int('units', 8, 32)\n"
    )
    proc = tunecb("search", "tiny.py", "--jobs", "2", "-q", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return folder / "results" / "tiny"


def copy_of(results: Path, tmp_path: Path) -> Path:
    """A private copy of the study folder and its study file (the copy keeps the recorded
    study-file path: the file is where the trials say)."""
    target = tmp_path / "results" / "tiny"
    shutil.copytree(results, target)
    return target


def best_number(results: Path) -> int:
    import tunecb as api

    return int(api.report(str(results)).iloc[0]["trial"])


def test_retrain_fits_on_train_plus_validation_for_the_best_epoch_and_evaluates(searched, cli):
    code, out, err = cli("retrain", searched)
    assert code == 0, err
    number = best_number(searched)
    final = searched / "trials" / str(number) / "final.keras"
    assert f"retrained trial {number} on the training + validation data (480 samples)" in out
    assert str(final) in out and "test: final model accuracy" in out
    record = json.loads(final.with_name("final.json").read_text())
    trial = json.loads(final.with_name("trial.json").read_text())
    assert record["epochs"] == trial["best_epoch"] and record["epochs_from"] == "best_epoch"
    assert record["rows"] == 480 and record["data"] == "train+validation"
    assert record["params"] == trial["params"] and record["seed"] == trial["seed"]
    assert record["learning_rates"] == "replayed from the trial's history"
    assert set(record["test"]) == {"test_loss", "test_accuracy"}
    assert record["versions"]["keras"] and record["notes"] == []
    # The final model is self-contained: it loads and scores the test split as recorded.
    import keras

    from tunecb.training import fast_fit

    model = keras.saving.load_model(final, safe_mode=True)
    # Fitted as the search fits (several batches per call on TensorFlow where the calls
    # they avoid, 480 rows at batch 64 for its epochs, pay for it), saved with the user's
    # compile settings.
    assert record["batches_per_call"] == fast_fit.choose(
        "auto", backend=keras.backend.backend(), compiled_steps=1, eager=False,
        custom_step=False, batch_hooks=False, counted_steps=False,
        calls=fast_fit.calls_avoided(8, 0, record["epochs"]),
    )  # fmt: skip
    assert int(model.steps_per_execution) == 1
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    scores = model.evaluate((x[480:600] / 16.0).astype("float32"), y[480:600], verbose=0,
                            return_dict=True)  # fmt: skip
    assert scores["accuracy"] == pytest.approx(record["test"]["test_accuracy"], abs=1e-6)
    # The trial's best checkpoint was evaluated beside it, and the report shows both.
    assert json.loads(final.with_name("test.json").read_text())["test"]["test_accuracy"] >= 0
    code, out, err = cli("report", searched, "--format", "json")
    row = next(r for r in json.loads(out) if r["trial"] == number)
    assert row["test_accuracy"] == record["checkpoint_test"]["test_accuracy"]
    assert row["final_test_accuracy"] == record["test"]["test_accuracy"]


def test_rerun_reproduces_a_trial_exactly(searched, cli):
    number = best_number(searched)
    code, out, err = cli("rerun", searched, number)
    assert code == 0, err
    assert "identical: val_accuracy" in out, out
    recorded = json.loads((searched / "trials" / str(number) / "rerun.json").read_text())
    assert recorded["identical"] is True and recorded["max_difference"] == 0
    assert recorded["epochs"] == recorded["recorded_epochs"] >= 2
    # Nothing of the trial was touched, and no scratch folder is left.
    assert not list(searched.glob(".rerun-*"))


def test_changed_data_is_said_on_rerun_retrain_and_resume(searched, tmp_path, cli, monkeypatch):
    results = copy_of(searched, tmp_path)
    monkeypatch.setenv("TINY_SHIFT", "0.25")
    code, out, err = cli("rerun", results, 0)
    assert code == 0, err
    assert "differs: val_accuracy" in out
    assert "why: the data changed since trial 0 ran" in out
    code, out, err = cli("retrain", results, "--trial", 0, "--epochs", 1)
    assert code == 0, err
    assert "note: the data changed since trial 0 ran" in err
    # Resuming the search with other data says so (the study file did not change).
    study = Path(json.loads((results / "trials" / "0" / "trial.json").read_text())["study_file"])
    code, out, err = cli("search", study, "--results", tmp_path / "results", "--n-trials", 4,
                         "--jobs", 0, "-q")  # fmt: skip
    assert code == 0, err
    assert "now returns other data than when study 'tiny' began" in err


def test_retrain_needs_the_study_file_and_says_so(searched, tmp_path, cli):
    results = copy_of(searched, tmp_path)
    recorded = json.loads((results / "trials" / "0" / "trial.json").read_text())["study_file"]
    for record in results.glob("trials/*/trial.json"):  # as if the study file had moved
        data = json.loads(record.read_text())
        record.write_text(json.dumps({**data, "study_file": str(tmp_path / "gone.py")}))
    code, out, err = cli("retrain", results, "--trial", 0)
    assert code == 2 and err.count("\n") == 1
    assert "is gone; it is needed to build and train the model again: pass it with --study" in err
    # The user's copy of it works, and a changed one is said.
    copy = tmp_path / "copy.py"
    copy.write_text(Path(recorded).read_text() + "\n# edited\n")
    shutil.copy(Path(recorded).with_name("tinyhelper.py"), tmp_path)
    code, out, err = cli("retrain", results, "--trial", 0, "--epochs", 1, "--study", copy)
    assert code == 0, err
    assert f"note: the study file {copy} changed since trial 0 ran" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("retrain", "{r}", "--trial", "99"), "--trial 99: {r} has no such trial (trials: 0-2)"),
        (("retrain", "{r}", "--rank", "9"), "--rank 9: {r} has 3 finished trials"),
        (("rerun", "{r}", "x"), "argument N: expected a trial number (0, 1, ...), got 'x'"),
        (("evaluate", "{r}", "--top", "0"), "expected a positive integer, got '0'"),
        (("retrain", "{r}/nope"), "results folder '{r}/nope' does not exist"),
    ],
)
def test_bad_replay_input_is_one_line_exit_2(searched, cli, args, message):
    code, out, err = cli(*(a.format(r=searched) for a in args))
    assert code == 2
    assert message.format(r=searched) in err and err.count("\n") == 1


def test_evaluate_without_a_test_split_says_how_to_give_one(finished_study, cli):
    code, out, err = cli("evaluate", finished_study)
    assert code == 2
    assert "returns no test split; return (train, validation, test)" in err


def test_retrain_on_the_training_data_alone_rebuilds_the_trials_best_checkpoint(
    searched, cli, tmp_path
):
    """The same data, seed, epochs and learning rates give the very model the trial saved:
    retrain changes nothing but the data it is given."""
    results = copy_of(searched, tmp_path)
    number = best_number(results)
    code, out, err = cli("retrain", results, "--train-only")
    assert code == 0, err
    record = json.loads((results / "trials" / str(number) / "final.json").read_text())
    assert record["data"] == "train" and record["rows"] == 360
    assert record["test"] == record["checkpoint_test"]
