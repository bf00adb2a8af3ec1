"""Limits a long unattended search can trust (issue 21), with real processes: a trial whose
process is killed every time it runs a given parameter value is not rerun forever.

A search started as a process runs in a session of its own; its whole process group is
killed afterwards, passed or failed, so that no test leaves a process running (a ``--jobs``
search launched in this process stops its workers itself). They need Linux (/proc).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

ROOT = Path(__file__).resolve().parents[2]
SEARCH_TIMEOUT_S = float(os.environ.get("TUNECB_TEST_SEARCH_TIMEOUT", 240))

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")

# The builder SIGKILLs its own process for one value of a categorical parameter: what the
# kernel's OOM killer does to a configuration too large for the machine, every time.
KILLER_STUDY = """
import os, signal
import keras
import numpy as np
import tunecb

study = tunecb.Study(monitor="val_accuracy", epochs=1, batch_size=32, n_trials={n},
                     pruner="none", patience=None, seed={seed})

@study.data
def load():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    return (x[:48], y[:48]), (x[48:], y[48:])

@study.model
def build(trial):
    if trial.suggest_categorical("size", ["small", "huge"]) == "huge":
        os.kill(os.getpid(), signal.SIGKILL)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
"""


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def write_study_file(folder: Path, name: str, text: str) -> tuple[Path, Path]:
    """``folder/<name>.py`` holding ``text``, and the results folder beside it."""
    path = folder / f"{name}.py"
    path.write_text(text)
    return path, folder / "r"


def start_search(path: Path, results: Path, *flags: str) -> subprocess.Popen:
    """``tunecb search`` in a session of its own (stop it with :func:`end_search`)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = [sys.executable, "-m", "tunecb", "search", str(path), "--results", str(results),
               *flags]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)  # fmt: skip


def end_search(proc: subprocess.Popen) -> None:
    """Kill the search's whole process group, whatever happened, and reap it."""
    _kill_group(proc.pid)
    if proc.poll() is None:
        proc.wait(timeout=30)


def run_search(path: Path, results: Path, *flags: str, timeout: float = SEARCH_TIMEOUT_S):
    """:func:`start_search` to its end (bounded), then :func:`end_search`. Returns the
    completed process."""
    proc = start_search(path, results, *flags)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        end_search(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def journal_trials(results: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(results / name / "optuna.journal"))
    )
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def memory_deaths_then_killed(trials: list) -> tuple[list, optuna.trial.FrozenTrial]:
    """The attempts of the "huge" configuration (the sampler's prior left out): run again
    after each memory death but the last, then FAILed ``killed``; and that last attempt."""
    from tunecb.oracle.deaths import MAX_MEMORY_DEATHS

    huge = [t for t in trials if t.params["size"] == "huge" and "warm_start" not in t.user_attrs]
    assert huge, "the seed drew no 'huge' trial: the test would prove nothing"
    *again, last = huge
    assert len(again) == MAX_MEMORY_DEATHS - 1
    assert all(t.user_attrs["stop_reason"] == "worker_died" for t in again)
    assert last.state.name == "FAIL" and last.user_attrs["stop_reason"] == "killed"
    return huge, last


def _check_killed_for_good(trials: list, n: int) -> None:
    """The study ends with its budget: ``n`` counted trials, the "huge" ones FAILED with
    stop reason ``killed`` after the stated number of deaths, never run again after that."""
    from tunecb.oracle.attrs import NOT_COUNTED
    from tunecb.oracle.deaths import MAX_DEATHS

    counted = [t for t in trials if t.user_attrs.get("stop_reason") not in NOT_COUNTED]
    assert len(counted) == n, [(t.number, t.state.name, t.user_attrs) for t in trials]
    huge = [t for t in counted if t.params["size"] == "huge"]
    assert huge, "the seed drew no 'huge' trial: the test would prove nothing"
    priors = {t.user_attrs["warm_start"]["number"] for t in trials if "warm_start" in t.user_attrs}
    assert priors == {t.number for t in huge}  # the sampler was told (oracle.deaths)
    for trial in huge:
        assert trial.state.name == "FAIL" and trial.user_attrs["stop_reason"] == "killed"
        assert f"killed {MAX_DEATHS} times" in trial.user_attrs["error"]
        lineage = trial.system_attrs.get("retry_history", [])
        assert len(lineage) == MAX_DEATHS - 1  # the earlier deaths, each queued again once
        for number in lineage:
            assert trials[number].user_attrs["stop_reason"] == "worker_died"
    assert all(t.state.name == "COMPLETE" for t in counted if t.params["size"] == "small")
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]


