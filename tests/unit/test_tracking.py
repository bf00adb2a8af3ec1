"""tunecb.tracking with a fake tracker: what a child run is given, what a failing tracker
costs a trial (nothing), how a resumed trial finds its run, and how the gap is named. The
real MLflow server is in tests/e2e/test_mlflow.py."""

from __future__ import annotations

import json
import logging
import threading
import time
from types import SimpleNamespace

import optuna
import pytest

from tunecb.oracle import attrs as keys
from tunecb.results import StudyDir
from tunecb.tracking import PARENT_RUN, TRIAL_RUN
from tunecb.tracking._base import MLFLOW, WANDB, Kind
from tunecb.tracking.mlflow_tracker import reason
from tunecb.tracking.records import trial_record
from tunecb.tracking.search import SearchTracking
from tunecb.tracking.shipper import Shipper
from tunecb.tracking.trial import TrialTracking


class FakeTracker:
    """Records the calls; ``down`` makes every call fail as a server that went away."""

    kind, experiment = MLFLOW, "exp"
    shown = "http://u:***@h:5000"
    uri = "http://u:pw@h:5000"

    def __init__(self, down: bool = False) -> None:
        self.down, self.paused = down, False
        self.runs: dict[str, dict] = {}
        self.epochs: list[tuple[str, int]] = []
        self.batches: list[int] = []  # rows per log_epochs call
        self.finished: list[tuple[str, int, list[int]]] = []
        self.checkpoints: list[tuple] = []  # (path, content) of each run's checkpoint

    def _call(self) -> None:
        if self.down:
            raise ConnectionError("Connection refused")

    def available(self) -> bool:
        return not self.paused

    def failed(self) -> None:
        self.paused = True

    def start_trial(self, parent: str, number: int, run_id: str | None) -> str:
        self._call()
        run_id = run_id or f"run-{number}"
        self.runs[run_id] = {"parent": parent, "number": number}
        return run_id

    def log_epochs(self, run_id: str, rows: list[dict]) -> None:
        self._call()
        self.batches.append(len(rows))
        self.epochs += [(run_id, row["epoch"]) for row in rows]

    def logged_epochs(self, run_id: str) -> int:
        return max((e for r, e in self.epochs if r == run_id), default=0)

    def finish_trial(self, run_id: str, record, logged: int) -> None:
        self._call()
        if record.checkpoint is not None:
            self.checkpoints.append((record.checkpoint, record.checkpoint.read_bytes()))
        epochs = [row["epoch"] for row in record.history if row["epoch"] > logged]
        self.finished.append((run_id, record.number, epochs))

    def end_search(self, parent, best, report) -> None:
        self._call()

    def recorded(self, parent: str) -> set[int]:
        self._call()
        return {number for _, number, _ in self.finished}


@pytest.fixture
def trackings():
    """``make(tracker)``: a TrialTracking on the fake; their threads stopped at the end."""
    made: list[TrialTracking] = []

    def make(tracker: FakeTracker, kind: Kind = MLFLOW) -> TrialTracking:
        made.append(TrialTracking("http://h:5000", "exp", make=lambda: tracker, kind=kind))
        return made[-1]

    yield make
    for tracking in made:
        assert tracking.close(timeout=10)


def history(folder: StudyDir, number: int, epochs: range) -> None:
    """``trials/<number>/history.csv`` with those epochs (the trial's own record)."""
    folder.trial_dir(number).mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{e},{1.0 / e}\n" for e in epochs)
    folder.history(number).write_text("epoch,loss\n" + rows)


def study_with_parent() -> optuna.Study:
    study = optuna.create_study()
    study.set_user_attr(PARENT_RUN, {"uri": "u", "experiment": "exp", "run_id": "parent"})
    return study


