"""W&B's tracker process (tunecb.tracking.remote): a real child process serving a fake
tracker class (written to a module the child imports): the calls run there, its state
stays there, what it raises comes back (a missing extra as the same ConfigError, a
refusal as the search's one-line error), a child that died fails the calls without
hanging, and the child stops with the last tracker; the worker processes started after it
share it (a dead worker's runs there end killed). The real wandb through it:
tests/e2e/test_wandb.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from tunecb.errors import ConfigError
from tunecb.tracking._base import WANDB, TrackingError
from tunecb.tracking.remote import (
    ENV,
    Connected,
    RemoteTracker,
    TrackerProcess,
    TrackerProcessError,
    shared_env,
)
from tunecb.tracking.search import Connecting
from tunecb.tracking.targets import Target

FAKE = """
import os
import subprocess
import sys
import time
from tunecb.errors import ConfigError

class Fake:
    shown = "fake-project"

    def __init__(self, uri, experiment):
        self.epochs = []

    @classmethod
    def open(cls, uri, experiment):
        if uri == "missing":
            raise ConfigError("--wandb missing needs the wandb package")
        return cls(uri, experiment)

    def start_search(self, name, previous):
        if name == "refused":
            raise RuntimeError("403: project refused")
        return f"search-{os.getpid()}"

    def log_epochs(self, run_id, rows):
        self.epochs += [row["epoch"] for row in rows]

    def logged_epochs(self, run_id):
        return max(self.epochs, default=0)

    def strays(self, parent, number):
        os._exit(3)  # the tracker process dies

    def imported(self, names):
        import sys
        return [name for name in names if name in sys.modules]

    def abort(self, parent, status):
        with open(os.environ["FAKE_ABORTED"], "a") as out:
            out.write(status)
"""
FACTORY = "fake_tracker:Fake"
ROOT = str(Path(__file__).resolve().parents[2])  # this tunecb's folder


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """The fake tracker importable by the child; no tracker process left afterwards."""
    (tmp_path / "fake_tracker.py").write_text(FAKE)
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setattr("tunecb.tracking.targets._WANDB", FACTORY)
    monkeypatch.setattr("tunecb.tracking.targets._WANDB_WARM", None)  # no import wandb
    monkeypatch.setattr("tunecb.tracking.targets.WANDB_APART", True)
    yield
    left = TrackerProcess._shared
    if left is not None:
        left.stop(timeout=10)
        TrackerProcess._shared = None


def test_the_calls_run_in_one_tracker_process_which_stops_with_the_last_tracker(fake):
    first = RemoteTracker(WANDB, "proj", "s", FACTORY, check=True)
    second = RemoteTracker(WANDB, "proj", "s", FACTORY)
    process = TrackerProcess._shared
    assert first._process is second._process is process  # one child for the process
    assert first.shown == "fake-project"
    child = first.start_search("s", None)
    assert child == f"search-{process.proc.pid}" and process.proc.pid != os.getpid()
    # tunecb's modules there do not import Optuna (0.2 s of CPU a process)
    assert first._call("imported", ["tunecb.tracking._base", "optuna"]) == ["tunecb.tracking._base"]
    first.log_epochs("run", [{"epoch": 1}, {"epoch": 2}])
    assert first.logged_epochs("run") == 2 and second.logged_epochs("run") == 0  # its own
    first.close()
    assert process.proc.poll() is None  # the other tracker still uses it
    second.close()
    assert process.proc.wait(10) == 0 and TrackerProcess._shared is None


def test_what_the_tracker_raises_comes_back_as_one_line(fake):
    with pytest.raises(ConfigError, match=r"^--wandb missing needs the wandb package$"):
        RemoteTracker(WANDB, "missing", "s", FACTORY, check=True)
    tracker = RemoteTracker(WANDB, "proj", "s", FACTORY, check=True)
    with pytest.raises(TrackerProcessError, match=r"^403: project refused$"):
        tracker.start_search("refused", None)
    tracker.close()
    # The launcher's connection: the search's run is opened in the background, and its
    # refusal raised before any trial, naming the project.
    study = optuna.create_study(study_name="refused")
    connecting = Connecting([Target(WANDB, "proj", "refused")])
    connecting.opened(study)
    with pytest.raises(TrackingError, match=r"^W&B project 'fake-project' refused the "
                                            r"search's run: 403: project refused$"):  # fmt: skip
        connecting.join(study)
    assert TrackerProcess._shared is None  # closed on the refusal: no process left


def test_a_tracker_process_that_died_fails_its_calls_and_the_next_starts_anew(fake):
    tracker = RemoteTracker(WANDB, "proj", "s", FACTORY)
    dead = tracker._process
    with pytest.raises(TrackerProcessError, match="the tracker process ended"):
        tracker.strays("p", 0)
    assert dead.proc.wait(10) == 3
    with pytest.raises(TrackerProcessError):
        tracker.logged_epochs("run")
    tracker.close()  # does not raise
    again = RemoteTracker(WANDB, "proj", "s", FACTORY)
    assert again._process is not dead and again.logged_epochs("run") == 0
    again.close()


def test_a_search_that_fails_before_it_tracks_leaves_no_tracker_process(cli, tmp_path, monkeypatch):
    started: list[TrackerProcess] = []
    real = TrackerProcess.__init__

    def init(self: TrackerProcess, warm: str | None = None) -> None:
        real(self, None)  # started early by --wandb, without importing wandb here
        started.append(self)

    monkeypatch.setattr(TrackerProcess, "__init__", init)
    code, _, err = cli("search", tmp_path / "missing.py", "--wandb", "proj")
    assert code == 2 and "missing.py" in err
    (process,) = started
    assert process.proc.poll() is not None and TrackerProcess._shared is None


def test_the_search_s_run_opens_once_the_study_is_open_before_the_launcher_waits(fake):
    study = optuna.create_study(study_name="s")
    connecting = Connecting([Target(WANDB, "proj", "s")])
    connecting.opened(study)  # the launcher goes on (TensorFlow's import) meanwhile
    for _ in range(200):
        if connecting._parents[0] is not None:
            break
        time.sleep(0.05)
    opened = connecting._parents[0]
    assert opened is not None  # opened in the background, without join()
    tracking = connecting.join(study)
    assert tracking.parent == opened() == f"search-{tracking.tracker._process.proc.pid}"
    assert study.user_attrs[WANDB.parent_attr]["run_id"] == tracking.parent
    tracking.close()
    assert TrackerProcess._shared is None


# A --jobs worker: inherits the launcher's environment (ENV), opens a tracker, then closes it
# ("close"), dies with it open ("die") or keeps it open until its stdin closes ("stay").
WORKER = """
import os, sys
sys.path.insert(0, sys.argv[2])
from tunecb.tracking._base import WANDB
from tunecb.tracking.remote import RemoteTracker, TrackerProcess
tracker = RemoteTracker(WANDB, "proj", "s", "fake_tracker:Fake")
print(type(TrackerProcess._shared).__name__, tracker.start_search("w", None), flush=True)
if sys.argv[1] == "die":
    os._exit(9)
