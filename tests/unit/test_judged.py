"""A trial failed from outside says who failed it and why (issue 24: with 200 workers on
PostgreSQL, 7 of 8 configurations failed for good carried no reason at all), and a heartbeat
is not judged stale while the server itself was away (a restarted server gives its workers
time to beat again, also to a worker that opened the storage after the restart).

The rule with numbers; the paths on in-memory and SQLite studies (real heartbeat rows, aged
in SQL); the server's uptime on a real PostgreSQL server, restarted."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tunecb.oracle import attempts, attrs, deaths
from tunecb.storage import judged, stale
from tunecb.storage.urls import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)
ME = f":{os.getpid()}"


@pytest.mark.parametrize(
    ("beat", "up", "expected"),
    [
        (7.0, None, True),  # late past the grace period
        (5.0, None, False),  # within it
        (None, None, False),  # never beat: not this rule's (unclaimed, dead process)
        (300.0, 3.0, False),  # the server restarted 3 s ago: nobody could beat
        (300.0, 6.0 + judged.RESTART_SLACK_S + 0.5, True),  # up long enough, and silent
        (2.0, 300.0, False),  # up long, beat recently
    ],
)
def test_a_heartbeat_is_stale_past_the_grace_counted_from_when_it_could_beat(beat, up, expected):
    assert judged.stale(beat, 6.0, up) is expected


def _running(study: optuna.Study) -> optuna.Trial:
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    return trial


def _verdict(study: optuna.Study, number: int) -> dict:
    trial = study._storage.get_trial(study._storage.get_trial_id_from_study_id_trial_number(
        study._study_id, number))  # fmt: skip
    assert trial.state == TrialState.FAIL
    found = trial.system_attrs[judged.JUDGED]
    assert found["by"].endswith(ME) and abs(found["at"] - time.time()) < 60
    assert judged.explain(trial.system_attrs).startswith(f"failed by {found['by']} (")
    return found


def _age(storage, trial_id: int, seconds: int) -> None:
    """Move a trial's heartbeat ``seconds`` into the past (its worker stopped beating)."""
    import sqlalchemy

    backend = getattr(storage, "_backend", storage)
    with backend.engine.begin() as connection:
        now = connection.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar()
        now = datetime.fromisoformat(now) if isinstance(now, str) else now.replace(tzinfo=None)
        connection.execute(
            sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = :t WHERE trial_id = :id"),
            {"t": now - timedelta(seconds=seconds), "id": trial_id},
        )


def test_a_stale_trial_carries_the_heartbeat_it_was_judged_by(tmp_path: Path, monkeypatch):
    """And the heartbeat is read again before the verdict: the scan's list is seconds old
    under load, and a worker that beat meanwhile keeps its trial."""
    storage = open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, 2, 6)
    study = optuna.create_study(storage=storage)
    silent, alive = _running(study), _running(study)
    for trial in (silent, alive):
        storage.record_heartbeat(trial._trial_id)
    _age(storage, silent._trial_id, 30)
    scan = type(storage)._get_stale_trial_ids
    monkeypatch.setattr(  # the scan saw both silent
        type(storage), "_get_stale_trial_ids", lambda self, sid: [*scan(self, sid), alive._trial_id]
    )
    attempts.fail_stale_trials(study)
    found = _verdict(study, silent.number)
    assert found["rule"] == judged.STALE and found["grace_s"] == 6
    assert 29 <= found["last_beat_s"] <= 60, found
    assert study.trials[alive.number].state == TrialState.RUNNING
    assert [t.system_attrs.get(stale.RERUN_OF) for t in study.trials[2:]] == [silent._trial_id]


def test_each_path_that_fails_a_trial_from_outside_writes_its_verdict():
    study = optuna.create_study()
    dead, interrupted, popped = (_running(study) for _ in range(3))
    assert attempts.bury(study, dead.number, deaths.Death("its process 4242 is gone"))
    found = _verdict(study, dead.number)
    assert found["rule"] == judged.DEAD and found["death"] == "its process 4242 is gone"
    attempts.fail_and_requeue(study, interrupted.number, attrs.INTERRUPTED, "SIGINT")
    assert _verdict(study, interrupted.number)["rule"] == judged.INTERRUPTED
    # a recoverer queued this one's rerun, then stopped before failing it
    waiting = [t._trial_id for t in study.trials if t.state == TrialState.WAITING]
    for trial_id in waiting:  # the other reruns: run elsewhere
        study._storage.set_trial_state_values(trial_id, TrialState.RUNNING)
    stale.queue(study, study.trials[popped.number])
    rerun = study.ask()
    assert attempts.rerun_due(study, rerun)
    found = _verdict(study, popped.number)
    assert found["rule"] == judged.POPPED and found["rerun"] == rerun.number


def test_an_unclaimed_trial_says_how_long_it_waited(monkeypatch):
    study = optuna.create_study()
    trial = study.ask()  # its worker died before its claim
    monkeypatch.setattr(attempts, "UNCLAIMED_S", 0.0)
    attempts.recover_unclaimed(study, study.get_trials(deepcopy=False))
    found = _verdict(study, trial.number)
    assert found["rule"] == judged.UNCLAIMED and found["unclaimed_s"] >= 0


def test_no_trial_is_stale_right_after_a_postgresql_restart(
    postgres_server, postgres_url, tmp_path, monkeypatch
):
    """Any worker, also one that never saw the outage: the server's start is in the rule."""
    monkeypatch.setattr(judged, "RESTART_SLACK_S", 0.5)
    name = postgres_url.rsplit("/", 1)[1]
    with postgres_server.connect() as conn, conn.cursor() as cursor:
        # the test server acknowledges commits before the WAL has them: the stop lost them
        cursor.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = on')
    storage = open_storage(postgres_url, tmp_path, 1, 1)
    study = optuna.create_study(storage=storage, study_name="judged")
    trial = _running(study)
    storage.record_heartbeat(trial._trial_id)
    _age(storage, trial._trial_id, 60)  # its worker went silent a minute ago
    cluster = postgres_server.cluster
    try:
        assert cluster.stop() == 0
        assert cluster.start() == 0
        storage = open_storage(postgres_url, tmp_path, 1, 1)  # a worker that never saw it
        study = optuna.load_study(study_name="judged", storage=storage)
        deadline = time.monotonic() + 30
        while study.trials[trial.number].state == TrialState.RUNNING:
            assert time.monotonic() < deadline, judged.heartbeats_seen(storage, [trial._trial_id])
            attempts.fail_stale_trials(study)
            time.sleep(0.1)
    finally:
        if cluster.ctl("status") != 0:  # the other tests need it
            cluster.start()
    found = _verdict(study, trial.number)  # failed only once the server was up long enough
    assert found["rule"] == judged.STALE and found["last_beat_s"] >= 60
    assert 1.0 + 0.5 <= found["server_up_s"] < 30, found


def test_the_report_says_who_failed_a_trial_that_says_nothing_itself(tmp_path: Path):
    from tunecb.reporting.data.records import study_records

    path = str(tmp_path / "j.journal")
    study = optuna.create_study(study_name="j", storage=open_storage(path, tmp_path))
    attempt = _running(study)
    stale.queue(study, study.trials[attempt.number])  # its recoverer stopped here
    assert attempts.rerun_due(study, study.ask())  # the popper fails the attempt
    records = study_records(storage=path, study_name="j").records
    error = next(r["error"] for r in records if r["trial"] == attempt.number)
    assert error.startswith("failed by ") and judged.POPPED in error, error