def test_a_trial_is_a_child_run_with_its_epochs_in_one_batch_and_its_record(tmp_path, trackings):
    tracker = FakeTracker()
    tracking, study = trackings(tracker), study_with_parent()
    trial = study.ask()
    history(StudyDir(tmp_path), 0, range(1, 4))
    callback = tracking.callback(trial)
    for epoch in range(3):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "val_accuracy": 0.5})
    tracking.trial_ended(trial, None, StudyDir(tmp_path))
    assert tracking.wait(timeout=10)
    assert tracker.runs == {"run-0": {"parent": "parent", "number": 0}}
    assert tracker.epochs == [("run-0", 1), ("run-0", 2), ("run-0", 3)]
    assert tracker.batches == [3]  # one request for the three epochs (sent within 2 s)
    assert tracker.finished == [("run-0", 0, [])]  # the record adds no epoch already sent
    assert study.trials[0].user_attrs[TRIAL_RUN] == "run-0"


class SlowTracker(FakeTracker):
    """A second to open (``import mlflow``), a fifth of a second a request; a run's end
    waits until ``ended`` is set (10 s at most)."""

    ended = threading.Event()

    def __init__(self) -> None:
        time.sleep(1.0)
        super().__init__()

    def _call(self) -> None:
        time.sleep(0.2)

    def finish_trial(self, run_id: str, record, logged: int) -> None:
        self.ended.wait(10)
        super().finish_trial(run_id, record, logged)


@pytest.mark.parametrize("kind", [MLFLOW, WANDB], ids=["mlflow", "wandb"])
def test_the_fit_never_waits_on_the_tracker_and_loses_no_epoch(tmp_path, trackings, kind):
    tracking, study = trackings(None, kind), study_with_parent()
    study.set_user_attr(kind.parent_attr, {"uri": "u", "experiment": "exp", "run_id": "parent"})
    tracking.shipper = Shipper(SlowTracker, interval=0.1)
    tracker_epochs = range(1, 21)
    history(StudyDir(tmp_path), 0, tracker_epochs)
    trial = study.ask()
    callback = tracking.callback(trial)
    started = time.perf_counter()
    for epoch in range(20):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1)})
    assert time.perf_counter() - started < 0.5  # the epochs only queue
    tracking._runs[0].result(timeout=10)  # opened while the fit ran (a fit of seconds)
    SlowTracker.ended.clear()
    started = time.perf_counter()
    tracking.trial_ended(trial, None, StudyDir(tmp_path))
    assert time.perf_counter() - started < 5  # its run is completed in the thread, later
    SlowTracker.ended.set()
    done = tracking.shipper.call(lambda tracker, shipper: tracker).result(timeout=10)
    assert done is not None
    assert sorted(e for _, e in done.epochs) == list(tracker_epochs)
    assert done.finished == [("run-0", 0, [])] and len(done.batches) < 5
    if kind.recorded_attr:  # W&B: its complete run noted on the study (the trial is told)
        assert study.user_attrs[kind.recorded_key(0)] is True


def test_a_checkpoint_deleted_after_the_trial_still_goes_up_whole(tmp_path, trackings):
    tracking, study = trackings(None), study_with_parent()
    SlowTracker.ended.set()
    tracking.shipper = Shipper(SlowTracker, interval=0.1)  # the run ends a second later
    folder = StudyDir(tmp_path)
    history(folder, 0, range(1, 3))
    folder.checkpoint(0).write_bytes(b"weights")
    trial = study.ask()
    tracking.trial_ended(trial, None, folder)
    folder.checkpoint(0).unlink()  # --keep-checkpoints after the trial is told
    assert tracking.wait(timeout=10)
    done = tracking.shipper.call(lambda tracker, shipper: tracker).result(timeout=10)
    ((path, content),) = done.checkpoints
    assert content == b"weights" and path.name == "best.keras"
    assert path.is_relative_to(tmp_path)  # linked on the study's file system, not copied
    assert not path.parent.exists()  # the link aside is gone with the run's end
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trials"]


