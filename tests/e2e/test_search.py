"""Real searches of real (tiny) Keras fits through the CLI, in-process unless stated."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import trial_json

from tests.tf_startup import CANDIDATES


def trial_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("[")]


def history_rows(results: Path, study: str, number: int) -> list[dict]:
    with open(results / study / "trials" / str(number) / "history.csv") as handle:
        return list(csv.DictReader(handle))


def test_search_end_to_end_through_the_cli_process(study_file, tmp_path):
    # Keras used at the file's top: TensorFlow is imported while the CLI reads it
    path = study_file(extra="DENSE = keras.layers.Dense\n")
    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "tunecb", "search", str(path), "--results", str(results)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "created study 'tiny'" in proc.stdout
    assert len(trial_lines(proc.stdout)) == 3
    assert "search done" in proc.stdout and "best model:" in proc.stdout
    # TensorFlow's start-up chatter is hidden, its oneDNN notices too (tunecb.tf_notices)
    assert not [m for m in CANDIDATES if m in proc.stderr], proc.stderr
    for number in range(3):
        folder = results / "tiny" / "trials" / str(number)
        assert {p.name for p in folder.iterdir()} == {"best.keras", "history.csv", "trial.json"}
        meta = trial_json(results, "tiny", number)
        assert meta["state"] == "COMPLETE" and meta["stop_reason"] == "completed"
        assert meta["epochs_run"] == 3 and len(history_rows(results, "tiny", number)) == 3
        assert set(meta["versions"]) == {
            "backend", "tensorflow", "device", "keras", "optuna", "tunecb"
        }  # fmt: skip
        assert meta["versions"]["device"] == "cpu"
        # What a rerun or retrain needs to know the trial was trained the same way.
        assert meta["training"]["epochs"] == 3 and meta["training"]["lr_schedule"] == "none"
        assert len(meta["data"]["hash"]) == 16 and set(meta["data"]["parts"]) == {
            "train", "validation"
        }  # fmt: skip
        assert meta["versions"]["backend"] == "tensorflow"
        assert len(meta["study_sha256"]) == 64 and meta["n_params"] > 0
    # The same facts are in the Optuna storage.
    study = optuna.load_study(
        study_name="tiny",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(results / "tiny" / "optuna.journal"))
        ),
    )
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    best = study.best_trial
    assert best.value == max(t.user_attrs["best_value"] for t in study.trials)
    assert best.user_attrs["checkpoint"] == f"trials/{best.number}/best.keras"
    assert len(best.intermediate_values) == 3


def test_objective_is_the_best_epoch_not_the_last(study_file, tmp_path, cli):
    # A high learning rate with SGD momentum makes val_accuracy wander; whatever it does, the
    # objective must be the maximum over the history and best_epoch must point at it.
    path = study_file(settings='monitor="val_loss", epochs=6, n_trials=2, seed=3, pruner="none"')
    code, out, err = cli("search", path, "--results", tmp_path / "r")
    assert code == 0, err
    for number in range(2):
        meta = trial_json(tmp_path / "r", "tiny", number)
        rows = history_rows(tmp_path / "r", "tiny", number)
        losses = [float(r["val_loss"]) for r in rows]
        assert meta["best_value"] == pytest.approx(min(losses))
        assert meta["best_epoch"] == losses.index(min(losses)) + 1


def test_resume_continues_the_trial_count(study_file, tmp_path, cli):
    path = study_file()
    results = tmp_path / "r"
    assert cli("search", path, "--results", results, "--n-trials", "2")[0] == 0
    code, out, _ = cli("search", path, "--results", results, "--n-trials", "4")
    assert code == 0
    assert "continuing study 'tiny': 2 trials done, best val_accuracy" in out
    assert "trial   2" in out and "trial   3" in out and "trial   0" not in out
    code, out, _ = cli("search", path, "--results", results, "--n-trials", "4")
    assert code == 0 and "nothing to run" in out
    assert sorted(p.name for p in (results / "tiny" / "trials").iterdir()) == ["0", "1", "2", "3"]


def test_pruning_prunes_and_the_pruned_trial_is_complete_on_disk(study_file, tmp_path, cli):
    # ThresholdPruner prunes any trial whose val_accuracy is below 0.999 after 2 epochs.
    path = study_file(
        settings='monitor="val_accuracy", epochs=6, n_trials=2, seed=0, patience=None, '
        "pruner=optuna.pruners.ThresholdPruner(lower=0.999, n_warmup_steps=2)",
        extra="import optuna",
    )
    # `optuna` must be importable where the Study is built: put the import first.
    path.write_text("import optuna\n" + path.read_text())
    code, out, err = cli("search", path, "--results", tmp_path / "r")
    assert code == 0, err
    assert out.count("PRUNED") == 2
    import keras

    for number in range(2):
        meta = trial_json(tmp_path / "r", "tiny", number)
        assert meta["state"] == "PRUNED" and meta["stop_reason"] == "pruned"
        assert meta["epochs_run"] == 2  # reported at steps 1, 2; pruned at step 2
        rows = history_rows(tmp_path / "r", "tiny", number)
        assert [int(r["epoch"]) for r in rows] == [1, 2]  # on_train_end ran, nothing lost
        model = keras.saving.load_model(tmp_path / "r" / "tiny" / meta["checkpoint"])
        assert model.count_params() == meta["n_params"]


def test_hyperband_resource_is_the_epoch_budget(study_file, tmp_path, cli):
    path = study_file(settings='monitor="val_accuracy", epochs=4, n_trials=3, pruner="hyperband"')
    code, _, err = cli("search", path, "--results", tmp_path / "r")
    assert code == 0, err
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "r/tiny/optuna.journal"))
    )
    study = optuna.load_study(study_name="tiny", storage=storage)
    steps = {s for t in study.trials for s in t.intermediate_values}
    assert steps <= {1, 2, 3, 4} and 1 in steps  # steps are epochs, 1-based, within budget
    from tunecb.study.samplers_pruners import make_pruner

    assert make_pruner("hyperband", epochs=4)._max_resource == 4


def test_early_stopping_stops_the_trial(study_file, tmp_path, cli):
    # min_delta=1.0 on accuracy: no epoch after the first can improve, so patience 1 stops at 2.
    path = study_file(settings='monitor="val_accuracy", epochs=8, n_trials=1, patience=1, '
                      'min_delta=1.0, pruner="none"')  # fmt: skip
    code, out, err = cli("search", path, "--results", tmp_path / "r")
    assert code == 0, err
    meta = trial_json(tmp_path / "r", "tiny", 0)
    assert meta["state"] == "COMPLETE" and meta["stop_reason"] == "early_stopped"
    assert meta["epochs_run"] == 2


def test_nan_trial_fails_with_its_reason_and_the_search_goes_on(study_file, tmp_path, cli):
    path = study_file(
        settings='monitor="val_accuracy", epochs=3, n_trials=3, pruner="none"',
        build_extra="scale = float('nan') if trial.number == 1 else 1.0",
        layers_extra="keras.layers.Rescaling(scale),",
    )
    code, out, err = cli("search", path, "--results", tmp_path / "r")
    assert code == 0, err
    meta = trial_json(tmp_path / "r", "tiny", 1)
    assert meta["state"] == "FAIL" and meta["stop_reason"] == "nan"
    assert "non-finite loss or val_accuracy at epoch 1" in meta["error"]
    assert meta["checkpoint"] is None and meta["best_value"] is None  # NaN is never "best"
    assert meta["epochs_run"] == 1  # stopped at the first epoch
    assert [trial_json(tmp_path / "r", "tiny", n)["state"] for n in (0, 2)] == ["COMPLETE"] * 2


def test_a_trial_whose_builder_raises_fails_alone(study_file, tmp_path, cli):
    path = study_file(build_extra="if units > 20: raise RuntimeError(f'too wide: {units}')",
                      settings='monitor="val_accuracy", epochs=2, n_trials=4, seed=5')  # fmt: skip
    code, out, err = cli("search", path, "--results", tmp_path / "r")
    assert code == 0, err
    metas = [trial_json(tmp_path / "r", "tiny", n) for n in range(4)]
    failed = [m for m in metas if m["state"] == "FAIL"]
    assert failed and all(m["error"].startswith("RuntimeError: too wide") for m in failed)
    assert any(m["state"] == "COMPLETE" for m in metas)


def test_the_first_five_failures_stop_the_search(study_file, tmp_path, cli):
    path = study_file(build_extra="raise ValueError('broken builder')",
                      settings='monitor="val_accuracy", epochs=2, n_trials=20')  # fmt: skip
    code, out, err = cli("search", path, "--results", tmp_path / "r")
    assert code == 1
    assert "the first 5 trials all failed" in err and "broken builder" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "r/tiny/trials").iterdir()) == list("01234")


def test_timeout_stops_starting_trials(study_file, tmp_path, cli):
    path = study_file(settings='monitor="val_accuracy", epochs=2, n_trials=50')
    code, out, _ = cli("search", path, "--results", tmp_path / "r", "--timeout", "0.5")
    assert code == 0
    assert "timeout reached" in out and len(trial_lines(out)) < 50


def test_searched_schedule_is_a_hyperparameter_and_history_logs_the_rate(study_file, tmp_path, cli):
    path = study_file(
        settings='monitor="val_loss", epochs=4, n_trials=3, seed=0, pruner="none", '
        "patience=None, lr_schedule=tunecb.Searched(['cosine', 'step'])"
    )
    code, _, err = cli("search", path, "--results", tmp_path / "r")
    assert code == 0, err
    for number in range(3):
        meta = trial_json(tmp_path / "r", "tiny", number)
        assert meta["params"]["lr_schedule"] in ("cosine", "step")
        assert meta["lr_schedule"] == meta["params"]["lr_schedule"]
        rates = [float(r["learning_rate"]) for r in history_rows(tmp_path / "r", "tiny", number)]
        lr = meta["params"]["lr"]
        assert rates[0] == pytest.approx(lr, rel=1e-5)
        if meta["lr_schedule"] == "cosine":  # decays over the 4-epoch budget
            assert rates == sorted(rates, reverse=True) and rates[-1] < 0.2 * lr
        else:  # StepDecay(every=10): constant within 4 epochs
            assert rates == pytest.approx([lr] * 4, rel=1e-5)


def test_user_callbacks_run_in_every_trial_even_when_pruned(study_file, tmp_path, cli):
    log = tmp_path / "calls.txt"
    path = study_file(
        settings='monitor="val_accuracy", epochs=4, n_trials=2, patience=None, '
        "pruner=optuna.pruners.ThresholdPruner(lower=0.999, n_warmup_steps=1)",
        extra=f"""
        class Recorder(keras.callbacks.Callback):
            def __init__(self, number):
                super().__init__()
                self.number = number
            def on_train_batch_end(self, batch, logs=None):
                assert "loss" in logs and "accuracy" in logs
            def on_train_end(self, logs=None):
                with open({str(log)!r}, "a") as f:
                    f.write(f"{{self.number}}\\n")

        @study.callbacks
        def callbacks(trial):
            return [Recorder(trial.number)]
        """,
    )
    path.write_text("import optuna\n" + path.read_text())
    code, out, err = cli("search", path, "--results", tmp_path / "r")
    assert code == 0, err
    assert out.count("PRUNED") == 2
    assert log.read_text().split() == ["0", "1"]


def test_seed_makes_a_search_reproducible(study_file, tmp_path, cli):
    path = study_file(settings='monitor="val_loss", epochs=2, n_trials=2, seed=11, pruner="none"')
    values = []
    for run in ("a", "b"):
        assert cli("search", path, "--results", tmp_path / run)[0] == 0
        values.append([trial_json(tmp_path / run, "tiny", n)["best_value"] for n in (0, 1)])
        assert [trial_json(tmp_path / run, "tiny", n)["seed"] for n in (0, 1)] == [
            trial_json(tmp_path / "a", "tiny", n)["seed"] for n in (0, 1)
        ]
    assert values[0] == pytest.approx(values[1], rel=1e-4)


def test_tf_data_datasets_and_sqlite_storage(tmp_path, cli):
    path = tmp_path / "ds.py"
    path.write_text(
        """
