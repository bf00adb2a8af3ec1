"""--wandb: a real search recorded by the real ``wandb`` package in its offline mode (no
account, no network), read back from the run files W&B wrote (its ``.wandb`` log of
protobuf records, the format ``wandb sync`` uploads): a run per trial in the study's group
with its parameters, every epoch and its checkpoint; a search run with the best and the
report; W&B's service process stopped at the end."""

from __future__ import annotations

import json
import math
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import DEFAULT_SETTINGS, trial_json, write_study

wandb = pytest.importorskip("wandb")
pytestmark = pytest.mark.slow


@dataclass
class OfflineRun:
    """What W&B's offline files hold of one run (all its offline folders, in order)."""

    run_id: str
    group: str = ""
    job_type: str = ""
    name: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # with their "_step"
    artifacts: list[Any] = field(default_factory=list)  # wandb's ArtifactRecord
    exit_codes: list[int] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # saved with run.save: uploaded on sync
    folders: list[Path] = field(default_factory=list)


def records(path: Path):
    """The protobuf records of a ``.wandb`` file: a 7-byte header, then LevelDB's log
    format (32 KiB blocks of chunks: CRC32, length, type; type 1 full, 2-4 parts)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, chunk = path.read_bytes(), 7, b""
    assert data[:4] == b":W&B", path
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header: padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            break
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = pb.Record()
            record.ParseFromString(chunk)
            chunk = b""
            yield record


def _items(items) -> dict[str, Any]:
    return {(i.key or ".".join(i.nested_key)): json.loads(i.value_json) for i in items}


def offline_runs(wandb_dir: Path) -> dict[str, OfflineRun]:
    """Every run W&B wrote under ``WANDB_DIR`` (a resumed run: several folders), once its
    service process has written everything (it writes the files: stopped first)."""
    wandb.teardown()
    runs: dict[str, OfflineRun] = {}
    for path in sorted(wandb_dir.glob("wandb/offline-run-*/run-*.wandb")):
        run: OfflineRun | None = None
        for record in records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                info = record.run
                run = runs.setdefault(info.run_id, OfflineRun(info.run_id))
                run.group, run.job_type, run.name = info.run_group, info.job_type, info.display_name
                run.config.update(_items(info.config.update))
                run.folders.append(path.parent)
            elif run is None:
                continue
            elif kind == "config":
                run.config.update(_items(record.config.update))
            elif kind == "summary":
                run.summary.update(_items(record.summary.update))
            elif kind == "history":
                run.history.append(_items(record.history.item))
            elif kind == "artifact":
                run.artifacts.append(record.artifact)
            elif kind == "exit":
                run.exit_codes.append(record.exit.exit_code)
            elif kind == "files":
                run.files += [f.path for f in record.files.files]
    return runs


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """W&B offline, writing only under ``tmp_path/wandb``; its service process (started
    by the first run of this process) is stopped at the end, and none is left."""
    home = tmp_path / "wandb"
    for name in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR",
                 "WANDB_ARTIFACT_DIR"):  # fmt: skip
        monkeypatch.setenv(name, str(home))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield home
    wandb.teardown()
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    for proc in left:
        proc.wait(10)  # teardown asked it to stop; it must be gone within seconds


def test_a_search_is_a_group_with_a_run_per_trial_and_the_search_s_run(tmp_path, offline, cli):
    results = tmp_path / "results"
    settings = DEFAULT_SETTINGS.replace("n_trials=3", "n_trials=2")
    path = write_study(tmp_path, name="wb", settings=settings)
    # Two workers: their trial runs go through the launcher's tracker process (one W&B).
    code, _, err = cli("search", path, "--results", results, "--wandb", "tunecb-test",
                       "--jobs", "2")  # fmt: skip
    assert code == 0, err
    assert "W&B" not in err  # no gap
    runs = offline_runs(offline)
    assert {r.group for r in runs.values()} == {"wb"}
    (search,) = [r for r in runs.values() if r.job_type == "search"]
    trials = {r.summary["tunecb"]["trial"]: r for r in runs.values() if r.job_type == "trial"}
    assert sorted(trials) == [0, 1]
    for number, run in trials.items():
        record = trial_json(results, "wb", number)
        assert run.name == f"trial {number}"
        assert {k: run.config[k] for k in record["params"]} == record["params"]
        info = run.summary["tunecb"]
        assert (info["state"], info["stop_reason"]) == (record["state"], record["stop_reason"])
        assert info["seed"] == record["seed"] and info["recorded"] is True
        assert info["backend"] == record["versions"]["backend"]
        steps = [row["_step"] for row in run.history]
        assert steps == list(range(1, record["epochs_run"] + 1))  # step = epoch, each once
        assert run.exit_codes == [0]
    # The best trial's checkpoint, as W&B staged it for upload, loads in safe mode and
    # evaluates to the recorded value.
    best = trial_json(results, "wb", search.summary["best_trial"])
    assert search.summary["best_value"] == pytest.approx(best["value"])
    (artifact,) = trials[best["number"]].artifacts
    assert artifact.type == "model" and artifact.name == f"wb-trial-{best['number']}"
    (entry,) = artifact.manifest.contents
    import keras
    from sklearn.datasets import load_digits

    model = keras.saving.load_model(
        _keras_copy(Path(entry.local_path), tmp_path), safe_mode=True
    )  # fmt: skip
    x, y = load_digits(return_X_y=True)
    x = (x[:500] / 16.0).astype("float32")
    scores = model.evaluate(x[400:], y[:500][400:], verbose=0, return_dict=True)
    assert scores["accuracy"] == pytest.approx(best["value"], abs=1e-6)
    assert search.files == ["report.html"]  # a file of the search's run, uploaded on sync
    html = (search.folders[0] / "files" / "report.html").read_text()
    assert "<html" in html.lower() and search.exit_codes == [0]
    assert "tunecb sync puts the plots here" in html and "<img" not in html  # no matplotlib


def _keras_copy(staged: Path, folder: Path) -> Path:
    """Keras loads a ``.keras`` file by its suffix; W&B stages it under a temporary name."""
    copy = folder / "staged.keras"
    copy.write_bytes(staged.read_bytes())
    return copy


def _next_second() -> None:
    """W&B names a run's offline folder by its id and the second it opened: a run reopened
    within the same second overwrites the folder (a real resume takes longer)."""
    now = time.time()
    time.sleep(math.ceil(now) - now + 0.01)


def test_a_study_keeps_its_search_run_and_a_resumed_trial_its_run(tmp_path, offline):
    """A second search of the study continues its search run; a rerun of a trial continues
    the dead attempt's run, and the search's end counts what the trials noted."""
    import optuna

    from tunecb.results import StudyDir
    from tunecb.tracking import TrialRecord
    from tunecb.tracking._base import WANDB
    from tunecb.tracking.search import SearchTracking
    from tunecb.tracking.wandb_tracker import WandbTracker

    study = optuna.create_study(study_name="again")
    first = SearchTracking.open("proj", "again", study, WANDB)
    assert study.user_attrs[WANDB.parent_attr]["run_id"] == first.parent
    tracker = WandbTracker.open("proj", "again")
    run = tracker.start_trial(first.parent, 0, None)
    tracker.log_epochs(run, [{"epoch": e, "loss": 1.0 / e} for e in (1, 2)])
    tracker.abort(first.parent, "KILLED")  # its worker died: its run ends "killed"
    first.abort(KeyboardInterrupt())  # and the search was stopped
    first.close()  # as the launcher: W&B's tracker process stops
    _next_second()
    again = WandbTracker.open("proj", "again")
    assert again.start_trial(first.parent, 1, run) == run
    history = [{"epoch": e, "loss": 1.0 / e} for e in (1, 2, 3)]
    record = TrialRecord(number=1, state="COMPLETE", params={"units": 8}, history=history)
    again.finish_trial(run, record, 2)
    trial = study.ask()
    trial.set_user_attr(WANDB.recorded_attr, True)
    study.tell(trial, 0.5)
    _next_second()
    second = SearchTracking.open("proj", "again", study, WANDB)
    assert second.parent == first.parent
    assert second.end(study, StudyDir(tmp_path), None) == []  # trial 0 noted: no gap
    second.close()
    runs = offline_runs(offline)
    assert len(runs[run].folders) == 2 and runs[run].exit_codes == [255, 0]
    assert [row["_step"] for row in runs[run].history] == [1, 2, 3]
    assert runs[run].config["units"] == 8
    assert len(runs[first.parent].folders) == 2 and runs[first.parent].exit_codes == [255, 0]
