"""`--dask`: the workers run on a real dask.distributed LocalCluster (worker processes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from test_limits import LIMIT_S
from test_workers import journal_study, trials_so_far, write_fast_study

distributed = pytest.importorskip("dask.distributed")


@pytest.fixture
def cluster(dask_cluster):
    """The session's cluster (tests/conftest.py), shared with the other files' Dask tests."""
    return dask_cluster


def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tunecb", "search", *args],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


@pytest.mark.slow
def test_search_on_a_dask_cluster_runs_the_budget_on_its_workers(cluster, tmp_path):
    path = write_fast_study(tmp_path, n=12, epochs=2)
    results = tmp_path / "r"
    proc = run(str(path), "--results", str(results), "--jobs", "2", "--worker-trials", "4",
               "--dask", cluster.scheduler_address)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    trials = [t for t in journal_study(results, "par").trials
              if t.user_attrs.get("stop_reason") != "discarded"]  # fmt: skip
    assert len(trials) == 12 and {t.state.name for t in trials} == {"COMPLETE"}
    with distributed.Client(cluster) as client:
        dask_pids = {str(pid) for pid in client.run(os.getpid).values()}
    ran_on = {t.user_attrs["worker"].rsplit(":", 1)[1] for t in trials}
    assert ran_on and ran_on <= dask_pids  # every trial ran in a Dask worker process
    lines = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    assert len(lines) == 12
    assert (results / "par" / "trials" / str(trials[0].number) / "best.keras").exists()


def test_a_dask_address_without_a_scheduler_fails_in_seconds(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_fast_study(tmp_path)
    started = time.monotonic()
    proc = run(str(path), "--results", str(tmp_path / "r"), "--jobs", "2",
               "--dask", f"tcp://127.0.0.1:{port}", timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no Dask scheduler answered" in proc.stderr
    assert time.monotonic() - started < 60
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_every_mode_sends_the_same_events_with_the_same_fields(cluster, tmp_path, cli):
    """In this process, --jobs 2 and --dask: one contract, so one JSON shape per event."""
    import json

    path = write_fast_study(tmp_path, n=3, epochs=2)
    modes = {
        "inline": [],
        "processes": ["--jobs", "2"],
        "dask": ["--jobs", "2", "--dask", cluster.scheduler_address],
    }
    shapes, outcomes = {}, {}
    for mode, flags in modes.items():
        results = tmp_path / mode
        args = [str(path), "--results", str(results), "--log-format", "json", *flags]
        if mode == "inline":  # the trials run in the launcher: this process will do
            code, out, err = cli("search", *args)
        else:
            proc = run(*args)
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        assert code == 0, err
        events = [json.loads(line) for line in out.splitlines()]
        shapes[mode] = {e["event"]: sorted(e) for e in events}
        start = events[0]
        assert start["event"] == "start" and start["mode"] == mode
        trials = [e for e in events if e["event"] == "trial"]
        assert len(trials) == 3 and events[-1]["event"] == "summary"
        assert all(e["epoch"] >= 1 for e in events if e["event"] == "epoch")
        stored = {t.number: t for t in journal_study(results, "par").trials}
        for event in trials:
            trial = stored[event["trial"]]
            assert event["state"] == trial.state.name
            assert event["value"] == trial.user_attrs["best_value"]
            assert event["worker"] == trial.user_attrs["worker"]
            assert event["checkpoint"] == trial.user_attrs["checkpoint"]
        outcomes[mode] = {e["event"] for e in events}
    assert shapes["inline"] == shapes["processes"] == shapes["dask"]
    assert outcomes["inline"] == {"start", "trial_start", "epoch", "trial", "summary"}


@pytest.mark.slow
def test_dask_workers_pause_and_promote(cluster, tmp_path):
    """The promotion pruner on the Dask workers (this file's cluster, shared: its worker
    processes have imported Keras already)."""
    from tunecb.oracle import attrs, budget

    path = write_fast_study(tmp_path, name="pd", n=5, epochs=4)
    results = tmp_path / "r"
    proc = run(str(path), "--results", str(results), "--jobs", "2",
               "--dask", cluster.scheduler_address, "--pruner", "promotion")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    trials = journal_study(results, "pd").get_trials(deepcopy=False)
    assert budget.finished(trials) == 5
    made = [t.system_attrs[attrs.PROMOTED_FROM] for t in trials
            if attrs.PROMOTED_FROM in t.system_attrs]  # fmt: skip
    assert made and len(made) == len(set(made))
    assert any(t.state.name == "COMPLETE" for t in trials)


@pytest.mark.slow
def test_ctrl_c_on_a_dask_search_is_answered_at_once(cluster, tmp_path):
    """The launcher answers within seconds; the tasks stop after their current trial."""
    import signal

    path = write_fast_study(tmp_path, n=50, epochs=30, rows=400, split=300)
    results = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunecb", "search", str(path), "--results", str(results),
         "--jobs", "1", "--dask", cluster.scheduler_address],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if any(  # the journal file is there before the study is in it: trials_so_far
                t.state.name == "RUNNING" and t.intermediate_values
                for t in trials_so_far(results, "par")
            ):
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        answered = time.monotonic() - sent
        assert proc.returncode == 130, err
        assert "interrupted" in err and "Traceback" not in err
        assert answered < 5, f"the launcher took {answered:.1f} s"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_time_limits_and_memory_deaths_hold_on_a_dask_cluster(cluster, tmp_path):
    """Issue 21 under ``--dask``: a trial past ``trial_timeout`` stops at its next epoch end
    (COMPLETE, ``time_limit``); one out of memory (a real ``ResourceExhaustedError``) runs
    again once, then FAILs ``killed``; the search ends with its budget."""
    from test_limits import OOM_STUDY, memory_deaths_then_killed

    study = OOM_STUDY.format(n=2, seed=11)
    study = study.replace("epochs=1,", f"epochs=40, trial_timeout={LIMIT_S},")
    study += (
        "\nimport time\n\nclass Crawl(keras.callbacks.Callback):\n"
        "    def on_epoch_end(self, epoch, logs=None):\n        time.sleep(0.3)\n\n"
        "@study.callbacks\ndef crawl(trial):\n    return [Crawl()]\n"
    )
    path = tmp_path / "oom.py"
    path.write_text(study)
    results = tmp_path / "r"
    proc = run(str(path), "--results", str(results), "--jobs", "1",
               "--dask", cluster.scheduler_address, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    trials = journal_study(results, "oom").trials
    small = [t for t in trials if t.params["size"] == "small"]
    assert [(t.state.name, t.user_attrs["stop_reason"]) for t in small] == [
        ("COMPLETE", "time_limit")
    ]
    assert 1 <= small[0].user_attrs["epochs_run"] < 40
    _, last = memory_deaths_then_killed(trials)
    assert last.user_attrs["error"].startswith("out of memory 2 times (ResourceExhausted")


@pytest.mark.slow
def test_a_trial_stuck_in_its_builder_on_dask_fails_and_its_worker_is_restarted(
    cluster, tmp_path
):
    """Issue 21 under ``--dask``: a trial whose builder never returns never reaches an epoch
    end; past ``trial_timeout`` and its grace the launcher fails it (``time_limit``) and has
    its Dask worker restarted; the rescheduled task runs the rest of the budget."""
    path = write_fast_study(tmp_path, name="stuck", n=3, epochs=2)
    limit = f"pruner=\"none\", trial_timeout={LIMIT_S},"
    text = path.read_text().replace("pruner=\"none\",", limit)
    text = text.replace(
        "    units = trial.suggest_int",
        "    if trial.number == 0:\n        import time\n        time.sleep(3600)\n"
        "    units = trial.suggest_int",
    )
    path.write_text(text)
    results = tmp_path / "r"
    proc = run(str(path), "--results", str(results), "--jobs", "1",
               "--dask", cluster.scheduler_address, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    trials = journal_study(results, "stuck").trials
    first = trials[0]
    assert (first.state.name, first.user_attrs["stop_reason"]) == ("FAIL", "time_limit")
    assert "its process was ended" in first.user_attrs["error"]
    assert [t.state.name for t in trials[1:]] == ["COMPLETE", "COMPLETE"]
