"""The fleet's turn to look for stale trials, and an idle worker's one-statement wake
(:mod:`tunecb.storage.scan_turns`), on real database storages: SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import sqlalchemy

from tunecb.storage import scan_turns
from tunecb.storage.urls import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/s.db"
    return request.getfixturevalue("postgres_url")


def workers(url: str, tmp_path: Path, n: int) -> list[optuna.Study]:
    """``n`` workers' views of one study, each through a storage (a pool) of its own."""
    optuna.create_study(study_name="s", storage=open_storage(url, tmp_path))
    return [
        optuna.load_study(study_name="s", storage=open_storage(url, tmp_path)) for _ in range(n)
    ]


def test_one_worker_of_the_fleet_takes_each_turn(url, tmp_path):
    a, b = workers(url, tmp_path, 2)
    assert scan_turns.take(a, 30.0, now=1000.0)  # the first look of the study
    assert not scan_turns.take(b, 30.0, now=1000.0)
    assert not scan_turns.take(b, 30.0, now=1029.0)  # looked 29 s ago: not yet
    assert scan_turns.take(b, 30.0, now=1030.5)
    assert not scan_turns.take(a, 30.0, now=1031.0)
    assert scan_turns.take(b, 30.0, now=5000.0)  # a clock far ahead takes it ...
    assert scan_turns.take(a, 30.0, now=1070.0)  # ... and is not waited for


def test_of_workers_that_read_the_same_turn_one_takes_it(url, tmp_path, monkeypatch):
    a, b = workers(url, tmp_path, 2)
    assert scan_turns.take(a, 30.0, now=1000.0)
    real = scan_turns._due

    # both read the turn due (b writes between a's read and a's write): the compare-and-set
    # lets one through
    def due_then_b_takes(last, every_s, now):
        monkeypatch.setattr(scan_turns, "_due", real)
        assert scan_turns.take(b, 30.0, now=now + 0.1)
        return real(last, every_s, now)

    monkeypatch.setattr(scan_turns, "_due", due_then_b_takes)
    assert not scan_turns.take(a, 30.0, now=1040.0)


def test_a_wake_reads_the_running_and_queued_trials_and_whether_a_look_is_due(url, tmp_path):
    a, b = workers(url, tmp_path, 2)
    assert scan_turns.status(a, 30.0, now=1000.0) == scan_turns.Status(0, 0, due=True)
    a.ask()
    a.ask()
    b.enqueue_trial({"x": 0.5})
    assert scan_turns.status(b, 30.0, now=1000.0) == scan_turns.Status(2, 1, due=True)
    scan_turns.take(a, 30.0, now=1000.0)
    seen = scan_turns.status(b, 30.0, now=1010.0)
    assert seen == scan_turns.Status(2, 1, due=False)
    assert scan_turns.status(b, 30.0, now=1031.0).due


def test_without_the_database_every_worker_looks_through_the_storage(tmp_path, monkeypatch):
    (study,) = workers(f"sqlite:///{tmp_path}/s.db", tmp_path, 1)

    def lost(*args):
        raise sqlalchemy.exc.OperationalError("SELECT", {}, Exception("server closed"))

    monkeypatch.setattr(scan_turns, "_take", lost)
    monkeypatch.setattr(scan_turns, "_status", lost)
    assert scan_turns.take(study, 30.0) and scan_turns.status(study, 30.0) is None
    monkeypatch.setattr(scan_turns, "_take", lambda *a: 1 / 0)  # any other error is raised
    with pytest.raises(ZeroDivisionError):
        scan_turns.take(study, 30.0)
