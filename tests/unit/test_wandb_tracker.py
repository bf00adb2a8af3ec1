"""--wandb with a fake ``wandb`` module: what a trial's run is given and in which order,
how the trials note a complete run (W&B offline cannot be asked) and how the gap is named,
and both trackers at once. The real ``wandb`` (offline) is in tests/e2e/test_wandb.py."""

from __future__ import annotations

import logging
import sys
from types import SimpleNamespace

import optuna
import pytest
from test_tracking import FakeTracker, history

from tunecb.errors import ConfigError
from tunecb.oracle import attrs as keys
from tunecb.results import StudyDir
from tunecb.tracking import TrialRecord
from tunecb.tracking._base import WANDB
from tunecb.tracking.search import SearchTracking
from tunecb.tracking.trial import Trackings, TrialTracking
from tunecb.tracking.wandb_tracker import WandbTracker


class FakeRun:
    def __init__(self, calls: list, **init) -> None:
        self.calls, self.init = calls, init
        self.config = SimpleNamespace(update=lambda d, **kw: calls.append(("config", dict(d))))
        self.summary = SimpleNamespace(update=lambda d: calls.append(("summary", d)))

    def log(self, values, step=None) -> None:
        self.calls.append(("log", step, values))

    def log_artifact(self, artifact, aliases=()) -> None:
        self.calls.append(("artifact", artifact.name, artifact.type, artifact.files, aliases))

    def finish(self, exit_code=0) -> None:
        self.calls.append(("finish", exit_code))


class FakeArtifact:
    def __init__(self, name, type, metadata=None) -> None:
        self.name, self.type, self.files = name, type, []

    def add_file(self, path) -> None:
        self.files.append(path)


@pytest.fixture
def fake_wandb(monkeypatch):
    """``calls``: what the tracker asked of the fake ``wandb`` module, in order."""
    calls: list = []

    def init(**kwargs):
        calls.append(("init", kwargs["id"], kwargs["job_type"], kwargs["resume"]))
        return FakeRun(calls, **kwargs)

    module = SimpleNamespace(init=init, Settings=dict, Artifact=FakeArtifact, Html=str)
    monkeypatch.setattr("tunecb.tracking.wandb_tracker.import_wandb", lambda project: module)
    monkeypatch.setattr("tunecb.tracking.targets.WANDB_APART", False)  # the fake is here
    return calls


def test_a_trial_run_gets_its_epochs_once_as_steps_then_its_record_and_recorded_last(
    tmp_path, fake_wandb
):
    tracker = WandbTracker("proj", "digits mlp")
    run = tracker.start_trial("search-id", 3, None)
    tracker.log_epochs(run, [{"epoch": 2, "loss": 0.4}, {"epoch": 1, "loss": 0.5}])
    checkpoint = tmp_path / "best.keras"
    checkpoint.write_bytes(b"k")
    rows = [{"epoch": e, "loss": 1.0 / e, "acc": float("nan")} for e in (1, 2, 3)]
    record = TrialRecord(
        number=3, state="FAIL", params={"units": 8}, value=0.25, seed=7, history=rows,
        checkpoint=checkpoint, versions={"backend": "jax"},
    )  # fmt: skip
    tracker.finish_trial(run, record, 0)
    kinds = [call[0] for call in fake_wandb]
    assert kinds == ["init", "log", "log", "log", "config", "artifact", "summary", "finish"]
    assert fake_wandb[0][2:] == ("trial", "allow")
    assert [call[1] for call in fake_wandb if call[0] == "log"] == [1, 2, 3]  # each once
    assert fake_wandb[3][2] == {"loss": pytest.approx(1 / 3)}  # no NaN
    assert fake_wandb[4] == ("config", {"units": 8})
    assert fake_wandb[5] == ("artifact", "digits-mlp-trial-3", "model", [str(checkpoint)],
                             ["best"])  # fmt: skip
    written = fake_wandb[6][1]
    assert written["tunecb"]["recorded"] is True and written["best_value"] == 0.25
    assert written["tunecb"]["seed"] == 7 and written["tunecb"]["backend"] == "jax"
    assert fake_wandb[-1] == ("finish", 1)  # a failed trial's run fails


