"""PostgreSQL storage against a real server (tests/pgfixture.py): search, continue, report,
heartbeats, and a one-line error within seconds for every kind of bad PostgreSQL input."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import warnings

import optuna
import pytest
from conftest import DEFAULT_SETTINGS
from optuna.trial import TrialState
from pgfixture import PG_PASSWORD, free_port

from tunecb.errors import StorageError
from tunecb.storage.urls import CONNECT_TIMEOUT_S, open_storage, redact

SETTINGS = DEFAULT_SETTINGS.replace("epochs=3", "epochs=2").replace("n_trials=3", "n_trials=2")
WRONG_PASSWORD = "Wr0ng-pass-7731"
HANG_BOUND_S = 30  # only catches hangs: each error below comes within seconds


def assert_one_line(err: str, *parts: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def states(url: str, name: str) -> list[tuple[int, str]]:
    study = optuna.load_study(study_name=name, storage=url)
    return [(t.number, t.state.name) for t in study.get_trials()]


def test_search_stores_the_study_in_postgres_report_reads_it_and_more_trials_continue_it(
    cli, study_file, postgres_url, tmp_path
):
    path = study_file(name="pgtiny", settings=SETTINGS)
    results = tmp_path / "results"
    code, out, err = cli("search", path, "--storage", postgres_url, "--results", results)
    assert code == 0, err
    assert f"created study 'pgtiny' (val_accuracy, maximize) in {redact(postgres_url)}" in out
    assert PG_PASSWORD not in out + err
    assert states(postgres_url, "pgtiny") == [(0, "COMPLETE"), (1, "COMPLETE")]

    folder = results / "pgtiny"
    assert not (folder / "optuna.journal").exists()  # the study lives in PostgreSQL only
    stored = json.loads((folder / "study.json").read_text())
    assert stored["storage"] == postgres_url.replace(PG_PASSWORD, "***")
    for file in folder.rglob("*.json"):
        assert PG_PASSWORD not in file.read_text(), file

    code, out, err = cli(
        "report", "--storage", postgres_url, "--study-name", "pgtiny", "--format", "json"
    )
    assert code == 0, err
    rows = json.loads(out)
    assert sorted(r["trial"] for r in rows) == [0, 1]
    assert {r["state"] for r in rows} == {"COMPLETE"}
    assert all(r["params_units"] is not None for r in rows)

    code, out, err = cli("report", folder, "--storage", postgres_url, "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert sorted(r["trial"] for r in rows) == [0, 1]
    assert all(r["checkpoint"] and r["checkpoint"].endswith("best.keras") for r in rows)

    # study.json has no password: report on the folder alone must ask for the storage.
    code, out, err = cli("report", folder)
    assert code == 2
    line = assert_one_line(err, "--storage", redact(postgres_url))
    assert PG_PASSWORD not in line + out

    # The same command with a higher budget continues the study (one study for both: was a
    # test of its own that searched a second study first).
    code, out, err = cli(
        "search", path, "--storage", postgres_url, "--results", results, "--n-trials", "3"
    )
    assert code == 0, err
    assert "continuing study 'pgtiny': 2 trials done" in out
    assert "trial   2  COMPLETE" in out
    assert states(postgres_url, "pgtiny") == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
    assert (folder / "trials" / "2" / "trial.json").is_file()


@pytest.fixture
def silent_server():
    """A port that accepts TCP connections (the kernel's backlog) but never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def _bad_url(case: str, server, postgres_url: str, silent_port: int) -> tuple[str, str]:
    """(URL, what the error must say) for one kind of bad input."""
    database = postgres_url.rsplit("/", 1)[1]
    here = f"{server.host}:{server.port}"
    if case == "wrong password":
        return server.url(database, password=WRONG_PASSWORD), "password authentication failed"
    if case == "unknown user":
        url = f"postgresql+psycopg2://nobody:{PG_PASSWORD}@{here}/{database}"
        return url, "authentication failed for user 'nobody'"
    if case == "unknown database":
        return server.url("no_such_db"), "database 'no_such_db' does not exist"
    if case == "nothing listens":
        url = f"postgresql+psycopg2://tunecb:{PG_PASSWORD}@127.0.0.1:{free_port()}/{database}"
        return url, "nothing accepts connections at 127.0.0.1:"
    if case == "unresolvable host":
        url = f"postgresql+psycopg2://tunecb:{PG_PASSWORD}@nonexistent.invalid:5432/db"
        return url, "host 'nonexistent.invalid' not found"
    if case == "server never answers":
        url = (
            f"postgresql+psycopg2://tunecb:{PG_PASSWORD}@127.0.0.1:{silent_port}/db"
            "?connect_timeout=2"
        )
        return url, "no answer from 127.0.0.1:"
    if case == "malformed port":
        return f"postgresql://tunecb:{PG_PASSWORD}@:notaport/db", "malformed URL"
    if case == "no // after the scheme":
        return f"postgresql:/tunecb:{PG_PASSWORD}@{here}/db", "malformed URL (no '//'"
    if case == "no database name":
        return f"postgresql+psycopg2://tunecb:{PG_PASSWORD}@{here}", "no database name"
    if case == "port out of range":
        return f"postgresql://tunecb:{PG_PASSWORD}@{server.host}:99999/db", "out of range"
    if case == "unknown driver":
        return f"postgresql+nosuchdriver://tunecb:{PG_PASSWORD}@{here}/db", "no PostgreSQL driver"
    raise AssertionError(case)


BAD_CASES = [
    "wrong password",
    "unknown user",
    "unknown database",
    "nothing listens",
    "unresolvable host",
    "server never answers",
    "malformed port",
    "no // after the scheme",
    "no database name",
    "port out of range",
    "unknown driver",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_postgres_input_is_one_line_within_seconds(
    case, cli, study_file, postgres_server, postgres_url, silent_server, tmp_path
):
    url, expected = _bad_url(case, postgres_server, postgres_url, silent_server)
    path = study_file(name="pgbad", settings=SETTINGS)
    results = tmp_path / "results"
    commands = [
        ["search", path, "--storage", url, "--results", results],
        ["report", "--storage", url, "--study-name", "pgbad"],
    ]
    if case == "no // after the scheme":
        # report checks "://" itself first (tunecb/reporting.py) and says "no such journal
        # file", naming the URL unredacted: left to that module's owner.
        commands.pop()
    for argv in commands:
        started = time.monotonic()
        code, out, err = cli(*argv)
        elapsed = time.monotonic() - started
        assert code == 2, (argv[0], out, err)
        line = assert_one_line(err, f"tunecb {argv[0]}: error: --storage", expected)
        assert redact(url) in line
        assert PG_PASSWORD not in out + err
        assert WRONG_PASSWORD not in out + err
        assert elapsed < HANG_BOUND_S, (argv[0], elapsed)
        if case == "server never answers":  # the URL's connect_timeout=2, not the default
            assert "within 2 s" in line
            assert elapsed < 2 + CONNECT_TIMEOUT_S, elapsed
    assert not results.exists()  # nothing written before the storage is open


def test_missing_driver_says_how_to_install_it(cli, monkeypatch):
    # Simulates an install without the [postgres] extra: importing the drivers fails.
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    monkeypatch.setitem(sys.modules, "psycopg", None)
    for url, expected in (
        (f"postgresql+psycopg2://tunecb:{PG_PASSWORD}@127.0.0.1/db", "'psycopg2' is not"),
        (f"postgresql://tunecb:{PG_PASSWORD}@127.0.0.1/db", "no PostgreSQL driver is installed"),
    ):
        code, out, err = cli("report", "--storage", url, "--study-name", "x")
        assert code == 2
        assert_one_line(err, expected, "pip install 'tunecb[postgres]'")
        assert PG_PASSWORD not in out + err


def test_plain_and_heroku_style_urls_open_with_the_installed_driver(postgres_url, tmp_path):
    # SQLAlchemy's default driver for postgresql:// may be one that is not installed.
    for url in (
        postgres_url.replace("postgresql+psycopg2://", "postgresql://"),
        postgres_url.replace("postgresql+psycopg2://", "postgres://"),
    ):
        storage = open_storage(url, tmp_path)
        optuna.create_study(storage=storage, study_name=url.split(":", 1)[0])
    names = {s.study_name for s in optuna.get_all_study_summaries(postgres_url)}
    assert names == {"postgresql", "postgres"}


def test_workers_starting_together_on_an_empty_database_all_open_it(postgres_url, tmp_path):
    # Each creates Optuna's tables at once; without a retry some lose with "already exists".
    start = time.time() + 3  # all open at the same moment, after their imports
    code = (
        "import sys, time; from pathlib import Path; from tunecb.storage.urls import open_storage\n"
        f"time.sleep(max(0.0, {start} - time.time()))\n"
        f"open_storage({postgres_url!r}, Path('.'))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    assert optuna.get_all_study_summaries(postgres_url) == []


def test_connect_timeout_is_set_unless_the_url_sets_it(postgres_url, tmp_path):
    storage = open_storage(postgres_url, tmp_path)
    assert storage.engine_kwargs == {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    storage = open_storage(postgres_url + "?connect_timeout=3", tmp_path)
    assert not storage.engine_kwargs
    assert storage.engine.url.query["connect_timeout"] == "3"


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study")
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_heartbeat_fails_the_trials_of_a_dead_worker(postgres_url, tmp_path):
    plain = open_storage(postgres_url, tmp_path)
    assert plain.get_heartbeat_interval() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ExperimentalWarning: we ask for it on purpose
        storage = open_storage(postgres_url, tmp_path, heartbeat_interval=1, grace_period=1)
    assert (storage.get_heartbeat_interval(), storage.grace_period) == (1, 1)

    study = optuna.create_study(storage=storage, study_name="hb")
    trial = study.ask()  # a worker takes a trial, beats once, and dies
    storage.record_heartbeat(trial._trial_id)
    time.sleep(2.5)
    optuna.storages.fail_stale_trials(study)  # what a live worker runs
    assert study.get_trials()[0].state == TrialState.FAIL


def test_heartbeat_needs_an_rdb_storage(tmp_path):
    with pytest.raises(StorageError, match="journal file, which has no heartbeat"):
        open_storage(None, tmp_path, heartbeat_interval=30)
    with pytest.raises(StorageError, match="heartbeat_interval must be a positive"):
        open_storage("sqlite:///" + str(tmp_path / "s.db"), tmp_path, heartbeat_interval=0)
    with pytest.raises(StorageError, match="grace_period needs heartbeat_interval"):
        open_storage("sqlite:///" + str(tmp_path / "s.db"), tmp_path, grace_period=10)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://tuner:s3cret@db:5432/tunecb", "postgresql://tuner:***@db:5432/tunecb"),
        (
            "postgresql+psycopg2://u:p%40ss@h:5432/db",
            "postgresql+psycopg2://u:***@h:5432/db",
        ),
        ("postgresql://u@x:pw@h/db", "postgresql://u@x:***@h/db"),  # SQLAlchemy's user: u@x
        ("postgresql://u:a:b@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h:5432/db", "postgresql://u@h:5432/db"),
        (
            "postgresql://u@h/db?sslmode=require&password=pw",
            "postgresql://u@h/db?sslmode=require&password=***",
        ),
        ("postgresql:/u:pw@h/db", "postgresql:/u:***@h/db"),  # a typo, still hidden
        ("sqlite:///study.db", "sqlite:///study.db"),
        ("journal:/tmp/a:b/optuna.journal", "journal:/tmp/a:b/optuna.journal"),
        ("results/x/optuna.journal", "results/x/optuna.journal"),
    ],
)
def test_redact_hides_exactly_the_password_sqlalchemy_sees(url, shown):
    assert redact(url) == shown
    from sqlalchemy.engine import make_url

    if "://" in url and "password=" not in url:
        password = make_url(url).password
        assert password is None or str(password) not in redact(url).replace("***", "")
