"""--mlflow: real searches recorded in a real MLflow tracking server on loopback (SQLite
backend, artifacts served by it), read back through MLflow's own client.

The server is started once for the module in a session of its own and stopped (its whole
process group) at the end; a watchdog stops it too when the test process is killed."""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import DEFAULT_SETTINGS, trial_json, write_study

mlflow = pytest.importorskip("mlflow")
pytestmark = pytest.mark.slow

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _watchdog(pid: int, server_pid: int) -> subprocess.Popen:
    """Stops the server's process group when the test process ``pid`` is gone."""
    script = (
        f"while kill -0 {pid} 2>/dev/null; do sleep 1; done; "
        f"kill -TERM -{server_pid} 2>/dev/null; sleep 5; kill -KILL -{server_pid} 2>/dev/null"
    )
    return subprocess.Popen(
        ["sh", "-c", script], start_new_session=True, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _stop(proc: subprocess.Popen) -> None:
    """The server's whole process group (uvicorn's worker too): TERM, then KILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # a uvicorn worker may outlive its parent
    proc.wait(10)


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory):
    """``http://127.0.0.1:PORT`` of a real MLflow server of this module
    (``TUNECB_TEST_MLFLOW_URL``: one already running, with none of these experiments yet,
    where starting one takes minutes, as on a loaded machine)."""
    if os.environ.get("TUNECB_TEST_MLFLOW_URL"):
        yield os.environ["TUNECB_TEST_MLFLOW_URL"]
        return
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    argv = [
        sys.executable, "-m", "mlflow", "server", "--host", HOST, "--port", str(port),
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"), "--workers", "1",
    ]  # fmt: skip
    log = open(root / "server.log", "wb")  # noqa: SIM115 (closed at the end)
    proc = subprocess.Popen(
        argv, start_new_session=True, stdin=subprocess.DEVNULL, stdout=log, stderr=log
    )
    watchdog = _watchdog(os.getpid(), proc.pid)
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 180  # ~45 s on a busy 2-core machine
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {shlex.join(argv)}\n"
                            f"{(root / 'server.log').read_text()[-2000:]}")  # fmt: skip
            time.sleep(0.5)
        yield url
    finally:
        _stop(proc)
        watchdog.kill()
        watchdog.wait()
        log.close()


def runs(url: str, experiment: str):
    """``(parent, {trial number: child run})`` of an experiment."""
    client = mlflow.tracking.MlflowClient(url)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}"
    every = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in every if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    children = {int(r.data.tags["tunecb.trial"]): r for r in every if r not in parents}
    assert len(children) == len(every) - 1, "two runs of one trial"
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
               for r in children.values())  # fmt: skip
    return client, parents[0], children


def check_child(client, run, results: Path, study: str, number: int) -> None:
    """A child run holds the trial's params, state, seed, versions and every epoch."""
    record = trial_json(results, study, number)
    assert run.data.params == {k: str(v) for k, v in record["params"].items()}
    tags = run.data.tags
    assert tags["tunecb.state"] == record["state"] and tags["tunecb.recorded"] == "true"
    assert tags["tunecb.stop_reason"] == record["stop_reason"]
    assert tags["tunecb.seed"] == str(record["seed"])
    assert tags["tunecb.backend"] == record["versions"]["backend"]
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert sorted(m.step for m in history) == list(range(1, record["epochs_run"] + 1))
    assert run.info.status == "FINISHED"


def without_mlflow(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import mlflow`` fails: tunecb's REST client must do."""
    blocker = tmp_path / "blocker" / "mlflow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('a search imported mlflow')\n")
    path = os.pathsep.join([str(blocker.parent), *sys.path])
    return {**os.environ, "PYTHONPATH": path}


def test_search_with_two_workers_is_one_parent_with_a_child_per_trial(tmp_path, mlflow_url):
    """The launcher and both workers record through the REST client: none imports mlflow."""
    results = tmp_path / "results"
    path = write_study(tmp_path, name="tracked")
    proc = subprocess.run(
        [sys.executable, "-m", "tunecb", "search", str(path), "--results", str(results),
         "--jobs", "2", "--mlflow", mlflow_url],
        capture_output=True, text=True, timeout=600, env=without_mlflow(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "MLflow" not in proc.stderr  # no gap
    client, parent, children = runs(mlflow_url, "tracked")
    assert sorted(children) == [0, 1, 2]
    for number, run in children.items():
        check_child(client, run, results, "tracked", number)
    best = trial_json(results, "tracked", int(parent.data.tags["tunecb.best_trial"]))
    assert parent.data.metrics["best_value"] == pytest.approx(best["value"])
    assert parent.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == ["report.html"]
    # The best checkpoint, downloaded from the server, loads in safe mode and evaluates to
    # the recorded value on the validation data.
    import keras
    from sklearn.datasets import load_digits

    run = children[best["number"]]
    local = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="checkpoint/best.keras",
        dst_path=str(tmp_path / "download"), tracking_uri=mlflow_url,
    )  # fmt: skip
    model = keras.saving.load_model(local, safe_mode=True)
    x, y = load_digits(return_X_y=True)
    x = (x[:500] / 16.0).astype("float32")
    scores = model.evaluate(x[400:], y[:500][400:], verbose=0, return_dict=True)
    assert scores["accuracy"] == pytest.approx(best["value"], abs=1e-6)


def test_a_server_that_is_down_stops_the_search_in_one_line_before_any_trial(tmp_path, cli):
    url = f"http://user:s3cret@{HOST}:{free_port()}"
    path = write_study(tmp_path, name="down")
    started = time.monotonic()
    code, out, err = cli("search", path, "--results", tmp_path / "results", "--mlflow", url)
    assert code == 1, err
    assert time.monotonic() - started < 30
    line = err.strip()
    assert "\n" not in line and "s3cret" not in line + out
    assert f"http://user:***@{HOST}" in line and "cannot be reached" in line
    assert not list((tmp_path / "results" / "down").glob("trials/*"))  # no trial ran


# The study cuts the connection to the tracker (through the test's proxy) when trial 1 begins.
CUT = """
import os
import pathlib

import keras


class Cut(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        pathlib.Path(os.environ["CUT_FILE"]).touch()


@study.callbacks
def callbacks(trial):
    return [Cut()] if trial.number == 1 else []
"""


class Proxy:
    """A TCP proxy to the server that drops every connection, and refuses new ones, while
    the file ``cut`` exists."""

    def __init__(self, target: str, cut: Path) -> None:
        host, port = target.removeprefix("http://").split(":")
        self.target, self.cut = (host, int(port)), cut
        self.listener = socket.create_server((HOST, 0))
        self.url = f"http://{HOST}:{self.listener.getsockname()[1]}"
        self.stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stopped:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            if self.cut.exists():
                conn.close()
                continue
            threading.Thread(target=self._pipe, args=(conn,), daemon=True).start()

    def _pipe(self, conn: socket.socket) -> None:
        with conn, socket.create_connection(self.target) as upstream:
            while not self.stopped and not self.cut.exists():
                ready, _, _ = select.select([conn, upstream], [], [], 0.2)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is conn else conn).sendall(data)

    def close(self) -> None:
        self.stopped = True
        self.thread.join()
        self.listener.close()


def test_a_tracker_gone_mid_search_leaves_a_gap_that_sync_fills(
    tmp_path, mlflow_url, cli, monkeypatch
):
    cut = tmp_path / "cut"
    monkeypatch.setenv("CUT_FILE", str(cut))
    proxy = Proxy(mlflow_url, cut)
    try:
        results = tmp_path / "results"
        path = write_study(tmp_path, name="gap", settings=DEFAULT_SETTINGS, extra=CUT)
        code, out, err = cli("search", path, "--results", results, "--mlflow", proxy.url)
        assert code == 0, err
        assert "tunecb sync" in err and "MLflow" in err, err  # the gap, named
        assert len(list((results / "gap" / "trials").glob("*/trial.json"))) == 3
        cut.unlink()  # the tracker is back
        code, out, err = cli("sync", results / "gap", "--mlflow", proxy.url)
        assert code == 0, err
        client, parent, children = runs(mlflow_url, "gap")
        assert sorted(children) == [0, 1, 2]
        for number, run in children.items():
            check_child(client, run, results, "gap", number)
        assert parent.info.status == "FINISHED"
    finally:
        proxy.close()


def test_a_study_keeps_its_parent_run_and_a_resumed_trial_its_child_run(tmp_path):
    """MLflow's own client on a SQLite store (no server): a second search of the study
    reopens its parent run; a rerun of a trial reopens the dead attempt's run and adds only
    the epochs after those it holds."""
    import optuna

    from tunecb.tracking import PARENT_RUN, TrialRecord
    from tunecb.tracking.mlflow_tracker import MlflowTracker
    from tunecb.tracking.search import SearchTracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = optuna.create_study(study_name="again")
    first = SearchTracking.open(uri, "again", study).parent
    assert study.user_attrs[PARENT_RUN]["run_id"] == first
    assert SearchTracking.open(uri, "again", study).parent == first
    tracker = MlflowTracker.open(uri, "again")
    run = tracker.start_trial(first, 0, None)
    tracker.log_epochs(run, [{"epoch": e, "loss": 1.0 / e} for e in (1, 2)])
    assert tracker.start_trial(first, 1, run) == run  # the rerun continues it
    history = [{"epoch": e, "loss": 1.0 / e} for e in (1, 2, 3)]
    record = TrialRecord(number=1, state="COMPLETE", params={"units": 8}, history=history)
    tracker.finish_trial(run, record, tracker.logged_epochs(run))
    client = mlflow.tracking.MlflowClient(uri)
    steps = [m.step for m in client.get_metric_history(run, "loss")]
    assert sorted(steps) == [1, 2, 3]
    assert tracker.recorded(first) == {1}
    assert client.get_run(run).info.status == "FINISHED"
    assert type(tracker.client).__name__ == "MlflowClientAdapter"  # MLflow's own client


@pytest.mark.parametrize("kind", ["rest", "mlflow"])
def test_both_clients_leave_the_same_record_on_a_server(tmp_path, mlflow_url, kind):
    """Every request of the tracker, through tunecb's REST client and through MLflow's,
    against the real server: more params than one log-batch takes, a reopened
    run, a stray deleted, an artifact that downloads to the same bytes, a search aborted."""
    from tunecb.tracking import TrialRecord
    from tunecb.tracking.mlflow_client import MlflowClientAdapter
    from tunecb.tracking.mlflow_tracker import MlflowTracker
    from tunecb.tracking.rest_client import RestClient

    client = RestClient(mlflow_url) if kind == "rest" else MlflowClientAdapter(mlflow_url)
    tracker = MlflowTracker(mlflow_url, f"clients-{kind}", client)
    parent = tracker.start_search("s", None)
    run = tracker.start_trial(parent, 0, None)
    tracker.log_epochs(run, [{"epoch": e, "loss": 1.0 / e} for e in (1, 2, 3)])
    assert tracker.start_trial(parent, 0, run) == run and tracker.logged_epochs(run) == 3
    assert tracker.start_trial(parent, 1, "0" * 32) != "0" * 32  # unknown: a new run
    checkpoint = tmp_path / "best.keras"
    checkpoint.write_bytes(bytes(range(256)) * 40)
    params = {f"p{i}": i for i in range(120)}  # MLflow takes 100 params a request
    history = [{"epoch": e, "loss": 1.0 / e} for e in range(1, 41)]
    record = TrialRecord(0, "COMPLETE", params=params, value=0.5, best_epoch=2, seed=7,
                         history=history, checkpoint=checkpoint)  # fmt: skip
    tracker.finish_trial(run, record, tracker.logged_epochs(run))
    assert tracker.strays(parent, 0) == []
    (stray,) = tracker.strays(parent, 1)
    tracker.discard(stray)
    report = tmp_path / "report.html"
    report.write_text("<html>report</html>")
    tracker.end_search(parent, {"number": 0, "value": 0.5, "params": {"p0": 0}}, report)
    assert tracker.recorded(parent) == {0}

    own = mlflow.tracking.MlflowClient(mlflow_url)
    child = own.get_run(run)
    assert child.data.params == {k: str(v) for k, v in params.items()}
    assert child.data.tags["tunecb.recorded"] == "true" and child.data.tags["tunecb.seed"] == "7"
    steps = sorted(m.step for m in own.get_metric_history(run, "loss"))
    assert steps == list(range(1, 41))  # every epoch once
    assert child.data.metrics["best_value"] == 0.5
    assert child.info.status == "FINISHED" and child.info.end_time is not None
    local = own.download_artifacts(run, "checkpoint/best.keras", str(tmp_path / "down"))
    assert Path(local).read_bytes() == checkpoint.read_bytes()
    assert own.get_run(stray).info.lifecycle_stage == "deleted"
    top = own.get_run(parent)
    assert top.info.status == "FINISHED" and top.data.tags["tunecb.best.p0"] == "0"
    assert [a.path for a in own.list_artifacts(parent)] == ["report.html"]

    second = tracker.start_search("s2", None)
    running = tracker.start_trial(second, 0, None)
    tracker.abort(second, "KILLED")
    assert {own.get_run(r).info.status for r in (second, running)} == {"KILLED"}


# Ctrl-C during trial 1's second epoch (a real SIGINT, as from the terminal).
CTRL_C = """
import signal

import keras


class CtrlC(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            signal.raise_signal(signal.SIGINT)


@study.callbacks
def callbacks(trial):
    return [CtrlC()] if trial.number == 1 else []
"""


def test_ctrl_c_ends_the_runs_killed_and_the_next_search_continues_them(tmp_path, mlflow_url, cli):
    results = tmp_path / "results"
    settings = DEFAULT_SETTINGS.replace("epochs=3", "epochs=4")
    path = write_study(tmp_path, name="ctrlc", settings=settings, extra=CTRL_C)
    code, out, err = cli("search", path, "--results", results, "--mlflow", mlflow_url)
    assert code == 130, err
    client, parent, children = runs(mlflow_url, "ctrlc")
    assert parent.info.status == "KILLED"
    assert children[0].info.status == "FINISHED"
    assert children[1].info.status == "KILLED"  # the interrupted trial's run
    interrupted = children[1].info.run_id
    path.write_text(path.read_text().replace("if epoch == 1", "if False"))
    code, out, err = cli("search", path, "--results", results, "--mlflow", mlflow_url)
    assert code == 0, err
    client, again, children = runs(mlflow_url, "ctrlc")
    assert again.info.run_id == parent.info.run_id and again.info.status == "FINISHED"
    # three counted trials, three runs: trial 1's rerun continued its run (now its record)
    assert len(children) == 3 and interrupted in {r.info.run_id for r in children.values()}
    for number, run in children.items():
        check_child(client, run, results, "ctrlc", number)


def test_dask_workers_record_a_complete_child_run_per_trial(tmp_path, mlflow_url, dask_cluster):
    from test_workers import write_fast_study

    path = write_fast_study(tmp_path, name="daskrun", n=3, epochs=2)
    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "tunecb", "search", str(path), "--results", str(results),
         "--jobs", "1", "--dask", dask_cluster.scheduler_address, "--mlflow", mlflow_url],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "MLflow" not in proc.stderr  # no gap
    client, parent, children = runs(mlflow_url, "daskrun")
    assert sorted(children) == [0, 1, 2] and parent.info.status == "FINISHED"
    for number, run in children.items():
        check_child(client, run, results, "daskrun", number)


def test_a_killed_worker_s_trial_continues_its_child_run(tmp_path, mlflow_url):
    from test_workers import trials_so_far, write_fast_study

    path = write_fast_study(tmp_path, name="killed", n=2, epochs=20, rows=2048, split=1536)
    results = tmp_path / "results"
    command = [sys.executable, "-m", "tunecb", "search", str(path), "--results", str(results),
               "--jobs", "2", "--backup-every", "0", "--mlflow", mlflow_url]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        victim, deadline = None, time.monotonic() + 300
        while victim is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            for t in trials_so_far(results, "killed"):
                if (
                    t.state.name == "RUNNING"
                    and len(t.intermediate_values) >= 3
                    and ("mlflow_run" in t.user_attrs)
                ):
                    victim = t
                    break
        assert victim is not None, "no trial with its run reached epoch 3"
        os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "MLflow" not in err  # no gap
    client, parent, children = runs(mlflow_url, "killed")
    assert len(children) == 2  # the rerun continued the dead attempt's run: no third run
    assert victim.user_attrs["mlflow_run"] in {r.info.run_id for r in children.values()}
    for number, run in children.items():
        check_child(client, run, results, "killed", number)  # every epoch, once