import keras
import tensorflow as tf
from sklearn.datasets import load_digits
import tunecb

study = tunecb.Study(monitor="val_loss", epochs=2, n_trials=2, pruner="median")

@study.data
def load():
    x, y = load_digits(return_X_y=True)
    x = (x[:300] / 16.0).astype("float32")
    train = tf.data.Dataset.from_tensor_slices((x[:200], y[:200])).batch(32)
    val = tf.data.Dataset.from_tensor_slices((x[200:], y[200:300])).batch(32)
    return train, val

@study.model
def build(trial):
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(trial.suggest_float("lr", 0.01, 0.1)),
                  loss="sparse_categorical_crossentropy")
    return model
"""
    )
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    code, out, err = cli("search", path, "--results", tmp_path / "r", "--storage", url)
    assert code == 0, err
    study = optuna.load_study(study_name="ds", storage=url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert not (tmp_path / "r/ds/optuna.journal").exists()
    code, out, err = cli("report", tmp_path / "r/ds", "--format", "csv")  # finds the URL
    assert code == 0, err
    assert len(out.strip().splitlines()) == 3


def test_resuming_a_seeded_search_does_not_repeat_its_trials(study_file, tmp_path, cli):
    # A seeded sampler restarted from its seed would propose trial 0's parameters again.
    path = study_file(settings='monitor="val_accuracy", epochs=1, n_trials=2, seed=0, '
                      'sampler="random", pruner="none"')  # fmt: skip
    assert cli("search", path, "--results", tmp_path / "r")[0] == 0
    assert cli("search", path, "--results", tmp_path / "r", "--n-trials", "4")[0] == 0
    params = [trial_json(tmp_path / "r", "tiny", n)["params"] for n in range(4)]
    assert params[2] != params[0] and params[3] != params[1]
    # ... and the resumed search is itself reproducible.
    assert cli("search", path, "--results", tmp_path / "s")[0] == 0
    assert cli("search", path, "--results", tmp_path / "s", "--n-trials", "4")[0] == 0
    assert [trial_json(tmp_path / "s", "tiny", n)["params"] for n in range(4)] == params


def test_ctrl_c_marks_the_running_trial_and_the_same_command_continues(study_file, tmp_path, cli):
    import signal
    import time

    path = study_file(settings='monitor="val_accuracy", epochs=400, n_trials=2, patience=None, '
                      'pruner="none"')  # fmt: skip
    results = tmp_path / "r"
    command = [sys.executable, "-m", "tunecb", "search", str(path), "--results", str(results)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    history = results / "tiny" / "trials" / "0" / "history.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
        history.exists() and history.read_text().count("\n") >= 3
    ):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Run the same command again" in err
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(results / "tiny" / "optuna.journal"))
    )
    trial = optuna.load_study(study_name="tiny", storage=storage).trials[0]
    assert trial.state.name == "FAIL" and trial.user_attrs["stop_reason"] == "interrupted"
    assert (results / "tiny" / "trials" / "0" / "best.keras").exists()  # kept, loadable
    # The interrupted trial does not count: the same command (short epochs) runs 2 trials
    # (in this process: the same code, without a second TensorFlow start-up).
    code, out, err = cli(*command[3:], "--epochs", "1")
    assert code == 0, err
    assert "continuing study 'tiny': 0 trials done" in out
    assert len(trial_lines(out)) == 2