def test_a_resumed_trial_reopens_its_run_by_id(fake_wandb):
    tracker = WandbTracker("proj", "s")
    assert tracker.start_trial("p", 1, "run-of-0") == "run-of-0"
    assert fake_wandb == [("init", "run-of-0", "trial", "allow")]


def test_the_trials_note_their_complete_run_and_the_gap_is_counted_from_the_notes(tmp_path):
    class FakeWandb(FakeTracker):
        kind, shown, uri = WANDB, "proj", "proj"

        def recorded(self, parent):
            raise AssertionError("W&B is not asked")

    tracker = FakeWandb()
    tracking = TrialTracking("proj", "s", make=lambda: tracker, kind=WANDB)
    study = optuna.create_study()
    study.set_user_attr(WANDB.parent_attr, {"uri": "proj", "experiment": "s", "run_id": "p"})
    for number in range(2):
        trial = study.ask()
        history(StudyDir(tmp_path), number, range(1, 3))
        if number == 0:  # trial 1's run is never completed (W&B failed then)
            tracking.trial_ended(trial, None, StudyDir(tmp_path))
        trial.set_user_attr(keys.STOP_REASON, keys.COMPLETED)
        study.tell(trial, 0.5)
    assert tracking.close(timeout=10)
    assert study.trials[0].user_attrs[WANDB.trial_attr] == "run-0"
    assert study.user_attrs[WANDB.recorded_key(0)] is True  # the trial was told by then
    (line,) = SearchTracking(tracker, "p").end(study, StudyDir(tmp_path / "s"), None)
    assert line.startswith("W&B 'proj' misses 1 trial (1)")
    assert line.endswith(f"tunecb sync {tmp_path / 's'} --wandb proj")


def test_with_both_trackers_each_gets_the_epochs_and_the_trial(tmp_path):
    settings = SimpleNamespace(mlflow="http://h:5000", mlflow_experiment=None, wandb="proj",
                               name="s")  # fmt: skip
    both = TrialTracking.from_settings(settings)
    assert isinstance(both, Trackings)
    assert [p.kind.label for p in both.parts] == ["MLflow", "W&B"]
    trackers = [FakeTracker(), FakeTracker()]
    for part, tracker in zip(both.parts, trackers, strict=True):
        part._make = lambda tracker=tracker: tracker
    study = optuna.create_study()
    for kind in (both.parts[0].kind, WANDB):
        study.set_user_attr(kind.parent_attr, {"uri": "u", "experiment": "s", "run_id": "p"})
    trial = study.ask()
    history(StudyDir(tmp_path), 0, range(1, 3))
    callback = both.callback(trial)
    for epoch in range(2):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, {"loss": 0.5})
    both.trial_ended(trial, None, StudyDir(tmp_path))
    assert both.close(timeout=10)
    for tracker in trackers:
        assert tracker.epochs == [("run-0", 1), ("run-0", 2)]
        assert tracker.finished == [("run-0", 0, [])]


def test_without_the_wandb_package_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'tunecb\[wandb\]'"):
        WandbTracker.open("proj", "s")


def test_sync_needs_a_tracker(cli, tmp_path):
    code, _, err = cli("sync", tmp_path)
    assert code == 2
    assert err.strip().endswith("tunecb sync needs a tracker: --mlflow URI or --wandb PROJECT")


def test_a_report_the_run_cannot_take_still_ends_the_search_run(
    tmp_path, fake_wandb, caplog, monkeypatch
):
    """Its folder gone (or a full disk): the report is logged as missing, the run ends."""
    # the CLI run in-process by other tests stops tunecb's propagation to the root
    monkeypatch.setattr(logging.getLogger("tunecb"), "propagate", True)
    caplog.set_level(logging.WARNING, logger="tunecb")
    tracker = WandbTracker("proj", "digits")
    parent = tracker.start_search("digits", None)
    tracker._runs[parent].dir = str(tmp_path / "gone")
    report = tmp_path / "report.html"
    report.write_text("<html></html>")
    tracker.end_search(parent, None, report)
    assert fake_wandb[-1] == ("finish", 0) and parent not in tracker._runs
    assert "report not saved" in caplog.text