@pytest.mark.slow
def test_a_trial_that_kills_its_worker_every_time_fails_and_the_jobs_search_ends(tmp_path, cli):
    """``--jobs 2``: today the same parameters ran 52 times in 150 s and the search never
    ended. Now the configuration fails after ``MAX_DEATHS`` deaths and the budget ends it.
    (``--jobs 0``, where each run of the command dies with its trial: the next run's count is
    tests/unit/test_deaths.py, with real dead processes; the next run finding the killed
    process: test_workers.py::test_a_killed_search_process_is_recovered_by_the_next_run.)
    The launcher runs in this process: only its workers die."""
    path, results = write_study_file(tmp_path, "killer", KILLER_STUDY.format(n=2, seed=11))
    code, out, err = cli("search", path, "--results", results, "--jobs", "2")
    assert code == 0, err[-2000:]
    _check_killed_for_good(journal_trials(results, "killer"), n=2)
    assert "killed" in out + err


# A trial time limit that a real first epoch (a fresh worker's trace, on a loaded 2-core CI
# machine) ends within, with the supervisor's grace: at 2 s (+ 2 s grace) CI failed a trial
# "no epoch ended within the trial limit" whose first epoch was simply slow; at 6 s the
# suite failed it twice on 2026-12-06 (8.6 s to the first epoch end, under the suite's load,
# after one data pipeline a fit: its tf.data functions are traced in that first epoch too).
LIMIT_S = 10

# A trial that crawls (each epoch sleeps) and one whose builder never returns, by value of
# a categorical parameter (seed 7 draws "hang" first, then "slow").
TIMED_STUDY = """
import time
import keras
import numpy as np
import tunecb

study = tunecb.Study(monitor="val_accuracy", epochs=60, batch_size=32, n_trials=2,
                     pruner="none", patience=None, seed=7, trial_timeout=LIMIT_S)

@study.data
def load():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    return (x[:48], y[:48]), (x[48:], y[48:])

class Crawl(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        time.sleep(0.4)

@study.model
def build(trial):
    if trial.suggest_categorical("mode", ["slow", "hang"]) == "hang":
        time.sleep(10**6)  # a builder that never returns (a read from a hung file system)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model

@study.callbacks
def crawl(trial):
    return [Crawl()]
""".replace("LIMIT_S", str(LIMIT_S))


