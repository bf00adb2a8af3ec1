"""Journal files: a half-written record is found, reported in one line, and cut off.

Real Optuna studies in real journal files; the killed writer is a real process killed with
SIGKILL in the middle of a record.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from tunecb.errors import StorageError
from tunecb.storage.journal import check_journal, raise_if_torn, repair_command, repair_journal

optuna.logging.set_verbosity(optuna.logging.WARNING)


def storage(path: Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(path)))


def make_study(path: Path, n_trials: int = 3) -> list[tuple]:
    """A study 's' with ``n_trials`` finished trials (params, reports, user attrs) in ``path``."""
    study = optuna.create_study(study_name="s", storage=storage(path), direction="maximize")
    study.set_user_attr("monitor", "val_accuracy")
    for i in range(n_trials):
        trial = study.ask()
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        units = trial.suggest_int("units", 8, 64)
        trial.report(0.5, 1)
        trial.set_user_attr("stop_reason", "completed")
        trial.set_user_attr("checkpoint", f"trials/{i}/best.keras")
        study.tell(trial, lr * units)
    return snapshot(path)


def snapshot(path: Path) -> list[tuple]:
    study = optuna.load_study(study_name="s", storage=storage(path))
    return [
        (t.number, t.state, t.params, t.values, t.user_attrs, t.intermediate_values)
        for t in study.trials
    ]


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def backups(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.bak-*"))


def tear(path: Path) -> bytes:
    """Append the first half of a real record (the last one), as a killed writer leaves it."""
    fragment = lines_of(path)[-1][: len(lines_of(path)[-1]) // 2]
    with open(path, "ab") as handle:
        handle.write(fragment)
    return fragment


def test_a_healthy_study_journal_is_ok_and_every_line_is_a_record(tmp_path):
    path = tmp_path / "optuna.journal"
    make_study(path)
    status = check_journal(path)
    assert status.ok and status.problem == ""
    assert status.records == len(lines_of(path)) == status.lines > 10
    assert (status.torn_bytes, status.bad_line, status.good_bytes) == (0, None, path.stat().st_size)
    raise_if_torn(path)  # does not raise


def test_optuna_loads_a_torn_journal_but_the_next_writes_break_the_study(tmp_path):
    """The problem is real: Optuna skips the fragment, glues the next record onto it (lost),
    and every process fails with a JSONDecodeError once another record follows."""
    path = tmp_path / "optuna.journal"
    before = make_study(path)
    tear(path)
    study = optuna.load_study(study_name="s", storage=storage(path))
    assert len(study.trials) == 3  # the unterminated line is skipped silently
    with pytest.raises(Exception):  # noqa: B017 - Optuna 5.0: AttributeError, its new trial lost
        study.ask()
    with pytest.raises(json.JSONDecodeError):  # one more record, by any process
        optuna.load_study(study_name="s", storage=storage(path)).set_user_attr("k", 1)
    with pytest.raises(json.JSONDecodeError):
        optuna.load_study(study_name="s", storage=storage(path))

    # the glued line is now in the middle: reported by its number, and the repair still
    # gives back every finished trial
    status = check_journal(path)
    assert status.bad_line == status.records + 1 and status.lines == status.records + 2
    repair_journal(path)
    assert snapshot(path) == before


def test_a_torn_tail_is_reported_in_one_line_and_repaired_keeping_finished_trials(tmp_path):
    path = tmp_path / "optuna.journal"
    before = make_study(path)
    good = path.read_bytes()
    fragment = tear(path)
    torn = path.read_bytes()

    status = check_journal(path)
    assert not status.ok
    assert status.torn_bytes == len(fragment) > 0
    assert status.records == len(good.splitlines()) and status.bad_line is None
    with pytest.raises(StorageError) as caught:
        raise_if_torn(path)
    message = str(caught.value)
    assert "\n" not in message
    assert f"ends with a half-written record ({len(fragment)} bytes after record" in message
    assert f"`tunecb repair {tmp_path}`" in message

    result = repair_journal(path)
    assert (result.records_kept, result.bytes_removed, result.lines_removed) == (
        status.records,
        len(fragment),
        1,
    )
    assert result.repaired and result.backup.read_bytes() == torn
    assert backups(tmp_path) == [result.backup]
    assert path.read_bytes() == good  # exactly the records before the tear
    assert not Path(str(path) + ".lock").exists()
    assert check_journal(path).ok

    assert snapshot(path) == before  # same numbers, states, params, values, attrs
    study = optuna.load_study(study_name="s", storage=storage(path))
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    study.tell(trial, 0.5)
    after = snapshot(path)
    assert after[:3] == before and after[3][:2] == (3, optuna.trial.TrialState.COMPLETE)


def test_a_complete_last_record_without_newline_is_cut_as_optuna_never_read_it(tmp_path):
    path = tmp_path / "optuna.journal"
    make_study(path)
    good = path.read_bytes()
    record = {"op_code": 2, "worker_id": "w", "study_id": 0, "user_attr": {"late": 1}}
    with open(path, "ab") as handle:
        handle.write(json.dumps(record, separators=(",", ":")).encode())  # killed before "\n"
    seen = optuna.load_study(study_name="s", storage=storage(path)).user_attrs
    assert "late" not in seen  # Optuna does not apply a line without its newline

    assert check_journal(path).torn_bytes == len(json.dumps(record, separators=(",", ":")))
    result = repair_journal(path)
    assert path.read_bytes() == good
    assert optuna.load_study(study_name="s", storage=storage(path)).user_attrs == seen
    assert b'"late"' in result.backup.read_bytes()


CHILD = """
import json, sys, time
import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

