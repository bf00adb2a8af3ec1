"""Storage files that are not what they seem: a text, CSV, JSON Lines, binary or SQLite file
given as a journal is refused in one line (exit 2) before anything writes to it, and
`tunecb repair` never cuts a line it cannot prove torn, nor empties a file."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import write_study

from tunecb.errors import StorageError
from tunecb.storage.journal import check_journal, raise_if_torn, repair_journal

optuna.logging.set_verbosity(optuna.logging.WARNING)


def assert_one_line(err: str, *parts: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def _sqlite(path: Path) -> None:
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{path}")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)


def _journal_without_its_start(path: Path) -> None:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    full = path.with_suffix(".full")
    study = optuna.create_study(
        study_name="s", storage=JournalStorage(JournalFileBackend(str(full)))
    )
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    path.write_bytes(b"".join(full.read_bytes().splitlines(keepends=True)[3:]))
    full.unlink()


FILES = {  # name: (how to make it, what the message says it looks like)
    "notes.txt": (b"results of Tuesday\nlr 0.01 was best\n", "text (first line 'results of"),
    "history.csv": (b"epoch,loss,val_loss\n1,0.9,1.1\n", "CSV text (first line 'epoch,loss"),
    "metrics.jsonl": (b'{"epoch": 1, "loss": 0.9}\n', 'JSON Lines without Optuna\'s "op_code"'),
    "config.json": (b'{\n  "lr": 0.01\n}\n', "JSON text, not one Optuna record a line"),
    "weights.bin": (bytes(range(256)) * 4, "binary data"),
    "log.gz": (gzip.compress(b"hello\n" * 100), "gzip data"),
    "study.db": (_sqlite, "but an SQLite database; pass it as --storage sqlite:///"),
    "cut.journal": (_journal_without_its_start, "without the one that creates the study"),
}


@pytest.fixture(params=sorted(FILES))
def foreign(request, tmp_path) -> tuple[Path, bytes, str]:
    """A file that is not an Optuna journal, its bytes, and what it looks like."""
    folder = tmp_path / "files"
    folder.mkdir()
    path = folder / request.param
    make, looks = FILES[request.param]
    if callable(make):
        make(path)
    else:
        path.write_bytes(make)
    return path, path.read_bytes(), looks


def test_a_file_that_is_no_journal_is_refused_by_every_command_and_left_as_it_was(
    foreign, cli, tmp_path
):
    path, before, looks = foreign
    study = write_study(tmp_path, settings='monitor="val_accuracy", epochs=1, n_trials=1')
    commands = [
        ["report", "--storage", path],
        ["repair", "--storage", path],
        ["search", study, "--results", tmp_path / "r", "--storage", path],
    ]
    for args in commands:
        code, out, err = cli(*args)
        assert code == 2, (args, out, err)
        line = assert_one_line(err, f"--storage {path} is not an Optuna journal file", looks)
        assert "(tunecb leaves the file as it is)" in line
        assert "half-written" not in line and "`tunecb repair" not in line  # no bad advice
        assert path.read_bytes() == before  # byte for byte
    assert sorted(os.listdir(path.parent)) == [path.name]  # no backup, lock or temp file
    assert not (tmp_path / "r").exists()  # refused before the results folder was made
    with pytest.raises(StorageError):  # the library refuses it the same way
        repair_journal(path)


def test_a_real_process_refuses_a_csv_with_exit_code_2(tmp_path):
    path = tmp_path / "history.csv"
    path.write_bytes(b"epoch,loss\n1,0.9\n")
    for command in ("repair", "report"):
        proc = subprocess.run(
            [sys.executable, "-m", "tunecb", command, "--storage", str(path)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert_one_line(proc.stderr, f"--storage {path} is not an Optuna journal file: it looks "
                        "like CSV text (first line 'epoch,loss')")  # fmt: skip
    assert path.read_bytes() == b"epoch,loss\n1,0.9\n"


def test_a_results_folder_whose_journal_was_overwritten_says_so(cli, tmp_path):
    folder = tmp_path / "results" / "digits"
    folder.mkdir(parents=True)
    journal = folder / "optuna.journal"
    journal.write_bytes(b"trial,value\n0,0.9\n")
    for args in (["report", folder], ["repair", folder]):
        code, _, err = cli(*args)
        assert code == 2
        assert_one_line(
            err,
            f"journal {journal} is not an Optuna journal file: it looks like CSV text",
            "something overwrote it: restore it from a copy, or move it away",
        )
    assert journal.read_bytes() == b"trial,value\n0,0.9\n"
    assert sorted(os.listdir(folder)) == ["optuna.journal"]


def _study_journal(path: Path) -> bytes:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.create_study(
        study_name="s", storage=JournalStorage(JournalFileBackend(str(path)))
    )
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    return path.read_bytes()


@pytest.mark.parametrize(
    ("tail", "says"),
    [
        (b"hello", "ends with 5 bytes that are not an Optuna record ('hello')"),
        (b"x,1\n", "ends with 4 bytes that are not an Optuna record ('x,1')"),
        (b'{"loss": 0.5}\n', "that are not an Optuna record ('{\"loss\": 0.5}')"),
        (b'{"op_code": 5, "worker_id": "w", "trial_id": 0, "param_na\n',  # cut, then a newline
         "that are not an Optuna record"),
    ],
)  # fmt: skip
def test_repair_never_cuts_what_it_cannot_prove_torn(cli, tmp_path, tail, says):
    path = tmp_path / "s.journal"
    good = _study_journal(path)
    path.write_bytes(good + tail)
    status = check_journal(path)
    assert not status.ok and not status.repairable and status.good_bytes == len(good)
    for args in (["repair", "--storage", path], ["report", "--storage", path]):
        code, _, err = cli(*args)
        assert code == 2
        assert_one_line(
            err, says, "nor one cut short by a killed writer, so `tunecb repair` will not cut it",
            f"`truncate -s {len(good)} {path}` keeps the {status.records} records before it",
        )  # fmt: skip
    assert path.read_bytes() == good + tail and sorted(os.listdir(tmp_path)) == ["s.journal"]


def test_repair_never_empties_a_file_whose_only_record_is_torn(cli, tmp_path):
    path = tmp_path / "s.journal"
    first = _study_journal(path).splitlines(keepends=True)[0]
    torn = first[: len(first) // 2]
    path.write_bytes(torn)
    assert check_journal(path).repairable is False
    code, _, err = cli("repair", "--storage", path)
    assert code == 2
    assert_one_line(err, "holds no complete record", "no study was ever created in it")
    with pytest.raises(StorageError, match="holds no complete record"):
        raise_if_torn(path)
    assert path.read_bytes() == torn and sorted(os.listdir(tmp_path)) == ["s.journal"]


def test_repair_still_cuts_a_record_torn_by_a_killed_writer(cli, tmp_path):
    path = tmp_path / "s.journal"
    good = _study_journal(path)
    last = good.splitlines(keepends=True)[-1]
    path.write_bytes(good + last[: len(last) // 3])  # cut mid-record
    assert check_journal(path).repairable
    code, out, err = cli("repair", "--storage", path)
    assert code == 0, err
    assert "kept" in out and path.read_bytes() == good
    glued = good + last[:20] + last  # and the next record glued onto a cut one
    path.write_bytes(glued)
    assert check_journal(path).repairable
    assert repair_journal(path).backup.read_bytes() == glued and path.read_bytes() == good


def test_an_empty_file_is_a_new_journal(tmp_path):
    path = tmp_path / "new.journal"
    path.touch()
    raise_if_torn(path)  # Optuna creates the study in it
    assert check_journal(path).ok and repair_journal(path).backup is None
