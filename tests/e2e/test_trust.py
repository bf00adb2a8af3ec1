"""The results folder as a trust boundary (issue 18, finding 6): a folder moved, shared or
received from someone else must never make tunecb delete or write outside it, quote the
content of a file it links to, pass hostile strings raw to a terminal, spreadsheet or
Markdown page, or print any part of a database password. Real folders, real symlinks, real
searches and CLI runs; the shared finished study is copied, never trained anew."""

from __future__ import annotations

import json
import shutil
from contextlib import closing
from pathlib import Path

import optuna
import pytest

import tunecb
from tunecb.errors import ResultsError
from tunecb.results import StudyDir
from tunecb.storage.journal import check_journal
from tunecb.storage.urls import open_storage, redact, redact_text

TORN = b'{"op_code":5,"worker_id":"w","trial_id":'
SECRET = "API_KEY=sk-THISISSECRET0123456789"


def _copy(finished_study: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the shared finished study: ``(results root, its study file)``."""
    root = tmp_path / "results" / "fin"
    shutil.copytree(finished_study, root, symlinks=True)
    return root, finished_study.parent.parent / "fin.py"


def _best_and_rest(root: Path) -> tuple[int, list[int]]:
    study = optuna.load_study(study_name="fin", storage=open_storage(None, root))
    best = study.best_trial.number
    return best, [t.number for t in study.trials if t.number != best]


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# 1. Links never make tunecb delete or write outside the results root ------------------


def test_a_symlinked_trial_folder_is_refused_and_its_files_kept(cli, finished_study, tmp_path):
    root, study = _copy(finished_study, tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "precious.txt").write_text("mine")
    (outside / "history.csv").write_text("not tunecb's")
    (root / "trials" / "4").symlink_to(outside, target_is_directory=True)
    code, out, err = cli("search", study, "--results", root.parent, "--n-trials", "5")
    assert code == 2, (out, err)
    line = _one_line(err)
    assert "trials/4" in line and str(outside) in line and "link" in line, line
    assert (outside / "precious.txt").read_text() == "mine"
    assert (outside / "history.csv").read_text() == "not tunecb's"
    assert sorted(p.name for p in outside.iterdir()) == ["history.csv", "precious.txt"]


def test_a_symlinked_backups_folder_is_refused_and_its_target_kept(cli, finished_study, tmp_path):
    root, study = _copy(finished_study, tmp_path)
    outside = tmp_path / "elsewhere"
    (outside / "4").mkdir(parents=True)
    (outside / "4" / "precious.txt").write_text("mine")
    shutil.rmtree(root / "backups", ignore_errors=True)
    (root / "backups").symlink_to(outside, target_is_directory=True)
    code, out, err = cli("search", study, "--results", root.parent, "--n-trials", "5")
    assert code == 2, (out, err)
    line = _one_line(err)
    assert "backups" in line and str(outside) in line, line
    assert (outside / "4" / "precious.txt").read_text() == "mine"


def test_a_link_that_stays_inside_the_results_root_is_followed(cli, finished_study, tmp_path):
    root, study = _copy(finished_study, tmp_path)
    inside = root / "moved" / "4"
    inside.mkdir(parents=True)
    (root / "trials" / "4").symlink_to(inside, target_is_directory=True)
    code, out, err = cli("search", study, "--results", root.parent, "--n-trials", "5")
    assert code == 0, (out, err)
    assert (inside / "trial.json").is_file() and (root / "trials" / "4").is_symlink()


def test_keep_checkpoints_never_deletes_through_a_link_that_leaves_the_root(
    cli, finished_study, tmp_path
):
    root, study = _copy(finished_study, tmp_path)
    best, rest = _best_and_rest(root)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for number in rest:
        shutil.move(root / "trials" / str(number), outside / str(number))
        (root / "trials" / str(number)).symlink_to(outside / str(number))
    code, out, err = cli("search", study, "--results", root.parent, "--keep-checkpoints", "1")
    assert code == 0, (out, err)
    for number in rest:
        assert (outside / str(number) / "best.keras").is_file()
        assert "checkpoint_removed" not in json.loads(
            (outside / str(number) / "trial.json").read_text()
        )
    assert f"trials/{rest[0]}" in err and str(outside) in err, err


def test_rerun_never_writes_through_a_trial_folder_linked_outside(cli, finished_study, tmp_path):
    root, _ = _copy(finished_study, tmp_path)
    best, _rest = _best_and_rest(root)
    outside = tmp_path / "elsewhere"
    shutil.move(root / "trials" / str(best), outside)
    (root / "trials" / str(best)).symlink_to(outside)
    code, out, err = cli("rerun", root, str(best))
    assert code == 2, (out, err)
    assert f"trials/{best}" in _one_line(err) and str(outside) in err, err
    assert not (outside / "rerun.json").exists()
    assert not list(outside.glob(".rerun.json*"))


@pytest.mark.parametrize("where", ["outside", "inside"])
def test_repair_repairs_a_symlinked_journal_in_place(where, cli, finished_study, tmp_path):
    root, _ = _copy(finished_study, tmp_path)
    folder = tmp_path / "elsewhere" if where == "outside" else root / "store"
    folder.mkdir()
    real = folder / "real.journal"
    shutil.move(root / "optuna.journal", real)
    (root / "optuna.journal").symlink_to(real)
    healthy = real.read_bytes()
    with open(real, "ab") as handle:
        handle.write(TORN)
    code, out, err = cli("repair", root)
    assert code == 0, (out, err)
    link = root / "optuna.journal"
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert real.read_bytes() == healthy and check_journal(real).ok
    assert str(real) in out, out
    code, out, err = cli("report", root)
    assert code == 0, (out, err)


def test_study_dir_guard_names_the_link_and_where_it_points(tmp_path):
    root = tmp_path / "results" / "s"
    (root / "trials").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    (root / "trials" / "3").symlink_to(tmp_path / "other")
    folder = StudyDir(root)
    with pytest.raises(ResultsError) as caught:
        folder.guard(folder.trial_dir(3) / "trial.json")
    message = str(caught.value)
    assert "\n" not in message
    assert str(root / "trials" / "3") in message and str(tmp_path / "other") in message
    # A root reached through a link of its own is fine, as are paths inside it.
    (tmp_path / "alias").symlink_to(tmp_path / "results")
    alias = StudyDir(tmp_path / "alias" / "s")
    assert alias.guard(alias.trial_dir(5)) == alias.trial_dir(5)


# 2. A checkpoint never has a linked file's content quoted ------------------------------


def test_a_checkpoint_linked_outside_is_named_never_quoted(cli, finished_study, tmp_path):
    root, _ = _copy(finished_study, tmp_path)
    best, _rest = _best_and_rest(root)
    secret = tmp_path / "home" / ".env"
    secret.parent.mkdir()
    secret.write_text(SECRET + "\n")
    checkpoint = root / "trials" / str(best) / "best.keras"
    checkpoint.unlink()
    checkpoint.symlink_to(secret)
    page = tmp_path / "report.html"
    outputs = []
    for argv in (
        ("report", root),
        ("report", root, "--wide"),
        ("report", root, "--format", "json"),
        ("report", root, "--format", "csv"),
        ("report", root, "--trial", str(best)),
        ("report", root, "--format", "html", "--output", page),
    ):
        code, out, err = cli(*argv)
        assert code == 0, (argv, out, err)
        outputs.append(out + err)
    outputs.append(page.read_text())
    for text in outputs:
        assert "sk-" not in text and "API_KEY" not in text, text
    assert any("link" in text and str(secret) in text for text in outputs[:2]), outputs[1]
    with pytest.raises(tunecb.errors.CheckpointError) as caught:
        tunecb.load_best(root, trial=best)
    message = str(caught.value)
    assert "sk-" not in message and "API_KEY" not in message, message
    assert "link" in message and str(secret) in message, message


def test_a_checkpoint_that_is_not_an_archive_is_never_quoted(cli, finished_study, tmp_path):
    root, _ = _copy(finished_study, tmp_path)
    best, _rest = _best_and_rest(root)
    (root / "trials" / str(best) / "best.keras").write_text(SECRET)
    code, out, err = cli("report", root, "--format", "json")
    assert code == 0, err
    problem = next(r for r in json.loads(out) if r["trial"] == best)["checkpoint_problem"]
    assert "not a Keras" in problem, problem
    assert "sk-" not in out + err and "API_KEY" not in out + err, problem


def test_a_journal_linked_to_another_file_is_named_never_quoted(cli, tmp_path):
    root = tmp_path / "results" / "x"
    root.mkdir(parents=True)
    secret = tmp_path / ".env"
    (root / "optuna.journal").symlink_to(secret)
    for content in (SECRET + "\n", '{"op_code":0,"worker_id":"w","study_name":"s"}\n' + SECRET):
        secret.write_text(content)
        for command in ("report", "repair"):
            code, out, err = cli(command, root)
            assert code == 2, (command, out, err)
            line = _one_line(err)
            assert "sk-" not in line and "API_KEY" not in line, line
            assert "symbolic link" in line, line
        assert secret.read_text() == content


# 3. Hostile strings: terminal, Markdown, CSV -------------------------------------------

ESCAPES = "\x1b]0;pwned\x07\x1b[2J"
HTML = "<script>alert(1)</script><img src=x onerror=alert(2)>|pipe"
FORMULA = '=HYPERLINK("http://evil.example","click")'


@pytest.fixture
def hostile_study(finished_study, tmp_path) -> Path:
    """A copy of the finished study with one trial whose parameters are hostile strings
    (and one whose parameter name is), added through Optuna."""
    root, _ = _copy(finished_study, tmp_path)
    study = optuna.load_study(study_name="fin", storage=open_storage(None, root))
    cat = optuna.distributions.CategoricalDistribution
    params = {"act": ESCAPES + "tail", "html": HTML, "formula": FORMULA, "shift": -0.5,
              f"name{ESCAPES}": "x"}  # fmt: skip
    distributions = {
        "act": cat([ESCAPES + "tail"]),
        "html": cat([HTML]),
        "formula": cat([FORMULA]),
        "shift": optuna.distributions.FloatDistribution(-1.0, 1.0),
        f"name{ESCAPES}": cat(["x"]),
    }
    study.add_trial(
        optuna.trial.create_trial(params=params, distributions=distributions, value=0.99)
    )
    return root


def test_terminal_output_escapes_control_characters(cli, hostile_study):
    number = 4
    for argv in (
        ("report", hostile_study),
        ("report", hostile_study, "--wide"),
        ("report", hostile_study, "--trial", str(number)),
        ("report", hostile_study, "--format", "markdown"),
    ):
        code, out, err = cli(*argv)
        assert code == 0, (argv, out, err)
        assert "\x1b" not in out + err and "\x07" not in out + err, (argv, repr(out))
    code, out, _ = cli("report", hostile_study, "--wide")
    assert "\\x1b]0;pwned\\x07\\x1b[2Jtail" in out, out
    code, out, _ = cli("report", hostile_study, "--trial", str(number))
    assert "\\x1b]0;pwned" in out, out


def test_search_summary_escapes_control_characters(cli, hostile_study, finished_study):
    study = finished_study.parent.parent / "fin.py"
    code, out, err = cli("search", study, "--results", hostile_study.parent, "--n-trials", "5")
    assert code == 0, (out, err)
    assert "\\x1b]0;pwned" in out + err, out + err  # the best trial's parameters
    assert "\x1b" not in out + err and "\x07" not in out + err, repr(out + err)


def test_markdown_escapes_html_and_pipes(cli, hostile_study):
    code, out, err = cli("report", hostile_study, "--format", "markdown")
    assert code == 0, err
    assert "<script>" not in out and "<img" not in out, out
    assert "&lt;script&gt;" in out and "\\|pipe" in out, out
    row = next(line for line in out.splitlines() if "&lt;script&gt;" in line)
    header = out.splitlines()[0]
    assert row.count(" | ") - row.count("\\|") <= header.count(" | "), (header, row)


def test_csv_neutralises_formulas_and_keeps_numbers(cli, hostile_study):
    import csv
    import io

    code, out, err = cli("report", hostile_study, "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    hostile = next(r for r in rows if r["trial"] == "4")
    assert hostile["params_formula"] == "'" + FORMULA
    assert hostile["params_shift"] == "-0.5"  # a number stays a number
    assert "\x1b" not in out
    for row in rows:
        for value in row.values():
            assert not (value or "").startswith(("=", "+", "@", "\t", "\r")), row


def test_escaping_helpers():
    from tunecb.escaping import csv_cell, markdown_cell, printable

    assert printable("a\x1b[2Jb\x07\x9b\r") == "a\\x1b[2Jb\\x07\\x9b\\r"
    assert printable("two\nlines\tand tab") == "two\nlines\tand tab"
    assert printable("\u202eevil") == "\\u202eevil"
    assert markdown_cell("<b>|&") == "&lt;b&gt;\\|&amp;"
    assert csv_cell("=1+2") == "'=1+2" and csv_cell("-0.5") == "-0.5"
    assert csv_cell("-cmd") == "'-cmd" and csv_cell("\tx") == "'\tx"
    assert csv_cell(-0.5) == -0.5 and csv_cell("@SUM(A1)") == "'@SUM(A1)"


# 4. Secrets: no part of a password printed ---------------------------------------------

AT_PASSWORD = "ETPW@QZXK"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://tuner:{AT_PASSWORD}@127.0.0.1:5432/db",
         "postgresql://tuner:***@127.0.0.1:5432/db"),
        ("postgresql+psycopg2://u:a@b@c@h/db", "postgresql+psycopg2://u:***@h/db"),
        ("postgresql://u:a/b@h/db", "postgresql://u:***@h/db"),
    ],
)  # fmt: skip
def test_redact_takes_the_last_at_of_the_netloc(url, shown):
    assert redact(url) == shown
    assert redact_text(f"cannot open {url}: boom") == f"cannot open {shown}: boom"


def test_a_password_with_an_unencoded_at_is_never_printed(
    cli, study_file, postgres_server, postgres_url, tmp_path
):
    database = postgres_url.rsplit("/", 1)[1]
    here = f"{postgres_server.host}:{postgres_server.port}"
    url = f"postgresql://tunecb:{AT_PASSWORD}@{here}/{database}"
    path = study_file(name="pgat", settings='monitor="val_accuracy", epochs=1, n_trials=1')
    for argv in (
        ("search", path, "--storage", url, "--results", tmp_path / "r"),
        ("search", path, "--storage", url, "--results", tmp_path / "r", "--debug"),
        ("search", path, "--storage", url, "--results", tmp_path / "r", "--log-format", "json"),
        ("report", "--storage", url, "--study-name", "pgat"),
        ("report", "--storage", url, "--study-name", "pgat", "--debug"),
    ):
        code, out, err = cli(*argv)
        assert code == 2, (argv, out, err)
        for part in AT_PASSWORD.split("@"):
            assert part not in out + err, (argv, out + err)
        assert "password authentication failed" in out + err, err  # the host is right


def test_a_password_with_an_unencoded_at_connects(postgres_server, postgres_url, tmp_path):
    database = postgres_url.rsplit("/", 1)[1]
    with closing(postgres_server.connect()) as conn, conn.cursor() as cur:
        cur.execute("DROP ROLE IF EXISTS atuser")
        cur.execute(f"CREATE ROLE atuser LOGIN SUPERUSER PASSWORD '{AT_PASSWORD}'")
    try:
        here = f"{postgres_server.host}:{postgres_server.port}"
        storage = open_storage(f"postgresql://atuser:{AT_PASSWORD}@{here}/{database}", tmp_path)
        optuna.create_study(study_name="at", storage=storage)
        storage.engine.dispose()
    finally:
        with closing(postgres_server.connect(database)) as conn, conn.cursor() as cur:
            cur.execute(f"REASSIGN OWNED BY atuser TO {postgres_server.user}")
            cur.execute("DROP OWNED BY atuser")
        with closing(postgres_server.connect()) as conn, conn.cursor() as cur:
            cur.execute("DROP ROLE atuser")


def test_a_missing_password_names_pgpassword_and_pgpass(
    cli, postgres_server, postgres_url, tmp_path, monkeypatch
):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    database = postgres_url.rsplit("/", 1)[1]
    here = f"{postgres_server.host}:{postgres_server.port}"
    url = f"postgresql://{postgres_server.user}@{here}/{database}"
    code, out, err = cli("report", "--storage", url, "--study-name", "x")
    assert code == 2, err
    line = _one_line(err)
    assert "PGPASSWORD" in line and "~/.pgpass" in line, line
    # ... and they work, as the message says.
    monkeypatch.setenv("PGPASSWORD", postgres_server.password)
    storage = open_storage(url, tmp_path)
    optuna.create_study(study_name="pw", storage=storage)
    storage.engine.dispose()
