"""The journal's snapshot (tunecb.storage.journal_snapshot): an opening starts from it and
reads only the journal's tail, with the same study as a full replay; a snapshot that is
stale, cut off, corrupt or hostile is ignored. Real journal files; no Keras."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import optuna
import pytest

from tunecb.storage import journal_snapshot
from tunecb.storage.urls import open_storage


@pytest.fixture(autouse=True)
def _every_opening_snapshots(monkeypatch):
    monkeypatch.setattr(journal_snapshot, "EVERY_RECORDS", 1)


def _journal(tmp_path: Path, name: str = "s", trials: int = 3) -> Path:
    path = tmp_path / "optuna.journal"
    study = optuna.create_study(study_name=name, storage=open_storage(str(path), tmp_path))
    for number in range(trials):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.report(0.5, 1)
        study.tell(trial, float(number))
    return path


def _opened(path: Path) -> tuple[object, list]:
    storage = open_storage(str(path), path.parent)
    return storage, storage.get_all_trials(0, deepcopy=False)


def _full_replay(path: Path) -> list:
    backend = optuna.storages.journal.JournalFileBackend(str(path))
    return optuna.storages.JournalStorage(backend).get_all_trials(0, deepcopy=False)


def _same(a: list, b: list) -> bool:
    key = lambda t: (t.number, t.state, t.params, t.values, t.intermediate_values)  # noqa: E731
    return [key(t) for t in a] == [key(t) for t in b]


def test_an_opening_starts_from_the_snapshot_and_reads_the_tail(tmp_path):
    path = _journal(tmp_path)  # its opening wrote a snapshot (of the study's creation)
    _opened(path)  # this one covers the 3 trials
    covered = json.loads(journal_snapshot.snapshot_path(path).read_bytes().split(b"\n")[1])[
        "records"
    ]
    study = optuna.load_study(study_name="s", storage=open_storage(str(path), tmp_path))
    study.tell(study.ask(), 9.0)  # written after the snapshot
    storage, trials = _opened(path)
    assert storage._backend.snapshot_records >= covered > 0
    assert len(trials) == 4 and _same(trials, _full_replay(path))
    again = optuna.load_study(study_name="s", storage=storage)
    again.tell(again.ask(), 1.0)  # new records after a snapshot start: numbered right
    assert [t.number for t in _full_replay(path)] == [0, 1, 2, 3, 4]


def test_a_snapshot_of_another_journal_is_ignored(tmp_path):
    path = _journal(tmp_path / "a")
    _opened(path)
    other = _journal(tmp_path / "b", name="s", trials=2)
    shutil.copy(journal_snapshot.snapshot_path(path), journal_snapshot.snapshot_path(other))
    storage, trials = _opened(other)
    assert storage._backend.snapshot_records == 0
    assert len(trials) == 2 and _same(trials, _full_replay(other))


def test_a_journal_cut_below_its_snapshot_ignores_it(tmp_path):
    path = _journal(tmp_path)
    _opened(path)
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"\n") + 1])  # only the study's creation is left
    storage, trials = _opened(path)
    assert storage._backend.snapshot_records == 0 and trials == []


@pytest.mark.parametrize("damage", ["garbage", "cut", "empty"])
def test_a_corrupt_snapshot_is_ignored(tmp_path, damage):
    path = _journal(tmp_path)
    _opened(path)
    snap = journal_snapshot.snapshot_path(path)
    data = snap.read_bytes()
    snap.write_bytes({"garbage": os.urandom(200), "cut": data[:-40], "empty": b""}[damage])
    storage, trials = _opened(path)
    assert storage._backend.snapshot_records == 0
    assert len(trials) == 3 and _same(trials, _full_replay(path))


class _Hostile:
    def __reduce__(self):
        return (os.mkdir, ("PWNED",))


def test_a_snapshot_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _journal(tmp_path)
    _opened(path)
    snap = journal_snapshot.snapshot_path(path)
    magic_and_header = b"\n".join(snap.read_bytes().split(b"\n", 2)[:2]) + b"\n"
    snap.write_bytes(magic_and_header + pickle.dumps(_Hostile()))
    storage, trials = _opened(path)
    assert not (tmp_path / "PWNED").exists()
    assert storage._backend.snapshot_records == 0 and len(trials) == 3
