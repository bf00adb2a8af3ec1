"""`--keep-checkpoints K`: only the K best trials keep their checkpoints, safely under workers."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import optuna
import pytest
from conftest import DEFAULT_SETTINGS, write_study
from optuna.trial import TrialState

import tunecb
from tunecb.oracle.attempts import fail
from tunecb.oracle.retention import enforce, removable
from tunecb.replay.load import best_checkpoint
from tunecb.reporting.data.records import study_records
from tunecb.results import StudyDir, write_json
from tunecb.storage.stale import queue as requeue
from tunecb.storage.urls import open_storage


def kept_numbers(study_dir: StudyDir) -> set[int]:
    return {int(p.parent.name) for p in study_dir.trials.glob("*/best.keras")}


# -- the safety rule, on a real journal storage with real files (no training) ------------


def new_study(tmp_path: Path, name: str = "safe") -> tuple[optuna.Study, StudyDir]:
    study_dir = StudyDir(tmp_path / "results" / name)
    study_dir.prepare()
    study = optuna.create_study(
        storage=open_storage(None, study_dir.root), study_name=name, direction="maximize"
    )
    return study, study_dir


def fake_checkpoint(path: Path, mark: bytes) -> None:
    """A file the report's integrity check takes for a ``.keras`` archive, marked."""
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("metadata.json", "{}")
        archive.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + mark)


def marker(path: Path) -> bytes:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return archive.read("model.weights.h5")[8:]


def start(study: optuna.Study, study_dir: StudyDir) -> optuna.Trial:
    """Ask a trial and give it a checkpoint file, as a running trial has."""
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    study_dir.reset_trial(trial.number)
    fake_checkpoint(study_dir.checkpoint(trial.number), b"model of trial %d" % trial.number)
    trial.set_user_attr("checkpoint", study_dir.relative(study_dir.checkpoint(trial.number)))
    return trial


def finish(study, study_dir, trial, state: str, value: float | None, reason: str) -> None:
    """Record and tell the trial the way tunecb's runner does."""
    trial.set_user_attr("stop_reason", reason)
    trial.set_user_attr("best_value", value)
    write_json(study_dir.trial_json(trial.number), {"number": trial.number, "state": state})
    if state == "COMPLETE":
        study.tell(trial, value)
    else:
        study.tell(trial, state=TrialState[state])


def died(study: optuna.Study, trial: optuna.Trial, again: bool = True) -> None:
    """What the supervisor does when a worker dies: FAIL (worker_died), then a rerun."""
    failed = fail(study, trial.number, "worker_died", "worker killed by SIGKILL")
    if again:
        requeue(study, failed)


def test_running_best_and_resumable_checkpoints_are_never_deleted(tmp_path, cli):
    study, sd = new_study(tmp_path)
    snapshots = []

    def check() -> list[int]:
        snapshots.append(set(removable(study.get_trials(), maximize=True, keep=1)))
        return enforce(study, sd, keep=1)

    finish(study, sd, start(study, sd), "COMPLETE", 0.9, "completed")  # 0: the best
    finish(study, sd, start(study, sd), "COMPLETE", 0.5, "completed")  # 1
    finish(study, sd, start(study, sd), "PRUNED", 0.95, "pruned")  # 2: pruned rank lower
    finish(study, sd, start(study, sd), "FAIL", None, "nan")  # 3: failed by the runner
    running = start(study, sd)  # 4: still writing its checkpoint
    dead = start(study, sd)  # 5: its worker dies; rerun 6 waits
    died(study, dead)
    assert check() == [1, 2, 3]
    assert kept_numbers(sd) == {0, 4, 5}

    rerun = study.ask()  # 6 runs trial 5's parameters (and would copy its checkpoint)
    assert rerun.number == 6 and rerun.params == dead.params
    sd.reset_trial(6)
    assert check() == [] and kept_numbers(sd) == {0, 4, 5}
    died(study, rerun, again=False)  # 6 dies too; its rerun is not queued yet
    assert check() == [] and kept_numbers(sd) == {0, 4, 5}
    requeue(study, study._storage.get_trial(rerun._trial_id))  # 7 may resume 5's backup
    assert check() == [] and kept_numbers(sd) == {0, 4, 5}

    last = study.ask()
    assert last.number == 7
    assert study._storage.get_trial(last._trial_id).system_attrs["retry_history"] == [5, 6]
    sd.reset_trial(7)
    fake_checkpoint(sd.checkpoint(7), b"resumed")
    last.set_user_attr("checkpoint", "trials/7/best.keras")
    finish(study, sd, last, "COMPLETE", 0.1, "completed")  # the chain of 5 has ended
    assert sorted(check()) == [5, 7]
    assert kept_numbers(sd) == {0, running.number}  # the best, and the running trial
    assert marker(sd.checkpoint(4)) == b"model of trial 4"
    assert study_records(sd.root).records[0]["trial"] == 0
    assert check() == []  # idempotent
    # A later snapshot never brings a trial back: what one pass removes, all later agree.
    assert all(a <= b for a, b in itertools.pairwise(snapshots))

    marks = {n: json.loads(sd.trial_json(n).read_text()).get("checkpoint_removed")
             for n in range(8) if sd.trial_json(n).exists()}  # fmt: skip
    assert {n for n, m in marks.items() if m} == {1, 2, 3, 5, 7}
    assert marks[1]["keep_checkpoints"] == 1 and marks[1]["by"].endswith(f":{os.getpid()}")
    assert json.loads(sd.trial_json(1).read_text())["state"] == "COMPLETE"  # rest kept

    records = {r["trial"]: r for r in study_records(sd.root).records}
    assert records[1]["checkpoint"] is None and records[1]["checkpoint_removed"]
    assert records[0]["checkpoint"] and records[0]["checkpoint_removed"] is None
    with pytest.raises(tunecb.ResultsError, match=r"removed by --keep-checkpoints 1 "):
        best_checkpoint(sd.root, trial=1)
    assert best_checkpoint(sd.root) == sd.checkpoint(0)

    code, out, err = cli("report", sd.root, "--wide")
    assert code == 0, err
    assert out.count("removed (--keep-checkpoints 1)") == 5


