"""`--jobs N`: real worker processes sharing one study on the embedded journal storage."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from tunecb.execution.processes import ProcessExecutor
from tunecb.execution.sizing import parse_gpus

FAST_STUDY = """
import json, os
import keras
import numpy as np
import tunecb

study = tunecb.Study(monitor="val_accuracy", epochs={epochs}, batch_size=32, n_trials={n},
                     pruner="none", patience=None, seed=0)

@study.data
def load():
    report = os.environ.get("TUNECB_TEST_REPORT")
    if report:
        import tensorflow as tf
        with open(os.path.join(report, f"{{os.getpid()}}.json"), "w") as f:
            json.dump({{"gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
                       "threads": tf.config.threading.get_intra_op_parallelism_threads()}}, f)
    rng = np.random.default_rng(0)
    x = rng.normal(size=({rows}, 16)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    return (x[:{split}], y[:{split}]), (x[{split}:], y[{split}:])

@study.model
def build(trial):
    units = trial.suggest_int("units", 2, 64)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(units, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(trial.suggest_float("lr", 1e-4, 1e-1, log=True)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
"""


def write_fast_study(folder: Path, name="par", n=10, epochs=1, rows=96, split=64) -> Path:
    path = folder / f"{name}.py"
    path.write_text(FAST_STUDY.format(n=n, epochs=epochs, rows=rows, split=split))
    return path


def journal_study(results: Path, name: str) -> optuna.Study:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(results / name / "optuna.journal"))
    )
    return optuna.load_study(study_name=name, storage=storage)


def trials_so_far(results: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    """The trials of a study being searched; none before its journal holds the study (the
    file comes first: polling then raced it)."""
    if not (results / name / "optuna.journal").exists():
        return []
    try:
        return journal_study(results, name).trials
    except KeyError:
        return []


def search(path: Path, results: Path, *flags: str, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "tunecb", "search", str(path), "--results", str(results), *flags],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


def test_worker_environment_divides_threads_and_assigns_gpus():
    execution = ProcessExecutor(jobs=3, gpus=parse_gpus("0,1", 3), threads_per_worker=None)
    envs = [execution.worker_env(slot) for slot in range(3)]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1", "0"]
    cores = len(os.sched_getaffinity(0))
    assert envs[0]["TF_NUM_INTRAOP_THREADS"] == str(max(1, cores // 3))
    assert ProcessExecutor(jobs=2, threads_per_worker=3).worker_env(0)["OMP_NUM_THREADS"] == "3"
    assert "CUDA_VISIBLE_DEVICES" not in ProcessExecutor(jobs=2).worker_env(0)
    with pytest.raises(Exception, match="--gpus 'a,b'"):
        parse_gpus("a,b", 2)


@pytest.mark.slow
def test_four_workers_run_exactly_the_budget_without_losing_or_repeating_a_trial(tmp_path, cli):
    # 16 trials (8 queued, 8 sampled) go through the same paths as 100 did (queued trials
    # taken by every worker at once, many asks and tells, the end of the budget) for a
    # sixth of the cost. The launcher runs in this process (no second TensorFlow start-up).
    path = write_fast_study(tmp_path, n=16)
    results = tmp_path / "r"
    # Create the study first, with 8 enqueued trials that must each run exactly once.
    (results / "par").mkdir(parents=True)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(results / "par" / "optuna.journal"))
    )
    study = optuna.create_study(study_name="par", storage=storage, direction="maximize")
    study.set_user_attr("monitor", "val_accuracy")
    queued = [{"units": 3 + i, "lr": 0.001 * (i + 1)} for i in range(8)]
    for params in queued:
        study.enqueue_trial(params)
    code, out, err = cli("search", path, "--results", results, "--jobs", "4")
    assert code == 0, err
    assert "locked" not in err
    trials = [t for t in journal_study(results, "par").trials
              if t.user_attrs.get("stop_reason") != "discarded"]  # fmt: skip
    assert len(trials) == 16
    assert {t.state.name for t in trials} == {"COMPLETE"}
    ran = [t.params for t in trials]
    for params in queued:
        assert ran.count(params) == 1
    workers = min(4, len(os.sched_getaffinity(0)))  # --jobs is capped at the cores
    assert len({t.user_attrs["worker"] for t in trials}) == workers
    if workers < 4:
        assert f"--jobs 4 capped to {workers}: this machine has {workers} cores" in out
    for t in trials:
        meta = json.loads((results / "par" / "trials" / str(t.number) / "trial.json").read_text())
        assert meta["state"] == "COMPLETE" and meta["params"] == t.params
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == 16 and lines[-1].startswith("[16/16]")


@pytest.mark.slow
def test_workers_are_recycled_and_get_their_thread_share_and_gpu(tmp_path, cli, monkeypatch):
    path = write_fast_study(tmp_path, n=8)
    report = tmp_path / "env"
    report.mkdir()
    monkeypatch.setenv("TUNECB_TEST_REPORT", str(report))  # the workers inherit it
    code, _, err = cli("search", path, "--results", tmp_path / "r", "--jobs", "2",
                       "--worker-trials", "2", "--gpus", "0,1")  # fmt: skip
    assert code == 0, err
    trials = journal_study(tmp_path / "r", "par").trials
    assert len(trials) == 8 and {t.state.name for t in trials} == {"COMPLETE"}
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 4  # 2 slots x 2 trials each, then replaced
    seen = [json.loads(p.read_text()) for p in report.iterdir()]
    # A replacement started while the last trial was still being asked for can find nothing
    # left and exit: one more worker start than workers that ran trials is allowed.
    assert 4 <= len(seen) <= 5
    assert sorted({s["gpu"] for s in seen}) == ["0", "1"]
    cores = len(os.sched_getaffinity(0))
    assert {s["threads"] for s in seen} == {max(1, cores // 2)}


@pytest.mark.slow
def test_a_killed_worker_loses_nothing_and_its_trial_runs_again(tmp_path):
    path = write_fast_study(tmp_path, n=3, epochs=30, rows=4096, split=3072)
    results = tmp_path / "r"
    command = [sys.executable, "-m", "tunecb", "search", str(path), "--results", str(results),
               "--jobs", "2", "--backup-every", "0"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = None
    deadline = time.monotonic() + 180
    while victim is None and time.monotonic() < deadline:
        time.sleep(0.3)
        for t in trials_so_far(results, "par"):
            if t.state.name == "RUNNING" and len(t.intermediate_values) >= 3:
                victim = t
                break
    assert victim is not None, "no trial reached epoch 3"
    os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    trials = journal_study(results, "par").trials
    dead = trials[victim.number]
    assert dead.state.name == "FAIL" and dead.user_attrs["stop_reason"] == "worker_died"
    assert "SIGKILL" in dead.user_attrs["error"]
    reruns = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(reruns) == 1 and reruns[0].params == victim.params
    assert reruns[0].state.name == "COMPLETE"
    finished = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(finished) == 3  # the study still ends with the requested trials
    # The rerun resumed from the dead attempt's last backed-up epoch, not from epoch 0,
    # with the dead attempt's history carried over and continued without a gap.
    rerun = reruns[0]
    reached = len(victim.intermediate_values)
    assert rerun.user_attrs["resumed_from_epoch"] >= reached
    rows = (results / "par" / "trials" / str(rerun.number) / "history.csv").read_text()
    epochs = [int(float(line.split(",")[0])) for line in rows.strip().splitlines()[1:]]
    assert epochs == list(range(1, 31))
    assert rerun.user_attrs["epochs_run"] == 30 and sorted(rerun.intermediate_values) == epochs
    assert not any((results / "par" / "backups").iterdir())  # cleaned up when trials ended


def test_a_negative_jobs_is_a_one_line_error(tmp_path, cli):
    path = write_fast_study(tmp_path)
    code, _, err = cli("search", path, "--results", tmp_path / "r", "--jobs", "-1")
    assert code == 2
    assert err.strip().count("\n") == 0 and "--jobs" in err


@pytest.mark.slow
def test_a_killed_search_process_is_recovered_by_the_next_run(tmp_path, cli):
    # No --jobs: the trial runs in the `tunecb search` process itself, which is killed.
    path = write_fast_study(tmp_path, n=2, epochs=20, rows=4096, split=3072)
    results = tmp_path / "r"
    command = [sys.executable, "-m", "tunecb", "search", str(path), "--results", str(results),
               "--backup-every", "0"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = None
    deadline = time.monotonic() + 180
    while victim is None and time.monotonic() < deadline:
        time.sleep(0.3)
        running = [t for t in trials_so_far(results, "par") if t.state.name == "RUNNING"]
        running = [t for t in running if len(t.intermediate_values) >= 3]
        victim = running[0] if running else None
    assert victim is not None
    proc.kill()
    proc.wait()
    # The next run of the same command (in this process: the same code, no second start-up)
    code, out, err = cli(*command[3:])
    assert code == 0, err
    assert f"trials [{victim.number}] were left running" in out
    trials = journal_study(results, "par").trials
    assert trials[victim.number].user_attrs["stop_reason"] == "worker_died"
    rerun = next(t for t in trials if t.system_attrs.get("failed_trial") == victim.number)
    assert rerun.state.name == "COMPLETE" and rerun.params == victim.params
    assert rerun.user_attrs["resumed_from_epoch"] >= 3
    assert sum(t.state.name == "COMPLETE" for t in trials) == 2


@pytest.mark.slow
def test_ctrl_c_stops_every_worker_and_the_same_command_continues(tmp_path, cli):
    path = write_fast_study(tmp_path, n=4, epochs=300, rows=4096, split=3072)
    results = tmp_path / "r"
    command = [sys.executable, "-m", "tunecb", "search", str(path), "--results", str(results),
               "--jobs", "2"]  # fmt: skip
    # A terminal's Ctrl-C reaches the whole foreground process group: do the same.
    proc = _start_and_wait_for_epochs(command, results, epochs=2, trials=2)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Run the same command again" in err and "Traceback" not in err
    trials = journal_study(results, "par").trials
    assert not [t for t in trials if t.state.name == "RUNNING"]
    stopped = [t for t in trials if t.user_attrs.get("stop_reason") == "interrupted"]
    assert len(stopped) == 2
    code, out, err = cli(*command[3:], "--epochs", "1")  # again, in this process
    assert code == 0, err
    assert "continuing study 'par'" in out
    trials = journal_study(results, "par").trials
    assert sum(t.state.name == "COMPLETE" for t in trials) == 4


@pytest.mark.slow
def test_a_worker_above_the_memory_ceiling_is_replaced(tmp_path, cli):
    path = write_fast_study(tmp_path, n=2)  # each worker pays a TensorFlow start-up
    code, _, err = cli(
        "search", path, "--results", tmp_path / "r", "--jobs", "1", "--worker-memory", "1"
    )  # 1 MiB; the launcher in this process
    assert code == 0, err
    trials = journal_study(tmp_path / "r", "par").trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 2
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # one trial per worker


def _start_and_wait_for_epochs(command: list, results: Path, epochs: int = 2, trials: int = 1):
    """Start ``command`` in a session of its own; return it once ``trials`` trials ran
    ``epochs`` epochs each."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        time.sleep(0.3)
        study_trials = trials_so_far(results, "par")
        if sum(len(t.intermediate_values) >= epochs for t in study_trials) >= trials:
            return proc
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("no trial got going within 180 s")


def _group_ends(pgid: int, within: float) -> bool:
    """Whether every process of the session ``pgid`` has exited within ``within`` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [[], ["--jobs", "1"]], ids=["in-process", "jobs"])
def test_sigterm_to_the_launcher_stops_the_search_like_ctrl_c(tmp_path, jobs):
    """A job scheduler's SIGTERM (to the launcher only): workers stopped, the running trial
    marked interrupted and queued again, exit 143, no process left behind."""
    path = write_fast_study(tmp_path, n=3, epochs=300, rows=4096, split=3072)
    results = tmp_path / "r"
    proc = _start_and_wait_for_epochs(
        [sys.executable, "-m", "tunecb", "search", str(path), "--results", str(results),
         *jobs], results,
    )  # fmt: skip
    try:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 143, err
        assert "terminated by SIGTERM" in err and "Traceback" not in err
        assert _group_ends(proc.pid, within=30), "a worker outlived its launcher"
    finally:
        _kill_group(proc.pid)
    trials = journal_study(results, "par").trials
    assert not [t for t in trials if t.state.name == "RUNNING"]
    assert [t.user_attrs.get("stop_reason") for t in trials if t.state.name == "FAIL"] == [
        "interrupted"
    ]
    assert any(t.state.name == "WAITING" for t in trials)  # queued again for the next run


@pytest.mark.slow
def test_a_killed_launcher_takes_its_workers_with_it(tmp_path):
    """SIGKILL leaves the launcher no say: the worker gets the parent-death signal, marks
    its trial interrupted and exits, instead of running trials nobody watches."""
    path = write_fast_study(tmp_path, n=3, epochs=300, rows=4096, split=3072)
    results = tmp_path / "r"
    proc = _start_and_wait_for_epochs(
        [sys.executable, "-m", "tunecb", "search", str(path), "--results", str(results),
         "--jobs", "1"], results,
    )  # fmt: skip
    try:
        proc.kill()
        proc.communicate(timeout=60)
        assert _group_ends(proc.pid, within=60), "the worker went on without its launcher"
    finally:
        _kill_group(proc.pid)
    trials = journal_study(results, "par").trials
    assert not [t for t in trials if t.state.name == "RUNNING"]
    assert [t.user_attrs.get("stop_reason") for t in trials if t.state.name == "FAIL"] == [
        "interrupted"
    ]
