"""Multi-objective pruned searches on real fits in the modes the single-objective ones run
in: the promotion scheduler pausing and resuming by Pareto rank (MOASHA) in this process,
the Pareto pruner on a Dask cluster, and a search SIGKILLed mid-trial that the same command
finishes (the dead trial rerun from its backup, its carried-over rungs stored again)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import write_study
from optuna.trial import TrialState
from test_promotion_search import configuration
from test_workers import journal_study

from tunecb.oracle import attrs, budget
from tunecb.reporting.data.records import study_records
from tunecb.results import StudyDir, read_history

MO = (
    'objectives={{"val_accuracy": "max", "params": "min"}}, epochs={epochs}, batch_size=64, '
    "n_trials={n}, seed=0, patience=None{more}"
)



def test_the_promotion_scheduler_pauses_and_resumes_by_pareto_rank(tmp_path, cli):
    # Four epochs: the promotion pruner's rungs at epochs 1 and 3.
    settings = MO.format(epochs=4, n=4, more=', pruner="promotion"')
    path = write_study(tmp_path, name="mopromo", settings=settings)
    results = tmp_path / "r"
    code, out, err = cli("search", path, "--results", results)
    assert code == 0, err
    trials = journal_study(results, "mopromo").get_trials(deepcopy=False)
    assert budget.finished(trials) == 4  # configurations, not attempts
    paused = [t for t in trials if t.user_attrs.get(attrs.STOP_REASON) == attrs.PAUSED]
    made = [t for t in trials if attrs.PROMOTED_FROM in t.system_attrs]
    assert paused and made, [(t.number, t.user_attrs.get(attrs.STOP_REASON)) for t in trials]
    assert all(t.state == TrialState.PRUNED for t in paused)
    assert all(f"{attrs.PARETO_RUNG}1" in t.user_attrs for t in trials)  # every one judged
    folder = StudyDir(results / "mopromo")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete, "the best configuration trained to the last epoch"
    for t in complete:
        assert len(t.values) == 2
        assert [r["epoch"] for r in read_history(folder.history(t.number))] == [1, 2, 3, 4]
    for t in made:  # a continuation resumed its configuration's backup at the rung
        first = trials[t.system_attrs[attrs.PROMOTED_FROM]]
        assert t.user_attrs["resumed_from_epoch"] == first.user_attrs[attrs.EPOCHS_RUN]
        assert f"{attrs.PARETO_RUNG}1" in t.user_attrs  # the carried-over rung, stored again
    records = study_records(results / "mopromo").records  # one row per configuration
    assert len(records) == 4 and records[0]["front"] and records[0]["state"] == "COMPLETE"


FAST_MO = """
import keras
import numpy as np
import tunecb

study = tunecb.Study(objectives={{"val_accuracy": "max", "params": "min"}}, epochs={epochs},
                     batch_size=32, n_trials={n}, seed=0, patience=None, backup_every=0)


@study.data
def load():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 16)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    return (x[:96], y[:96]), (x[96:], y[96:])


@study.model
def build(trial):
    units = trial.suggest_int("units", 2, 64)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(units, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(trial.suggest_float("lr", 1e-3, 1e-1, log=True)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class HangsInTrial1(keras.callbacks.Callback):
    # Waits to be killed at the end of trial 1's third epoch (its backup is of epoch 2).
    def __init__(self, number):
        self.number = number

    def on_epoch_end(self, epoch, logs=None):
        import os, time
        marker = os.environ.get("TUNECB_TEST_MARKER")
        if marker and self.number == 1 and epoch == 2:
            open(marker, "w").close()
            time.sleep(600)


@study.callbacks
def user_callbacks(trial):
    return [HangsInTrial1(trial.number)]
"""


@pytest.mark.slow
def test_a_pruned_multi_objective_search_runs_on_dask_workers(tmp_path, dask_cluster, cli):
    distributed = pytest.importorskip("dask.distributed")
    path = tmp_path / "dmo.py"
    path.write_text(FAST_MO.format(epochs=2, n=5))
    results = tmp_path / "r"
    with distributed.Client(dask_cluster) as client:
        dask_pids = {str(pid) for pid in client.run(os.getpid).values()}
    # launched in this process
    code, _, err = cli("search", path, "--results", results, "--jobs", "2",
                       "--dask", dask_cluster.scheduler_address)  # fmt: skip
    assert code == 0, err
    trials = journal_study(results, "dmo").get_trials(deepcopy=False)
    assert len(trials) == 5
    assert {t.user_attrs[attrs.WORKER].rsplit(":", 1)[1] for t in trials} <= dask_pids
    assert all(f"{attrs.PARETO_RUNG}1" in t.user_attrs for t in trials)  # shared rungs
    for t in trials:
        assert t.state == TrialState.PRUNED or len(t.values) == 2, t
    records = study_records(results / "dmo").records
    assert records[0]["front"] and "params" in records[0]


def test_a_killed_multi_objective_search_is_finished_by_the_same_command(tmp_path, cli):
    path = tmp_path / "kmo.py"
    path.write_text(FAST_MO.format(epochs=4, n=3))
    results = tmp_path / "r"
    marker = tmp_path / "trial-1-epoch-3"
    command = [sys.executable, "-m", "tunecb", "search", str(path), "--results", str(results)]
    env = {**os.environ, "TUNECB_JOBS": "0", "TUNECB_TEST_MARKER": str(marker)}
    first = subprocess.Popen(command, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert first.poll() is None, first.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "trial 1 never reached its third epoch"
            time.sleep(0.1)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        first.stderr.close()
    killed = journal_study(results, "kmo").trials[1]
    assert killed.state == TrialState.RUNNING and f"{attrs.PARETO_RUNG}1" in killed.user_attrs

    # The same command again, in this process (one TensorFlow start-up less; no marker)
    code, _, err = cli("search", path, "--results", results)
    assert code == 0, err
    trials = journal_study(results, "kmo").get_trials(deepcopy=False)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert trials[1].state == TrialState.FAIL
    assert trials[1].user_attrs[attrs.STOP_REASON] == "worker_died"
    rerun = [t for t in trials if configuration(t) == 1 and t.number != 1]
    assert len(rerun) == 1 and rerun[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert rerun[0].user_attrs["resumed_from_epoch"] == 2  # from its backup, not from scratch
    assert rerun[0].user_attrs[f"{attrs.PARETO_RUNG}1"] == killed.user_attrs[
        f"{attrs.PARETO_RUNG}1"
    ]  # the carried-over rung stored again, with the same values
    assert budget.finished(trials) == 3