optuna.logging.set_verbosity(optuna.logging.WARNING)
path = sys.argv[1]
study = optuna.create_study(study_name="s", storage=JournalStorage(JournalFileBackend(path)))
for i in range(3):
    trial = study.ask()
    study.tell(trial, trial.suggest_float("x", 0.0, 1.0))
print(json.dumps([[t.number, t.params, t.value] for t in study.trials]), flush=True)

# One big record appended as JournalFileBackend.append_logs does (under its lock), but in
# small flushed chunks, so that the kill lands in the middle of it.
record = {"op_code": 8, "worker_id": "w", "trial_id": 0, "user_attr": {"log": "x" * 200_000}}
data = (json.dumps(record, separators=(",", ":")) + "\\n").encode()
JournalFileSymlinkLock(path).acquire()
with open(path, "ab") as handle:
    for start in range(0, len(data), 100):
        handle.write(data[start : start + 100])
        handle.flush()
        if start == 1000:
            print("writing", flush=True)
        time.sleep(0.001)
print("finished", flush=True)
"""


def test_a_writer_killed_mid_record_leaves_a_torn_journal_that_repair_makes_loadable(tmp_path):
    path = tmp_path / "optuna.journal"
    child_py = tmp_path / "child.py"
    child_py.write_text(textwrap.dedent(CHILD))
    child = subprocess.Popen(
        [sys.executable, str(child_py), str(path.absolute())],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        finished = json.loads(child.stdout.readline())
        assert child.stdout.readline().strip() == "writing"
        time.sleep(0.1)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()

    torn = path.read_bytes()
    assert not torn.endswith(b"\n")  # killed mid-record
    lock_file = Path(str(path) + ".lock")
    assert os.path.lexists(lock_file)  # the killed writer still "holds" Optuna's lock
    status = check_journal(path)
    assert status.torn_bytes > 1000 and status.bad_line is None
    with pytest.raises(StorageError, match="half-written record"):
        raise_if_torn(path)

    time.sleep(0.3)
    result = repair_journal(path, timeout=10, stale_after=0.2)  # the lock is stale: removed
    assert result.bytes_removed == status.torn_bytes and result.backup.read_bytes() == torn
    assert not os.path.lexists(lock_file)
    study = optuna.load_study(study_name="s", storage=storage(path))
    assert [[t.number, t.params, t.value] for t in study.trials] == finished
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    trial = study.ask()
    study.tell(trial, trial.suggest_float("x", 0.0, 1.0))
    assert len(optuna.load_study(study_name="s", storage=storage(path)).trials) == 4


def test_repairing_a_healthy_journal_changes_nothing_and_writes_no_backup(tmp_path):
    path = tmp_path / "optuna.journal"
    make_study(path)
    content, inode = path.read_bytes(), path.stat().st_ino
    for _ in range(2):  # idempotent
        result = repair_journal(path)
        assert not result.repaired and result.backup is None
        assert (result.bytes_removed, result.lines_removed) == (0, 0)
        assert result.records_kept == len(content.splitlines())
        assert "nothing to do" in result.summary
    assert path.read_bytes() == content and path.stat().st_ino == inode  # not even rewritten
    assert backups(tmp_path) == []


def test_an_empty_journal_is_healthy(tmp_path):
    path = tmp_path / "optuna.journal"
    path.touch()
    status = check_journal(path)
    assert status.ok and (status.records, status.lines) == (0, 0)
    assert repair_journal(path).backup is None


def test_a_torn_middle_line_is_reported_and_repair_keeps_the_records_before_it(tmp_path):
    path = tmp_path / "study.journal"
    make_study(path)
    lines = lines_of(path)
    glued = lines[5][: len(lines[5]) // 2] + lines[5]  # a cut record, the next glued on
    damaged = b"".join([*lines[:5], glued, *lines[5:]])
    path.write_bytes(damaged)

    status = check_journal(path)
    assert (status.records, status.bad_line, status.lines) == (5, 6, len(lines) + 1)
    with pytest.raises(StorageError) as caught:
        raise_if_torn(path)
    message = str(caught.value)
    assert "\n" not in message
    assert "damaged at line 6 of" in message and "keep the 5 records before it" in message
    assert f"`tunecb repair --storage {path}`" in message  # not tunecb's default journal name

    result = repair_journal(path)
    assert path.read_bytes() == b"".join(lines[:5])
    assert result.records_kept == 5 and result.lines_removed == len(lines) + 1 - 5
    assert result.backup.read_bytes() == damaged  # everything set aside is kept there
    optuna.load_study(study_name="s", storage=storage(path))  # the kept prefix loads
    assert repair_journal(path).backup is None  # idempotent


def test_a_middle_line_that_is_not_a_torn_record_is_reported_and_never_cut(tmp_path):
    path = tmp_path / "study.journal"
    make_study(path)
    lines = lines_of(path)
    damaged = b"".join([*lines[:5], b"garbage\n", *lines[5:]])
    path.write_bytes(damaged)

    status = check_journal(path)
    assert (status.records, status.bad_line, status.repairable) == (5, 6, False)
    for call in (raise_if_torn, repair_journal):
        with pytest.raises(StorageError) as caught:
            call(path)
        message = str(caught.value)
        assert "\n" not in message
        assert "line 6 of" in message and "is not an Optuna record ('garbage')" in message
        assert "`tunecb repair` will not cut it" in message
        assert f"`truncate -s {status.good_bytes} {path}` keeps the 5 records" in message
    assert path.read_bytes() == damaged and backups(tmp_path) == []
    assert not Path(f"{path}.lock").exists()


def test_a_line_that_is_json_but_not_an_optuna_record_is_damage(tmp_path):
    path = tmp_path / "optuna.journal"
    make_study(path)
    lines = lines_of(path)
    path.write_bytes(b"".join([*lines[:2], b"[1, 2]\n", b'{"no_op_code": 1}\n', *lines[2:]]))
    assert check_journal(path).bad_line == 3


def test_repair_keeps_the_journal_permissions(tmp_path):
    path = tmp_path / "optuna.journal"
    make_study(path)
    tear(path)
    path.chmod(0o640)
    result = repair_journal(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE(result.backup.stat().st_mode) == 0o640


def test_repair_waits_for_optunas_lock_and_gives_up_with_a_clear_error(tmp_path):
    path = tmp_path / "optuna.journal"
    make_study(path)
    tear(path)
    torn = path.read_bytes()
    lock = JournalFileSymlinkLock(str(path))  # the lock JournalFileBackend appends under
    assert lock.acquire()
    try:
        with pytest.raises(StorageError) as caught:
            repair_journal(path, timeout=0.3)
        message = str(caught.value)
        assert "\n" not in message and f"is locked by {path}.lock" in message
        assert path.read_bytes() == torn and backups(tmp_path) == []
        assert os.path.lexists(f"{path}.lock")  # a live writer's lock is left alone

        threading.Timer(0.3, lock.release).start()  # the writer finishes its append
        started = time.monotonic()
        result = repair_journal(path, timeout=10)
        assert time.monotonic() - started >= 0.25 and result.repaired
    finally:
        if os.path.lexists(f"{path}.lock"):
            lock.release()
    assert check_journal(path).ok


def test_a_missing_journal_is_a_clear_error_to_check_and_fine_before_opening(tmp_path):
    path = tmp_path / "results" / "digits" / "optuna.journal"
    raise_if_torn(path)  # Optuna creates it when the study is created
    for call in (check_journal, repair_journal):
        with pytest.raises(StorageError, match=r"optuna.journal does not exist"):
            call(path)
    assert not path.exists()


def test_the_repair_command_names_the_results_folder_or_the_storage():
    assert repair_command(Path("results/digits/optuna.journal")) == "tunecb repair results/digits"
    assert repair_command(Path("runs/a b.journal")) == "tunecb repair --storage 'runs/a b.journal'"
