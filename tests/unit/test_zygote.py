"""Workers forked from a zygote (:mod:`tunecb.execution.zygote`), with real processes: a
zygote that preloads nothing heavy (the mechanics are the same as with Keras; the e2e
searches of ``--jobs`` run the real one), the launcher's children, its state of now, exit
codes as ``multiprocessing`` gives them, and nothing left behind. Linux only."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tunecb.errors import ConfigError
from tunecb.execution import zygote
from tunecb.execution.zygote import ForkedProcess, Starts, Zygote

pytestmark = pytest.mark.skipif(not zygote.supported(), reason="needs Linux 5.4+ (pidfd)")


@pytest.fixture(scope="module")
def light():
    """A zygote that imports NumPy only; ended after the tests."""
    z = Zygote(dict(os.environ), preload=("numpy",))
    yield z
    z.close()
    assert z.process.poll() is not None


def _run(z: Zygote, target, *args) -> tuple[ForkedProcess, object]:
    """Fork ``target(*args, channel)``; its handle and the one thing it sent."""
    read, write = mp.Pipe(duplex=False)
    process = z.fork(target, args, "t", write, dict(os.environ))
    write.close()
    got = read.recv() if read.poll(60) else None
    process.join(timeout=60)
    return process, got


def _state(conn) -> None:
    import numpy as np

    conn.send({"ppid": os.getppid(), "env": os.environ.get("ZYGOTE_TEST"),
               "cwd": os.getcwd(), "path": list(sys.path), "argv": list(sys.argv),
               "name": mp.current_process().name, "random": float(np.random.random()),
               "comm": Path("/proc/self/comm").read_text().strip()})  # fmt: skip


def test_a_forked_worker_is_the_launchers_child_with_its_env_cwd_and_path_of_now(
    light, tmp_path, monkeypatch
):
    monkeypatch.setenv("ZYGOTE_TEST", "set after the zygote started")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path / "beside"))
    process, got = _run(light, _state)
    assert got["ppid"] == os.getpid()  # ours, not the zygote's
    assert got["env"] == "set after the zygote started"
    assert got["cwd"] == str(tmp_path) and got["path"] == sys.path and got["argv"] == sys.argv
    assert got["name"] == "t" and got["comm"] == "t"  # in ps: its own name, not the zygote's
    assert Path(f"/proc/{light.process.pid}/comm").read_text().strip() == "tunecb-zygote"
    assert process.exitcode == 0 and not process.is_alive()
    second = _run(light, _state)[1]
    assert second["random"] != got["random"]  # NumPy's random state is each worker's own


def _exit_with(code, conn) -> None:
    conn.send("ran")
    if code == "error":
        raise ValueError("a worker's own error")
    sys.exit(code)


@pytest.mark.parametrize(("how", "code"), [(None, 0), (3, 3), ("error", 1)])
def test_exit_codes_are_those_multiprocessing_gives(light, how, code, capfd):
    process, got = _run(light, _exit_with, how)
    assert got == "ran" and process.exitcode == code


def _sleep(conn) -> None:
    conn.send(os.getpid())
    time.sleep(60)


def test_a_worker_killed_through_its_handle_reports_the_signal(light):
    read, write = mp.Pipe(duplex=False)
    process = light.fork(_sleep, (), "t", write, dict(os.environ))
    write.close()
    assert read.recv() == process.pid
    process.join(timeout=0.05)
    assert process.exitcode is None and process.is_alive()
    process.kill()
    assert mp.connection.wait([process.sentinel], 30) == [process.sentinel]
    process.join()
    assert process.exitcode == -signal.SIGKILL
    process.kill()  # after its end: a no-op, never a signal to a recycled pid


LAUNCHER = """
import multiprocessing as mp, os, sys, time
from tunecb.execution.zygote import Zygote

def worker(conn):
    from tunecb.execution.processes import _stop_with_launcher
    _stop_with_launcher()  # as every --jobs worker: SIGINT when the launcher dies
    conn.send("ready")
    time.sleep(120)

z = Zygote(dict(os.environ), preload=())
read, write = mp.Pipe(duplex=False)
process = z.fork(worker, (), "w", write, dict(os.environ))
assert read.recv() == "ready"
print(process.pid, z.process.pid, flush=True)
time.sleep(120)
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_the_zygote_and_its_workers_die_with_a_sigkilled_launcher(tmp_path):
    script = tmp_path / "launcher.py"
    script.write_text(textwrap.dedent(LAUNCHER))
    env = {**os.environ, "PYTHONPATH": str(Path(zygote.__file__).parents[2])}
    launcher = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                                env=env, text=True, start_new_session=True)  # fmt: skip
    try:
        worker, zygote_pid = map(int, launcher.stdout.readline().split())
        assert not _gone(worker) and not _gone(zygote_pid)
        launcher.kill()
        launcher.wait(30)
        deadline = time.monotonic() + 30
        while not (_gone(worker) and _gone(zygote_pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(worker) and _gone(zygote_pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait(30)


def _hello(conn) -> None:
    conn.send("hello")


def test_a_worker_whose_import_time_environment_differs_is_spawned(light):
    starts = Starts(mp.get_context("spawn"), "tensorflow")
    assert starts.forking
    starts.zygote = light
    read, write = mp.Pipe(duplex=False)
    process = starts.start(_hello, (), "t", channel=write, env={"OMP_NUM_THREADS": "7"})
    write.close()
    assert read.recv() == "hello" and not isinstance(process, ForkedProcess)
    process.join(60)


def test_workers_are_spawned_for_other_backends_or_when_asked(monkeypatch):
    ctx = mp.get_context("spawn")
    assert not Starts(ctx, "jax").forking and not Starts(ctx, "torch").forking
    monkeypatch.setenv(zygote.SWITCH, "spawn")
    assert not Starts(ctx, "tensorflow").forking
    monkeypatch.setenv(zygote.SWITCH, "forkserver")
    with pytest.raises(ConfigError, match=r"TUNECB_WORKER_START='forkserver'.*zygote or spawn"):
        Starts(ctx, "tensorflow")