@pytest.mark.slow
def test_trials_past_the_time_limit_stop_at_an_epoch_end_or_have_their_process_ended(tmp_path):
    """``--jobs 0`` with ``trial_timeout=3``: the trials run in one worker process; the one
    whose epochs still end stops at the first epoch end past 3 s, COMPLETE with its best so
    far; the one stuck in its builder has its process ended and FAILs; the search ends."""
    path, results = write_study_file(tmp_path, "timed", TIMED_STUDY)
    proc = run_search(path, results, "--jobs", "0", timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--trial-timeout: trials run one at a time in a worker process" in proc.stdout
    trials = journal_trials(results, "timed")
    by_mode = {t.params["mode"]: t for t in trials}
    assert len(trials) == 2 and set(by_mode) == {"slow", "hang"}, trials
    slow, hang = by_mode["slow"], by_mode["hang"]
    assert (slow.state.name, slow.user_attrs["stop_reason"]) == ("COMPLETE", "time_limit"), (
        slow.user_attrs
    )
    assert 1 <= slow.user_attrs["epochs_run"] < 60  # stopped long before its 60 epochs
    assert f"trial limit of {LIMIT_S} s passed after epoch" in slow.user_attrs["error"]
    assert (results / "timed" / slow.user_attrs["checkpoint"]).exists()
    history = (results / "timed" / "trials" / str(slow.number) / "history.csv").read_text()
    assert len(history.strip().splitlines()) == 1 + slow.user_attrs["epochs_run"]
    assert hang.state.name == "FAIL" and hang.user_attrs["stop_reason"] == "time_limit"
    assert f"no epoch ended within the trial limit of {LIMIT_S} s" in hang.user_attrs["error"]


# A tf.data pipeline whose py_function never returns from the second epoch on (a read from
# a hung network file system), its trials in the launcher's process. Its top imports
# TensorFlow, then Keras: with --jobs 0 that failed with "module 'keras' has no attribute
# 'backend'" (tests/unit/test_lazy_backends.py).
HUNG_PIPELINE_STUDY = """
import time
import tensorflow as tf
import keras
import numpy as np
import tunecb

study = tunecb.Study(monitor="val_accuracy", epochs=50, n_trials=1, pruner="none",
                     patience=None, seed=0, backup_every=0)
CALLS = [0]

def read(x, y):
    CALLS[0] += 1
    if CALLS[0] > 6:
        time.sleep(10**6)
    return x, y

@study.data
def load():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    train = tf.data.Dataset.from_tensor_slices((x[:48], y[:48])).batch(16).map(
        lambda a, b: tf.py_function(read, [a, b], [tf.float32, tf.int32]))
    train = train.map(lambda a, b: (tf.ensure_shape(a, [None, 4]), tf.ensure_shape(b, [None])))
    val = tf.data.Dataset.from_tensor_slices((x[48:], y[48:])).batch(16)
    return train, val

@study.model
def build(trial):
    trial.suggest_int("units", 2, 4)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
"""


@pytest.mark.slow
def test_ctrl_c_stops_an_in_process_fit_blocked_in_a_py_function(tmp_path):
    """``--jobs 0``: the fit waits in TensorFlow's C++ for a py_function that never returns;
    Ctrl-C was ignored until SIGKILL (45 s and more). Now the trial is queued again and the
    command exits 130 within seconds, nothing left running. (SIGTERM, 143, takes the same
    path: tests/unit/test_watchdog.py.)"""
    sig, code = signal.SIGINT, 130
    import time

    path, results = write_study_file(tmp_path, "hung", HUNG_PIPELINE_STUDY)
    proc = start_search(path, results, "--jobs", "0")
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # the first epoch ends; the second one hangs
            trials = []
            if (results / "hung" / "optuna.journal").exists():
                with contextlib.suppress(KeyError):
                    trials = journal_trials(results, "hung")
            if trials and trials[0].intermediate_values:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.3)
        else:
            raise AssertionError("the first epoch never ended")
        time.sleep(1.0)
        sent = time.monotonic()
        os.killpg(proc.pid, sig)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        end_search(proc)
    assert proc.returncode == code, err[-2000:]
    assert took < 20, took
    trials = journal_trials(results, "hung")
    assert trials[0].state.name == "FAIL" and trials[0].user_attrs["stop_reason"] == "interrupted"
    assert trials[1].state.name == "WAITING" and trials[1].params == trials[0].params


