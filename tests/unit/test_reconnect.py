"""A database storage waits out a lost connection (tunecb.storage.reconnect): the calls that
fail on the connection run again until it is back, within one window per outage; any other
error is raised at once. The real server restart is benchmarks/scale.py --faults kill."""

from __future__ import annotations

import optuna
import pytest
from sqlalchemy import exc as sa

from tunecb.storage import reconnect
from tunecb.storage.reconnect import ReconnectingRDBStorage, retrying, transient


def lost() -> optuna.exceptions.StorageInternalError:
    """What Optuna raises when the server went away mid-call."""
    cause = sa.OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    try:
        raise optuna.exceptions.StorageInternalError("during the commit") from cause
    except optuna.exceptions.StorageInternalError as exc:
        return exc


class FakeStorage:
    """A storage whose call fails ``failures`` times on the connection, then answers."""

    reconnect_s = 5.0
    _down_since = None

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    @retrying
    def get(self, key: str) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error or lost()
        return key


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(reconnect.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(reconnect.time, "sleep", lambda s: now.__setitem__(0, now[0] + s))
    return now


def test_a_lost_connection_is_transient_other_errors_are_not():
    assert transient(lost())
    assert transient(sa.OperationalError("x", {}, Exception("connection refused")))
    # Optuna's _get_trials runs its query again after an OperationalError (it takes it for
    # "too many variables"): on a lost connection that raises this (scale.py's restart)
    assert transient(sa.PendingRollbackError("Can't reconnect until invalid transaction"))
    assert not transient(sa.IntegrityError("x", {}, Exception("duplicate key")))
    assert not transient(optuna.exceptions.StorageInternalError("max length"))
    assert not transient(ValueError("x"))


def test_a_call_cut_by_a_restart_runs_again_and_answers():
    # tunecb's own logger, read through a handler of ours: an earlier test in this process
    # may have configured it (the CLI's logging does) so that caplog sees nothing.
    import logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("tunecb")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        storage = FakeStorage(failures=3)
        assert storage.get("k") == "k"
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert storage.calls == 4 and storage._down_since is None
    assert any("lost the connection to the storage" in r.getMessage() for r in records)


def test_a_server_that_stays_away_fails_within_one_window_for_all_calls(no_sleep):
    storage = FakeStorage(failures=10**6)
    started = no_sleep[0]
    with pytest.raises(optuna.exceptions.StorageInternalError):
        storage.get("k")
    assert no_sleep[0] - started == pytest.approx(storage.reconnect_s)
    calls = storage.calls
    with pytest.raises(optuna.exceptions.StorageInternalError):
        storage.get("k")  # the same outage: no second window
    assert storage.calls == calls + 1


def test_other_errors_are_raised_at_once():
    storage = FakeStorage(failures=1, error=sa.IntegrityError("x", {}, Exception("dup")))
    with pytest.raises(sa.IntegrityError):
        storage.get("k")
    assert storage.calls == 1


def test_the_rdb_storage_tunecb_opens_reconnects(tmp_path):
    from tunecb.storage.urls import open_storage

    storage = open_storage(f"sqlite:///{tmp_path}/s.db", tmp_path)
    assert isinstance(storage, ReconnectingRDBStorage)
    for name in ("set_trial_intermediate_value", "_create_new_trial", "_get_trials"):
        # _create_new_trial: Optuna's cache calls it directly (found by scale.py's restart)
        wrapped = getattr(ReconnectingRDBStorage, name).__wrapped__
        assert wrapped is getattr(optuna.storages.RDBStorage, name)
    study = optuna.create_study(storage=storage)  # Optuna still caches it, as an RDBStorage
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(study.trials) == 2


def test_a_worker_opening_the_storage_during_a_restart_waits_for_it(no_sleep):
    tries = []

    def open_storage():
        tries.append(1)
        if len(tries) < 3:
            raise RuntimeError("cannot open the storage") from lost()
        return "storage"

    assert reconnect.opening(open_storage, wait_s=5.0) == "storage" and len(tries) == 3
    with pytest.raises(ValueError):  # not the connection: at once
        reconnect.opening(lambda: (_ for _ in ()).throw(ValueError("bad url")), wait_s=5.0)