if sys.argv[1] == "stay":
    sys.stdin.read()
    os._exit(0)
tracker.close()
"""


def test_the_workers_share_the_search_s_tracker_process_a_dead_one_s_runs_end_killed(
    fake, tmp_path, monkeypatch
):
    aborted = tmp_path / "aborted"
    monkeypatch.setenv("FAKE_ABORTED", str(aborted))
    launcher = RemoteTracker(WANDB, "proj", "s", FACTORY, check=True)
    process = TrackerProcess._shared
    env = {**os.environ, **shared_env()}  # what a worker is given (ProcessExecutor.spec)
    shared = ["Connected", f"search-{process.proc.pid}"]
    for how, code in (("close", 0), ("die", 9)):
        worker = subprocess.run(
            [sys.executable, "-c", WORKER, how, ROOT], capture_output=True, text=True,
            timeout=60, check=False, env=env,
        )  # fmt: skip
        assert worker.returncode == code, worker.stderr
        assert worker.stdout.split() == shared
    _wait_for(lambda: aborted.exists())  # the dead worker's connection ended: its runs too
    assert aborted.read_text() == "KILLED"  # the dead one's only
    assert process.proc.poll() is None  # the launcher's tracker still uses it
    # A worker still there when the search stops the tracker process: its runs end killed.
    staying = subprocess.Popen(
        [sys.executable, "-c", WORKER, "stay", ROOT], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert staying.stdout.readline().split() == shared
        launcher.close()
        assert process.proc.wait(10) == 0 and shared_env() == {}
        assert aborted.read_text() == "KILLEDKILLED"
    finally:
        staying.kill()
        staying.communicate(timeout=10)
    assert Connected.to(process.address) is None  # gone: a worker would start its own


def _wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_the_search_s_process_environment_is_left_as_it_was_its_workers_are_given_it(fake):
    """A search from a notebook: the kernel's environment is never changed (no other thread
    or child of it sees the tracker process), while the ``--jobs`` workers' specs name it."""
    from tunecb.execution._base import Job, Limits
    from tunecb.execution.processes import ProcessExecutor

    before = dict(os.environ)
    job = Job("s.py", {"epochs": 2}, Limits(4), epochs=2)
    assert ENV not in ProcessExecutor(jobs=2).spec(job, 0).env  # no tracker process here
    tracker = RemoteTracker(WANDB, "proj", "s", FACTORY, check=True)
    process = TrackerProcess._shared
    assert dict(os.environ) == before
    assert ProcessExecutor(jobs=2).spec(job, 1).env[ENV] == process.address
    tracker.close()
    assert process.proc.wait(10) == 0
    assert dict(os.environ) == before and ENV not in ProcessExecutor(jobs=2).spec(job, 0).env
