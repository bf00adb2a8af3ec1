"""Many machines, one study: several `tunecb search` processes on one real PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from test_workers import write_fast_study


def start(path, results, url, *flags):
    command = [sys.executable, "-m", "tunecb", "search", str(path), "--results", str(results),
               "--storage", url, *flags]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def watch(url: str, folder) -> optuna.storages.BaseStorage:
    """The test's own view of the database, opened once, as a machine opens it (tunecb's
    opener: a plain ``optuna.load_study(storage=url)`` per look raced a search that was
    creating Optuna's tables in the empty database, and failed the test with
    ``UniqueViolation ... alembic_version``; the searches' openers retry that race)."""
    from tunecb.storage.urls import open_storage

    return open_storage(url, folder)


def trials_so_far(storage: optuna.storages.BaseStorage) -> list[optuna.trial.FrozenTrial]:
    """The trials of the study ``par``; none before a search created it."""
    try:
        return optuna.load_study(study_name="par", storage=storage).trials
    except KeyError:
        return []


def wait_for_a_trial(storage: optuna.storages.BaseStorage, proc: subprocess.Popen) -> None:
    """Return once the study has a trial (``proc`` started its search)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if trials_so_far(storage):
            return
        time.sleep(0.2)
    said = proc.stderr.read() if proc.poll() is not None else "(still running)"
    raise AssertionError(f"the other search ran no trial within 300 s: {said}")


@pytest.mark.slow
@pytest.mark.timeout(900)  # as the promotion test it absorbed: ~5 min under a load of 80
def test_two_searches_on_one_postgres_study_run_the_budget_exactly(tmp_path, postgres_url, cli):
    """Two machines (results folders of their own) on one study, with the promotion pruner:
    the budget of configurations is run exactly, each paused configuration is resumed once,
    by the machine that paused it (its backup is there), and any machine's report sees all.
    (Was two tests, one per pruner: this one study now covers both behaviours.) One machine
    is a ``tunecb search`` process, the other this process (one TensorFlow start-up less)."""
    import keras  # noqa: F401  (this machine starts as fast as the other: both run trials)

    from tunecb.oracle import attrs, budget

    path = write_fast_study(tmp_path, n=8, epochs=4)  # promotion rungs at epochs 1 and 3
    seen = watch(postgres_url, tmp_path)
    second = start(path, tmp_path / "b", postgres_url, "--pruner", "promotion")
    try:
        wait_for_a_trial(seen, second)
        code, _, err = cli("search", path, "--results", tmp_path / "a", "--storage",
                           postgres_url, "--pruner", "promotion")  # fmt: skip
        out = second.communicate(timeout=840)
    finally:
        second.kill()
        second.wait()
    assert code == 0 and second.returncode == 0, (err, out)
    study = optuna.load_study(study_name="par", storage=postgres_url)
    trials = [t for t in study.trials if t.user_attrs.get("stop_reason") != "discarded"]
    assert budget.finished(trials) == 8  # n_trials counts configurations
    made = [t for t in trials if attrs.PROMOTED_FROM in t.system_attrs]
    # Two machines with one seed: each configuration draws from its own (seed, number)
    # stream; a resumed one keeps its parameters.
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 8 == len(trials) - len(made)
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2  # both machines ran trials
    for t in trials:  # each trial's files are where the machine that ran it wrote them
        found = [(tmp_path / r / "par" / "trials" / str(t.number) / "trial.json").exists()
                 for r in ("a", "b")]  # fmt: skip
        assert found.count(True) == 1, t.number
    # Which configurations get promoted depends on the two machines' timing: the best paused
    # one of a rung may be the other machine's, which had already ended (its backup is not
    # here). Whatever was continued, was continued once, on the machine that paused it.
    assert any(t.user_attrs.get(attrs.STOP_REASON) == attrs.PAUSED for t in trials)
    assert len({t.system_attrs[attrs.PROMOTED_FROM] for t in made}) == len(made)
    for t in made:  # resumed where its backup was: on the machine that paused it
        paused = study.trials[t.system_attrs[attrs.PROMOTED_FROM]]
        assert t.user_attrs[attrs.WORKER] == paused.user_attrs[attrs.WORKER]
        assert t.user_attrs.get(attrs.RESUMED_FROM) == paused.user_attrs[attrs.EPOCHS_RUN]
    assert any(t.state.name == "COMPLETE" for t in trials)
    names = [s.study_name for s in optuna.get_all_study_summaries(postgres_url)]
    assert sorted(names) == ["par", "par:promotions"]
    # Any machine's report sees every configuration; the side study is not listed, so no
    # --study-name is needed.
    from tunecb.cli import main

    assert main(["report", "--storage", postgres_url, "--format", "csv", "--output",
                 str(tmp_path / "all.csv")]) == 0  # fmt: skip
    assert len((tmp_path / "all.csv").read_text().strip().splitlines()) == 1 + 8


@pytest.mark.slow
def test_a_machine_that_dies_is_found_by_heartbeat_and_its_trial_resumes_elsewhere(
    tmp_path, postgres_url, cli
):
    # One results folder shared by both "machines", as on a shared file system, so that the
    # rerun finds the dead machine's backup.
    path = write_fast_study(tmp_path, n=3, epochs=20, rows=4096, split=3072)
    flags = ("--heartbeat", "1", "--backup-every", "0")
    seen = watch(postgres_url, tmp_path)
    doomed = start(path, tmp_path / "r", postgres_url, *flags)
    victim = None
    deadline = time.monotonic() + 180
    while victim is None and time.monotonic() < deadline:
        time.sleep(0.3)
        running = [t for t in trials_so_far(seen) if t.state.name == "RUNNING"]
        victim = next((t for t in running if len(t.intermediate_values) >= 3), None)
    assert victim is not None
    os.kill(doomed.pid, signal.SIGKILL)  # the machine dies mid-trial
    doomed.wait()
    # The survivor: this process (a second machine, without a second TensorFlow start-up)
    code, _, err = cli("search", path, "--results", tmp_path / "r", "--storage", postgres_url,
                       *flags)  # fmt: skip
    assert code == 0, err
    study = optuna.load_study(study_name="par", storage=postgres_url)
    dead = study.trials[victim.number]
    assert dead.state.name == "FAIL"
    rerun = next(t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number)
    assert rerun.state.name == "COMPLETE" and rerun.params == victim.params
    assert rerun.user_attrs["resumed_from_epoch"] >= 3
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == 3
    from tunecb import report

    df = report(tmp_path / "r" / "par", storage=postgres_url)
    assert df.loc[df["trial"] == victim.number, "stop_reason"].item() == "worker_died"


@pytest.mark.slow
def test_a_storage_that_goes_away_mid_search_ends_it_with_one_clear_line(
    tmp_path, postgres_url, postgres_server
):
    path = write_fast_study(tmp_path, n=200, epochs=2)
    # --reconnect 5: its calls wait 5 s for the server (default 180 s, a failover's length)
    seen = watch(postgres_url, tmp_path)
    search = start(path, tmp_path / "r", postgres_url, "--reconnect", "5")
    database = postgres_url.rsplit("/", 1)[1]
    deadline = time.monotonic() + 180
    done = 0
    while done < 2 and time.monotonic() < deadline:
        time.sleep(0.3)
        done = sum(t.state.name == "COMPLETE" for t in trials_so_far(seen))
    assert done >= 2
    conn = postgres_server.connect()
    try:
        with conn.cursor() as cur:  # the database server goes away for this study
            cur.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s", (database,))  # fmt: skip
        started = time.monotonic()
        out, err = search.communicate(timeout=120)
        waited = time.monotonic() - started
    finally:
        with conn.cursor() as cur:
            cur.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
        conn.close()
    assert search.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert (
        "postgresql+psycopg2://tunecb:***@" in lines[0] and "failed during the search" in lines[0]
    )
    assert "tunecb-test" not in err and waited < 60
    study = optuna.load_study(study_name="par", storage=postgres_url)
    for t in study.trials:  # finished work stays, in the storage and on disk
        if t.state.name == "COMPLETE":
            assert (tmp_path / "r" / "par" / "trials" / str(t.number) / "trial.json").exists()