def test_a_tracker_that_fails_costs_the_trial_nothing_and_pauses(tmp_path, trackings):
    tracker = FakeTracker(down=True)
    tracking, study = trackings(tracker), study_with_parent()
    trial = study.ask()
    callback = tracking.callback(trial)
    callback.on_epoch_begin(0)
    callback.on_epoch_end(0, {"loss": 1.0})
    tracking.trial_ended(trial, None, StudyDir(tmp_path))  # no exception
    assert tracking.wait(timeout=10)
    assert tracker.paused and not tracker.finished
    tracker.down = False  # back, but paused: the next trial does not wait on it
    StudyDir(tmp_path).trial_dir(1).mkdir(parents=True)
    StudyDir(tmp_path).checkpoint(1).write_bytes(b"weights")
    tracking.trial_ended(study.ask(), None, StudyDir(tmp_path))
    assert tracking.wait(timeout=10)
    assert not tracker.finished
    assert not (tmp_path / ".tracker").exists()  # its checkpoint's link aside: gone too


def test_a_resumed_trial_continues_the_run_of_the_attempt_it_reruns(tmp_path, trackings):
    tracker = FakeTracker()
    tracker.epochs = [("run-of-0", 1)]  # the dead attempt's worker sent epoch 1, not 2
    tracking, study = trackings(tracker), study_with_parent()
    first = study.ask()
    first.set_user_attr(TRIAL_RUN, "run-of-0")
    study.tell(first, state=optuna.trial.TrialState.FAIL)
    study.enqueue_trial({})  # the rerun: linked the way tunecb's requeue links it
    rerun = study.ask()
    study._storage.set_trial_system_attr(rerun._trial_id, keys.FAILED_TRIAL, 0)
    study._storage.set_trial_system_attr(rerun._trial_id, keys.RETRY_HISTORY, [0])
    history(StudyDir(tmp_path), 1, range(1, 5))
    callback = tracking.callback(rerun)
    callback.on_epoch_begin(2)  # fit(initial_epoch=2): the backup had two epochs
    callback.on_epoch_end(2, {"loss": 0.1})
    tracking.trial_ended(rerun, None, StudyDir(tmp_path))  # epoch 4: not sent live
    assert tracking.wait(timeout=10)
    assert list(tracker.runs) == ["run-of-0"]
    assert tracker.finished == [("run-of-0", 1, [2, 4])]  # the gaps, and no epoch twice


def test_the_record_comes_from_the_trial_files(tmp_path):
    folder = StudyDir(tmp_path)
    folder.trial_dir(4).mkdir(parents=True)
    folder.trial_json(4).write_text(json.dumps({
        "state": "PRUNED", "params": {"units": 8}, "value": 0.5, "stop_reason": "pruned",
        "seed": 7, "versions": {"backend": "jax", "jax": "0.4"}, "epochs_run": 2,
    }))  # fmt: skip
    folder.history(4).write_text("epoch,loss,val_accuracy\n1,0.9,0.4\n2,0.7,0.5\n")
    record = trial_record(folder, 4)
    assert [row["epoch"] for row in record.history] == [1, 2]
    assert record.checkpoint is None
    tags = record.tags()
    assert tags["tunecb.state"] == "PRUNED" and tags["tunecb.stop_reason"] == "pruned"
    assert tags["tunecb.seed"] == "7" and tags["tunecb.backend"] == "jax"


def test_the_gap_names_the_missing_trials_and_the_sync_command(tmp_path):
    tracker = FakeTracker()
    study = optuna.create_study()
    for number in range(3):
        trial = study.ask()
        trial.set_user_attr(keys.STOP_REASON, keys.COMPLETED)
        study.tell(trial, 0.1 * number)
    tracker.finished = [("run-1", 1, 0)]
    lines = SearchTracking(tracker, "parent").end(study, StudyDir(tmp_path / "s"), None)
    assert len(lines) == 1
    assert "misses 2 trials (0, 2)" in lines[0]
    assert f"tunecb sync {tmp_path / 's'} --mlflow http://u:***@h:5000" in lines[0]
    assert "pw" not in lines[0]
    tracker.down = True
    (line,) = SearchTracking(tracker, "parent").end(study, StudyDir(tmp_path / "s"), None)
    assert "failed at the end of the search (connection refused)" in line