def test_trials_tied_with_the_best_are_all_kept(tmp_path):
    study, sd = new_study(tmp_path, "ties")
    for value in (0.8, 0.8, 0.5):
        finish(study, sd, start(study, sd), "COMPLETE", value, "completed")
    assert enforce(study, sd, keep=1) == [2]
    assert kept_numbers(sd) == {0, 1}


# -- real searches ---------------------------------------------------------------------


@pytest.mark.slow
def test_two_workers_keep_only_the_k_best_checkpoints(tmp_path, cli):
    path = write_study(
        tmp_path, name="keep", settings=DEFAULT_SETTINGS.replace("n_trials=3", "n_trials=8")
    )
    results = tmp_path / "results"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunecb", "search", str(path), "--results", str(results),
         "--jobs", "2", "--keep-checkpoints", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    sd = StudyDir(results / "keep")
    records = study_records(sd.root).records
    assert [r["state"] for r in records] == ["COMPLETE"] * 8
    best_two = {r["trial"] for r in records[:2]}
    assert kept_numbers(sd) == best_two
    assert "checkpoints: 2 kept (--keep-checkpoints 2), 6 removed this run" in out

    # The removed ones are marked, and most were removed by the workers as the search ran.
    study = optuna.load_study(study_name="keep", storage=open_storage(None, sd.root))
    last_done = max(t.datetime_complete for t in study.get_trials()).timestamp()
    marks = [r["checkpoint_removed"] for r in records[2:]]
    assert all(m and m["keep_checkpoints"] == 2 for m in marks)
    assert min(datetime.fromisoformat(m["at"]).timestamp() for m in marks) < last_done
    assert any(not m["by"].endswith(f":{proc.pid}") for m in marks)  # a worker did

    model = tunecb.load_best(sd.root)
    assert model.count_params() > 0
    with pytest.raises(tunecb.ResultsError, match="removed by --keep-checkpoints 2"):
        tunecb.load_best(sd.root, rank=3)

    code, table, _ = cli("report", sd.root, "--wide")
    assert code == 0 and table.count("removed (--keep-checkpoints 2)") == 6
    code, text, _ = cli("report", sd.root, "--format", "json")
    rows = json.loads(text)
    assert [r["checkpoint"] is None for r in rows] == [False] * 2 + [True] * 6
    assert [bool(r["checkpoint_removed"]) for r in rows] == [False] * 2 + [True] * 6
    assert tunecb.report(sd.root)["checkpoint"].isna().sum() == 6  # the DataFrame: None


def test_default_keeps_everything_and_a_smaller_k_trims_a_finished_study(tmp_path, cli):
    path = write_study(tmp_path, name="all")
    results = tmp_path / "results"
    code, out, err = cli("search", path, "--results", results)
    assert code == 0, err
    sd = StudyDir(results / "all")
    files, size = sd.checkpoint_usage()
    assert kept_numbers(sd) == {0, 1, 2} and files == 3
    assert size == sum(p.stat().st_size for p in sd.trials.glob("*/best.keras")) > 0
    line = next(x for x in out.splitlines() if x.startswith("checkpoints:"))
    assert line == (
        f"checkpoints: 3 files, {size / 1024:.1f} KiB "
        "(keeping all; --keep-checkpoints K keeps the K best)"
    )

    code, out, err = cli("search", path, "--results", results, "--keep-checkpoints", "1")
    assert code == 0, err
    assert "nothing to run" in out
    assert "checkpoints: 1 kept (--keep-checkpoints 1), 2 removed this run" in out
    assert kept_numbers(sd) == {study_records(sd.root).records[0]["trial"]}
