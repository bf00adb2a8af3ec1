"""A trial this process claimed and left RUNNING when its search ended (a full disk, a lost
storage) is recovered by the next search in the same process (a notebook kernel): its pid
is alive, but no search of it runs the trial any more. Which trial a search of this process
runs is told by its storage too: two storages may hold a study of the same name."""

from __future__ import annotations

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from tunecb.oracle import attempts, attrs


def _left_running(tmp_path, name: str = "own") -> optuna.Study:
    from tunecb.storage.urls import open_storage

    study = optuna.create_study(study_name=name, storage=open_storage(None, tmp_path))
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    attempts.claim(trial, attrs.worker_id())  # this process, as a search's loop claims
    return study


def _trial_id(study: optuna.Study, number: int = 0) -> int:
    return study.get_trials(deepcopy=False)[number]._trial_id


def test_a_trial_this_process_left_running_is_recovered_by_its_next_search(tmp_path):
    study = _left_running(tmp_path)
    with attempts.running_here(study._storage, _trial_id(study)):  # its search runs it: alive
        assert attempts.recover_dead_trials(study) == []
    assert study.trials[0].state == TrialState.RUNNING
    assert attempts.recover_dead_trials(study) == [0]  # that search ended: dead, run again
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [TrialState.FAIL, TrialState.WAITING]


def test_a_study_of_the_same_name_on_another_storage_is_not_the_one_running_here(tmp_path):
    running = _left_running(tmp_path / "a")
    left = _left_running(tmp_path / "b")  # same study name, same trial number, another file
    with attempts.running_here(running._storage, _trial_id(running)):
        assert attempts.recover_dead_trials(left) == [0]
        assert attempts.recover_dead_trials(running) == []


def test_another_handle_on_the_same_journal_sees_the_trial_running_here(tmp_path):
    """A Dask worker's threads each open the storage: one file, several handles."""
    study = _left_running(tmp_path)
    path = study._storage._backend._file_path
    other = optuna.load_study(study_name="own", storage=JournalStorage(JournalFileBackend(path)))
    with attempts.running_here(study._storage, _trial_id(study)):
        assert attempts.recover_dead_trials(other) == []
    assert attempts.recover_dead_trials(other) == [0]


def test_a_trial_registered_twice_stays_registered_until_both_leave(tmp_path):
    """Two threads trying to claim one promotion ticket both register it: the loser's
    leaving must not unregister the winner's."""
    study = _left_running(tmp_path)
    with attempts.running_here(study._storage, _trial_id(study)):
        with attempts.running_here(study._storage, _trial_id(study)):
            pass
        assert attempts.recover_dead_trials(study) == []
    assert attempts.recover_dead_trials(study) == [0]


def test_a_storage_is_told_by_its_file_or_server_not_by_its_handle(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from sqlalchemy.engine import make_url

    from tunecb.storage.urls import identity

    def rdb(url: str) -> SimpleNamespace:  # what identity reads of an RDBStorage
        return SimpleNamespace(engine=SimpleNamespace(url=make_url(url)))

    monkeypatch.chdir(tmp_path)
    assert identity(rdb("sqlite:///s.db")) == identity(rdb(f"sqlite:///{tmp_path}/s.db"))
    assert identity(rdb("sqlite:///s.db")) != identity(rdb("sqlite:///t.db"))
    memory = [rdb("sqlite://"), rdb("sqlite:///:memory:")]  # each its own database
    assert identity(memory[0]) != identity(memory[1])
    server = "postgresql://u:pw@db:5432/tunecb"
    assert identity(rdb(server)) == identity(rdb(server)) != identity(rdb(server + "2"))
    journal = tmp_path / "j.journal"
    assert identity(JournalStorage(JournalFileBackend(str(journal)))) == identity(
        JournalStorage(JournalFileBackend(f"{tmp_path}/./j.journal"))
    )


def test_spellings_of_one_postgresql_database_are_one_storage(monkeypatch):
    """The driver, the password, the host's case and PostgreSQL's default port do not make
    another storage; the host's name (localhost may be ::1), the port, the user and the
    database do."""
    from types import SimpleNamespace

    from sqlalchemy.engine import make_url

    from tunecb.storage.urls import identity

    def key(url: str) -> str:
        return identity(SimpleNamespace(engine=SimpleNamespace(url=make_url(url))))

    monkeypatch.delenv("PGPORT", raising=False)
    one = key("postgresql://u@localhost/db")
    for same in (
        "postgresql+psycopg2://u@localhost:5432/db",
        "postgresql+psycopg://u:secret@LocalHost/db",
        "postgresql+psycopg2://u:other@LOCALHOST:5432/db",
    ):
        assert key(same) == one, same
    assert "secret" not in key("postgresql+psycopg://u:secret@LocalHost/db")
    for other in (
        "postgresql://u@127.0.0.1:5432/db",
        "postgresql://u@localhost:5433/db",
        "postgresql://v@localhost/db",
        "postgresql://u@localhost/db2",
        "postgresql://u@localhost/DB",  # a database's name has a case
    ):
        assert key(other) != one, other
    monkeypatch.setenv("PGPORT", "5433")  # where libpq goes without a port
    assert key("postgresql://u@localhost/db") == key("postgresql://u@localhost:5433/db")
    assert key("postgresql://u@localhost/db") != one