@pytest.mark.slow
def test_a_data_function_that_never_returns_stops_the_search_within_the_limit(tmp_path):
    """``--jobs 0 --trial-timeout 3``: the worker that runs the trials never gets its data;
    it is ended and the search stops with exit code 1 and one line, instead of hanging."""
    stuck = KILLER_STUDY.format(n=2, seed=11).replace(
        "def load():\n", "def load():\n    import time\n    time.sleep(10**6)\n"
    )
    path, results = write_study_file(tmp_path, "stuckdata", stuck)
    proc = run_search(path, results, "--jobs", "0", "--trial-timeout", "3", timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "did not load the study and its data within 3 s" in proc.stderr
    assert "Traceback" not in proc.stderr


# A callback raises TensorFlow's own out-of-memory error for one value (what a GPU too
# small for the configuration does, at every attempt).
OOM_STUDY = KILLER_STUDY.replace(
    """    if trial.suggest_categorical("size", ["small", "huge"]) == "huge":
        os.kill(os.getpid(), signal.SIGKILL)
""",
    """    huge = trial.suggest_categorical("size", ["small", "huge"]) == "huge"
""",
).replace(
    "    return model\n",
    """    if huge:
        model.fit = out_of_memory(model.fit)
    return model

def out_of_memory(fit):
    import tensorflow as tf

    class Oom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise tf.errors.ResourceExhaustedError(
                None, None, "OOM when allocating tensor with shape[65536,65536] and type "
                "float on /job:localhost/replica:0/task:0/device:GPU:0 by allocator GPU_0_bfc")

    def fit_with(*args, callbacks=(), **kwargs):
        return fit(*args, callbacks=[*callbacks, Oom()], **kwargs)
    return fit_with
""",
)


@pytest.mark.slow
def test_a_trial_out_of_gpu_memory_runs_again_once_then_fails_and_the_search_ends(tmp_path):
    """``--jobs 0``: TensorFlow's ``ResourceExhaustedError`` raised from a callback during
    the fit is a memory death: queued again once, then FAIL ``killed`` saying so."""
    from tunecb.oracle.deaths import MAX_MEMORY_DEATHS

    path = tmp_path / "oom.py"
    path.write_text(OOM_STUDY.format(n=2, seed=11))
    results = tmp_path / "r"
    proc = run_search(path, results, "--jobs", "0", timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    trials = journal_trials(results, "oom")
    huge, last = memory_deaths_then_killed(trials)
    assert last.user_attrs["error"].startswith(
        f"out of memory {MAX_MEMORY_DEATHS} times (ResourceExhaustedError: OOM when allocating"
    )
    small = [t for t in trials if t.params["size"] == "small"]
    assert [t.state.name for t in small] == ["COMPLETE"]


# For one value, a callback keeps 100 MiB more each epoch (a leak that grows with the fit).
GROWING_STUDY = OOM_STUDY.replace(
    "model.fit = out_of_memory(model.fit)", "model.fit = grow(model.fit)"
)
GROWING_STUDY = GROWING_STUDY.replace(
    "def out_of_memory(fit):",
    """def grow(fit):
    kept = []

    class Grow(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            kept.append(np.ones(100 * 2**20, dtype=np.uint8))  # written: resident

    def fit_with(*args, callbacks=(), **kwargs):
        return fit(*args, callbacks=[*callbacks, Grow()], **kwargs)
    return fit_with

def out_of_memory(fit):""",
).replace("epochs=1,", "epochs=30,")


@pytest.mark.slow
def test_a_trial_that_grows_past_worker_memory_is_stopped_and_fails_after_two(tmp_path, cli):
    """``--jobs 1 --worker-memory``: the worker passes its limit within a trial; the trial
    stops at that epoch end, runs again once in a fresh worker, then FAILs ``killed``. (The
    launcher runs in this process.)"""
    from tunecb.oracle.deaths import MAX_MEMORY_DEATHS

    limit = 1400  # MiB: above a worker's own (about 600 MiB with TensorFlow), reached in epochs
    path = tmp_path / "grow.py"
    path.write_text(GROWING_STUDY.format(n=2, seed=11))
    results = tmp_path / "r"
    code, _, err = cli("search", path, "--results", results, "--jobs", "1",
                       "--worker-memory", limit)  # fmt: skip
    assert code == 0, err[-2000:]
    trials = journal_trials(results, "grow")
    huge, last = memory_deaths_then_killed(trials)
    error = last.user_attrs["error"]
    assert error.startswith(f"out of memory {MAX_MEMORY_DEATHS} times (WorkerMemoryExceeded: ")
    assert f"over --worker-memory {limit} MiB" in error
    assert 1 <= last.user_attrs["epochs_run"] < 30  # stopped long before its 30 epochs
    workers = {t.user_attrs["worker"] for t in huge}
    assert len(workers) == len(huge)  # each attempt in a fresh worker
    small = [t for t in trials if t.params["size"] == "small"]
    assert [t.state.name for t in small] == ["COMPLETE"]
