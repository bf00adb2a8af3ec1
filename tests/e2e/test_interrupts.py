"""Interruptions and trials left RUNNING (issue 18, finding 7): a Ctrl-C that user code wraps
or that C code turns into another error is still an interruption (the trial is queued again,
never counted as the trial's own failure); a trial left RUNNING by a killed launcher is rerun
when the next run has the same PID (a container's PID 1), and one left by another machine is
named at start and can be released with ``tunecb repair --release-running``. Real fits, real
processes, real journals."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import DEFAULT_SETTINGS, write_study
from test_workers import journal_study

WRAPS_CTRL_C = """
import signal

import keras


class WrapsCtrlC(keras.callbacks.Callback):
    # A data pipeline that wraps whatever stops it, as user code does.
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            try:
                signal.raise_signal(signal.SIGINT)
                for _ in range(10_000):  # the handler runs here
                    pass
            except BaseException as exc:
                raise RuntimeError("data pipeline aborted") from exc


@study.callbacks
def user_callbacks(trial):
    return [WrapsCtrlC()]
"""

C_CODE_MEETS_CTRL_C = """
import signal

import keras


class CCodeMeetsCtrlC(keras.callbacks.Callback):
    # C code that meets the pending interrupt: the KeyboardInterrupt is cleared, and what
    # escapes is another error, without the interrupt in its chain.
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            try:
                signal.raise_signal(signal.SIGINT)
                for _ in range(10_000):
                    pass
            except KeyboardInterrupt:
                pass
            raise SystemError("Objects/listobject.c:338: bad argument to internal function")


@study.callbacks
def user_callbacks(trial):
    return [CCodeMeetsCtrlC()]
"""


@pytest.mark.parametrize("extra", [WRAPS_CTRL_C, C_CODE_MEETS_CTRL_C], ids=["wrapped", "c-code"])
def test_a_ctrl_c_that_user_or_c_code_turns_into_another_error_is_an_interruption(
    tmp_path, cli, extra
):
    path = write_study(tmp_path, settings=DEFAULT_SETTINGS.replace("epochs=3", "epochs=5"),
                       extra=extra)  # fmt: skip
    code, out, err = cli("search", str(path), "--results", str(tmp_path / "r"))
    assert code == 130, out + err
    assert "interrupted" in err
    trial = journal_study(tmp_path / "r", "tiny").trials[0]
    assert trial.state.name == "FAIL"
    assert trial.user_attrs["stop_reason"] == "interrupted", trial.user_attrs
    queued = journal_study(tmp_path / "r", "tiny").trials[1]
    assert queued.state.name == "WAITING" and queued.params == trial.params


PID1_STUDY = """
import os
import time


class HangsInTrial1(keras.callbacks.Callback):
    def __init__(self, number):
        self.number = number

    def on_epoch_end(self, epoch, logs=None):
        marker = os.environ.get("TUNECB_TEST_MARKER")
        if marker and self.number == 1:
            open(marker, "w").close()
            time.sleep(600)  # killed from outside while the trial runs


@study.callbacks
def user_callbacks(trial):
    return [HangsInTrial1(trial.number)]
