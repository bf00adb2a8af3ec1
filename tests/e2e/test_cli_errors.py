"""Bad input: a one-line error naming the file or flag, exit code 2, nothing half-written."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import write_study


def assert_one_line(err: str, *parts: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for part in parts:
        assert part in lines[0], lines[0]


def test_missing_study_file(cli, tmp_path):
    code, _, err = cli("search", tmp_path / "nope.py")
    assert code == 2
    assert_one_line(err, "nope.py", "does not exist")


def test_syntax_error_names_file_and_line(cli, tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import tunecb\n\nstudy = tunecb.Study(\n    epochs=3,,\n)\n")
    code, _, err = cli("search", path)
    assert code == 2
    assert_one_line(err, f"{path}:4: syntax error")


def test_import_error_in_the_study_file_names_the_line(cli, tmp_path):
    path = tmp_path / "boom.py"
    path.write_text("import tunecb\nx = 1\nraise RuntimeError('no data here')\n")
    code, _, err = cli("search", path)
    assert code == 2
    assert_one_line(err, f"{path}:3:", "RuntimeError: no data here")


def test_a_file_that_declares_no_study(cli, tmp_path):
    path = tmp_path / "empty.py"
    path.write_text("import keras\n")
    code, _, err = cli("search", path)
    assert code == 2
    assert_one_line(err, "declares no study", "study = tunecb.Study(")


def test_a_study_without_a_model_builder(cli, tmp_path):
    path = tmp_path / "nobuild.py"
    path.write_text("import tunecb\nstudy = tunecb.Study()\n@study.data\ndef d():\n    return 1\n")
    code, _, err = cli("search", path)
    assert code == 2
    assert_one_line(err, "has no model builder", "@study.model")


def test_a_builder_returning_an_uncompiled_model(cli, tmp_path):
    path = write_study(tmp_path, build_extra="""
        m = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
        return m
    """)  # fmt: skip
    code, _, err = cli("search", path, "--results", tmp_path / "r")
    assert code == 2
    assert_one_line(err, "returned an uncompiled model", "model.compile(")


def test_a_builder_returning_something_else(cli, tmp_path):
    path = write_study(tmp_path, build_extra="return {'units': units}")
    code, _, err = cli("search", path, "--results", tmp_path / "r")
    assert code == 2
    assert_one_line(err, "returned dict, not a keras.Model")


def test_a_monitor_that_is_not_logged_stops_at_the_first_epoch(cli, tmp_path):
    path = write_study(tmp_path, settings='monitor="val_acc", epochs=50, n_trials=5')
    code, out, err = cli("search", path, "--results", tmp_path / "r")
    assert code == 2
    assert_one_line(err, "'val_acc'", "'val_accuracy'", "Set monitor=")
    meta = (tmp_path / "r/tiny/trials/0/trial.json").read_text()
    assert '"epochs_run": 0' in meta and '"state": "FAIL"' in meta
    assert not (tmp_path / "r/tiny/trials/1").exists()  # no second trial was started
    # The study is not stuck on the typo: fixing the monitor continues it.
    code, out, err = cli("search", path, "--results", tmp_path / "r", "--monitor",
                         "val_accuracy", "--n-trials", "2", "--epochs", "1")  # fmt: skip
    assert code == 0, err
    assert "monitor changed from val_acc to val_accuracy" in out


@pytest.mark.parametrize(
    ("flags", "parts"),
    [
        (["--n-trials", "0"], ["--n-trials", "'0'", "positive integer"]),
        (["--n-trials", "-3"], ["--n-trials", "'-3'"]),
        (["--epochs", "0"], ["--epochs", "'0'", "positive integer"]),
        (["--sampler", "anneal"], ["--sampler 'anneal'", "'tpe'"]),
        (["--pruner", "often"], ["--pruner 'often'", "'hyperband'"]),
        (["--direction", "upwards"], ["--direction 'upwards'", "'maximize'"]),
        (["--storage", "redis://h/0"], ["--storage 'redis://h/0'", "unknown scheme"]),
        (["--study-name", "a b"], ["--study-name 'a b'"]),
    ],
)
def test_bad_flags(cli, tmp_path, flags, parts):
    path = write_study(tmp_path)
    code, _, err = cli("search", path, "--results", tmp_path / "r", *flags)
    assert code == 2
    assert_one_line(err, *parts)
    assert not (tmp_path / "r").exists()  # nothing written before the input was checked


def test_a_results_folder_that_cannot_be_written(cli, tmp_path):
    path = write_study(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = cli("search", path, "--results", blocker / "results")
    assert code == 2
    assert_one_line(err, "--results", "cannot write", str(blocker / "results"))
    assert blocker.read_text() == "not a folder"


def test_a_bad_direction_in_the_study_file_names_the_file(cli, tmp_path):
    path = write_study(tmp_path, settings='monitor="val_accuracy", direction="upward"')
    code, _, err = cli("search", path)
    assert code == 2
    assert_one_line(err, f"{path}: direction= 'upward'")


def test_debug_shows_the_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tunecb", "search", str(tmp_path / "nope.py"), "--debug"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "StudyFileError" in proc.stderr


def test_report_errors_are_one_line(cli, tmp_path):
    code, _, err = cli("report", tmp_path / "missing")
    assert code == 2
    assert_one_line(err, "does not exist")
    (tmp_path / "empty").mkdir()
    code, _, err = cli("report", tmp_path / "empty")
    assert code == 2
    assert_one_line(err, "holds no tunecb study")
    code, _, err = cli("report", "--storage", f"sqlite:///{tmp_path}/x.db", "--study-name", "s")
    assert code == 2
    assert_one_line(err, "--study-name 's': no such study")
    code, _, err = cli("report", tmp_path, "--format", "xml")
    assert code == 2
    assert_one_line(err, "--format", "'xml'")


def test_a_val_monitor_without_validation_data(cli, tmp_path):
    path = write_study(tmp_path)
    path.write_text(path.read_text().replace("(x[:400], y[:400]), (x[400:], y[400:])",
                                             "(x[:400], y[:400]), None"))  # fmt: skip
    code, _, err = cli("search", path, "--results", tmp_path / "r")
    assert code == 2
    assert_one_line(err, "monitor 'val_accuracy' needs validation data", "returned None")
    # validation_split in fit_kwargs provides it
    path.write_text(
        path.read_text().replace(
            'pruner="none"', "pruner=\"none\", fit_kwargs={'validation_split': 0.2}"
        )
    )
    code, _, err = cli("search", path, "--results", tmp_path / "r", "--n-trials", "1")
    assert code == 0, err


def test_a_torn_journal_is_reported_and_tunecb_repair_mends_it(cli, tmp_path):
    path = write_study(tmp_path, settings='monitor="val_accuracy", epochs=1, n_trials=1')
    results = tmp_path / "r"
    assert cli("search", path, "--results", results)[0] == 0
    journal = results / "tiny" / "optuna.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    with open(journal, "ab") as handle:  # what a writer killed mid-record leaves behind
        handle.write(lines[-1][: len(lines[-1]) // 2])
    for args in (["report", results / "tiny"], ["search", path, "--results", results]):
        code, _, err = cli(*args)
        assert code == 2
        assert_one_line(err, "half-written record", f"tunecb repair {results / 'tiny'}")
    code, out, err = cli("repair", results / "tiny")
    assert code == 0, err
    assert "kept" in out and "optuna.journal.bak-" in out
    code, out, err = cli("search", path, "--results", results, "--n-trials", "2")
    assert code == 0, err
    assert "continuing study 'tiny': 1 trial done" in out
    code, out, _ = cli("repair", results / "tiny")
    assert code == 0 and "healthy" in out