@pytest.mark.parametrize(
    "error", ["HTTPConnectionPool(host='h'): Max retries (Connection refused)", "boom at x"]
)
def test_a_tracker_error_is_one_line_without_credentials(error):
    uri = "http://user:secret@h:5000"
    text = reason(RuntimeError(f"API request to {uri}/api failed: {error}\nmore"), uri)
    assert "\n" not in text and "secret" not in text


def test_without_mlflow_nothing_is_tracked():
    settings = SimpleNamespace(mlflow=None, mlflow_experiment=None, name="s")
    assert TrialTracking.from_settings(settings) is None
    assert SearchTracking.start(settings, None) is None


def test_sync_reuses_a_run_whose_creation_lost_its_answer_and_deletes_other_strays(
    tmp_path, monkeypatch
):
    from tunecb.tracking import search
    from tunecb.tracking.mlflow_tracker import MlflowTracker

    class Stranded(FakeTracker):
        def __init__(self) -> None:
            super().__init__()
            self.deleted: list[str] = []

        def start_search(self, name, previous):
            return "parent"

        def strays(self, parent, number):
            return ["lost-1", "lost-2"] if number == 1 else []

        def discard(self, run_id):
            self.deleted.append(run_id)

    tracker = Stranded()
    monkeypatch.setattr(MlflowTracker, "open", classmethod(lambda cls, uri, exp: tracker))
    study = optuna.create_study()
    for _ in range(2):
        study.tell(study.ask(), 0.5)
    written, had = search.sync_study("http://h:5000", None, study, StudyDir(tmp_path))
    assert (written, had) == (2, 0)
    assert sorted(tracker.runs) == ["lost-1", "run-0"]  # trial 1: the stray, not a new run
    assert tracker.deleted == ["lost-2"]


def test_the_search_s_copy_of_the_report_draws_no_plot_and_imports_no_matplotlib(tmp_path):
    """Written at the end of every tracked search: its summary and table, no figure (the
    import of matplotlib and the PNGs were 0.7 s of CPU, 3 % of a 25 s search)."""
    import subprocess
    import sys

    from tests.synthetic import make_big_study

    make_big_study(tmp_path / "results" / "big", 6)
    page = tmp_path / "report.html"
    code = (
        "import sys\nfrom types import SimpleNamespace\nfrom pathlib import Path\n"
        "from tunecb.launcher import _report_writer\n"
        f"where = SimpleNamespace(results=Path({str(tmp_path / 'results')!r}), name='big', "
        "storage=None)\n"
        f"_report_writer(where)(Path({str(page)!r}))\n"
        "print([m for m in ('matplotlib', 'optuna.importance') if m in sys.modules])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    html = page.read_text()
    assert "<img" not in html and html.count("tunecb sync puts the plots here") >= 4
    assert html.count("<tr") >= 7  # the header and the 6 trials


class ArtifactStoreDown:
    """An MLflow client whose artifact store refuses uploads (its server answers)."""

    def __init__(self) -> None:
        self.ended: list[tuple[str, str]] = []

    def log_batch(self, *args, **kwargs) -> None: ...

    def log_artifact(self, *args, **kwargs) -> None:
        raise PermissionError("s3://bucket/report.html: access denied")

    def update_run(self, run_id: str, status: str) -> None:
        self.ended.append((run_id, status))


def test_a_report_the_artifact_store_refuses_still_ends_the_search_run(
    tmp_path, caplog, monkeypatch
):
    """The report is a nicety: an upload that fails is logged, and the search's run still
    ends FINISHED, not left running (W&B: tests/unit/test_wandb_tracker.py)."""
    from tunecb.tracking.mlflow_tracker import MlflowTracker

    # the CLI run in-process by other tests stops tunecb's propagation to the root
    monkeypatch.setattr(logging.getLogger("tunecb"), "propagate", True)
    caplog.set_level(logging.WARNING, logger="tunecb")
    report = tmp_path / "report.html"
    report.write_text("<html></html>")
    client = ArtifactStoreDown()
    MlflowTracker("http://h:5000", "e", client).end_search("parent", None, report)
    assert client.ended == [("parent", "FINISHED")]
    assert "report not stored" in caplog.text and "access denied" in caplog.text