"""


def _as_pid_1(*args: str) -> list[str]:
    """The command run as PID 1 of a new PID namespace (as a container's entrypoint)."""
    return ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", *args]


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(_as_pid_1("sh", "-c", "echo $$"), capture_output=True, text=True)
    return probe.returncode == 0 and probe.stdout.strip() == "1"


@pytest.mark.timeout(600)
@pytest.mark.skipif(not _unshare_works(), reason="no unprivileged PID namespaces here")
def test_a_trial_left_running_by_a_killed_pid_1_is_rerun_by_the_next_pid_1(tmp_path):
    path = write_study(tmp_path, extra=PID1_STUDY)
    results = tmp_path / "r"
    marker = tmp_path / "trial-1-running"
    command = [sys.executable, "-m", "tunecb", "search", str(path), "--results", str(results)]
    env = {**os.environ, "TUNECB_JOBS": "0", "TUNECB_TEST_MARKER": str(marker)}
    first = subprocess.Popen(_as_pid_1(*command), env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert first.poll() is None, first.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "trial 1 never started"
            time.sleep(0.2)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the container is killed: no handler runs
        first.wait()
        first.stderr.close()
    trials = journal_study(results, "tiny").trials
    assert [t.state.name for t in trials] == ["COMPLETE", "RUNNING"]
    assert trials[1].user_attrs["worker"] == f"{socket.gethostname()}:1"

    env.pop("TUNECB_TEST_MARKER")
    again = subprocess.run(_as_pid_1(*command), env=env, capture_output=True, text=True,
                           timeout=400)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "trials [1] were left running by a process on this machine that died" in (
        again.stdout + again.stderr
    )
    trials = journal_study(results, "tiny").trials
    assert not [t for t in trials if t.state.name == "RUNNING"]
    counted = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(counted) == 3
    assert trials[1].user_attrs["stop_reason"] == "worker_died"


def _leave_running_on_another_host(results: Path, host: str = "node-gone") -> int:
    """Start a trial in the study's journal as a launcher on ``host`` does, and leave it."""
    study = journal_study(results, "tiny")
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 3e-2, log=True),
                       "units": optuna.distributions.IntDistribution(8, 32)})  # fmt: skip
    trial.set_user_attr("worker", f"{host}:4242")
    return trial.number


def test_a_trial_left_running_by_another_host_is_named_and_can_be_released(tmp_path, cli):
    path = write_study(tmp_path, settings=DEFAULT_SETTINGS.replace("n_trials=3", "n_trials=2"))
    results = tmp_path / "r"
    assert cli("search", str(path), "--results", str(results), "--n-trials", "1")[0] == 0
    number = _leave_running_on_another_host(results)
    code, out, err = cli("search", str(path), "--results", str(results))
    assert code == 0, out + err
    text = out + err
    assert f"trial {number} is RUNNING, owned by host node-gone pid 4242" in text, text
    assert f"tunecb repair {results / 'tiny'} --release-running" in text, text
    assert journal_study(results, "tiny").trials[number].state.name == "RUNNING"

    code, out, err = cli("repair", str(results / "tiny"), "--release-running")
    assert code == 0, out + err
    assert f"released 1 trial ({number})" in out, out
    trials = journal_study(results, "tiny").trials
    assert trials[number].state.name == "FAIL"
    assert trials[number].user_attrs["stop_reason"] == "worker_died"
    assert trials[-1].state.name == "WAITING" and trials[-1].params == trials[number].params
    code, out, err = cli("search", str(path), "--results", str(results), "--n-trials", "3")
    assert code == 0, out + err
    trials = journal_study(results, "tiny").trials
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    assert "node-gone" not in out + err  # nothing left to name


def test_release_running_leaves_a_live_process_of_this_machine_alone(tmp_path, cli):
    path = write_study(tmp_path)
    results = tmp_path / "r"
    assert cli("search", str(path), "--results", str(results), "--n-trials", "1")[0] == 0
    mine = _leave_running_on_another_host(results, host=socket.gethostname())
    study = journal_study(results, "tiny")
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, mine)
    # a live process of this machine other than this one (this one runs no search now: its
    # own trials left RUNNING are dead to it, attempts.owner_runs)
    live = f"{socket.gethostname()}:{os.getppid()}"
    study._storage.set_trial_user_attr(trial_id, "worker", live)
    code, out, err = cli("repair", str(results / "tiny"), "--release-running")
    assert code == 0, out + err
    assert "no trial to release" in out and "is alive" in out, out
    assert journal_study(results, "tiny").trials[mine].state.name == "RUNNING"


def test_a_ctrl_c_that_the_data_pipeline_wraps_stops_the_search_as_an_interruption(tmp_path, cli):
    path = write_study(tmp_path)
    path.write_text(path.read_text().replace(
        "    x, y = load_digits(return_X_y=True)",
        "    import signal\n"
        "    try:\n"
        "        signal.raise_signal(signal.SIGINT)\n"
        "        for _ in range(10_000):\n"
        "            pass\n"
        "    except BaseException as exc:\n"
        "        raise RuntimeError('data pipeline aborted') from exc\n"
        "    x, y = load_digits(return_X_y=True)",
    ))  # fmt: skip
    code, out, err = cli("search", str(path), "--results", str(tmp_path / "r"))
    assert code == 130, out + err
    assert "interrupted" in err and "data pipeline aborted" not in err
