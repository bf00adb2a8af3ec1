"""A full disk, on a real small filesystem: a tmpfs this test mounts (as root; skipped
elsewhere) and always unmounts. The search stops at the first write that finds no space,
with one line (the path, the space it needed, the fixes) and exit code 1, never a crash;
no temporary file is left, finished trials and checkpoints stay whole, and the same
command continues once space is freed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunecb.errors import DiskFull

CHUNK = 1 << 16


class Disk:
    """A mounted tmpfs, and a filler file that leaves a chosen amount of it free."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.filler = root / "filler"

    def free(self) -> int:
        return shutil.disk_usage(self.root).free

    def fill(self, leave: int = 0) -> None:
        """Fill the disk until ``leave`` bytes are free (0: until a write fails)."""
        with open(self.filler, "ab", buffering=0) as handle:
            try:
                while (room := self.free() - leave) > 0:
                    handle.write(b"\0" * min(CHUNK, room))
                while leave == 0:  # the last partly used pages too, until a write fails
                    handle.write(b"\0" * 512)
            except OSError:
                pass

    def unfill(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    """An 8 MiB tmpfs at ``tmp_path/disk``, unmounted whatever happens."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root on Linux")
    root = tmp_path / "disk"
    root.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(root)],
        capture_output=True, text=True,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield Disk(root)
    finally:
        if subprocess.run(["umount", str(root)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(root)], capture_output=True)


STUDY = """
import keras
import numpy as np
from sklearn.datasets import load_digits

import tunecb

study = tunecb.Study(monitor="val_accuracy", epochs=2, batch_size=64, n_trials={n_trials},
                     seed=0, pruner="none")


@study.data
def load():
    x, y = load_digits(return_X_y=True)
    x = (x[:500] / 16.0).astype("float32")
    return (x[:400], y[:400]), (x[400:], y[400:500])


@study.model
def build(trial):
    lr = trial.suggest_float("lr", 1e-3, 3e-2, log=True)
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense({units}, activation="relu"),
        keras.layers.Dense({units}, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model

{extra}
"""

# Something else fills the disk between trials: trial 1's last callback, after its
# checkpoint is written, so the first write to fail is one of the runner's own.
FILL_AFTER_TRIAL_1 = """
class Fill(keras.callbacks.Callback):
    def __init__(self, number):
        super().__init__()
        self.number = number

    def on_train_end(self, logs=None):
        if self.number != 1:
            return
        with open({filler!r}, "ab", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"\\0" * 512)
            except OSError:
                pass


@study.callbacks
def callbacks(trial):
    return [Fill(trial.number)]
"""


def search(study: Path, results: Path, *flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TUNECB_JOBS": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = ["search", str(study), "--results", str(results), *flags]
    return subprocess.run(
        [sys.executable, "-m", "tunecb", *command],
        capture_output=True, text=True, env=env, timeout=300, cwd=study.parent,
    )  # fmt: skip


def trials(results: Path, name: str) -> list:
    import optuna

    from tunecb.storage.urls import open_storage

    storage = open_storage(None, results / name)
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def the_error_line(run: subprocess.CompletedProcess) -> str:
    """The one line a full disk gives, after checking there is nothing else to see."""
    assert run.returncode == 1, (run.returncode, run.stderr[-3000:])
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr, run.stderr
    lines = [line for line in run.stderr.splitlines() if "tunecb" in line]
    assert len(lines) == 1, run.stderr
    line = lines[0]
    assert line.startswith("tunecb search: error: no space left on device to write "), line
    assert "--keep-checkpoints K" in line and "--results" in line and "same command" in line
    return line


def assert_intact(results: Path, name: str) -> None:
    """No temporary file anywhere; every COMPLETE trial's checkpoint is a whole zip."""
    assert not [p for p in results.rglob(".*")], sorted(results.rglob(".*"))
    for trial in trials(results, name):
        if trial.state.name == "COMPLETE":
            with zipfile.ZipFile(results / name / trial.user_attrs["checkpoint"]) as archive:
                assert archive.testzip() is None


@pytest.mark.slow
def test_a_checkpoint_that_fills_the_disk_stops_the_search_and_the_same_command_continues(
    disk, tmp_path, cli
):
    """Checkpoints and backups (every epoch) of ~0.33 MiB, 1.1 MiB free: the second or
    third trial finds no room. (A backup written through HDF5 then made the process die of a
    segmentation fault at exit, exit code 139; a checkpoint gave "OSError: [Errno 28]".)"""
    study = tmp_path / "full.py"
    study.write_text(STUDY.format(n_trials=3, units=128, extra=""))
    results = disk.root / "results"
    disk.fill(leave=1_200_000)  # 3.5 checkpoints: a trial's peak is 3 (2 at epoch 1)

    run = search(study, results, "--backup-every", "0")
    line = the_error_line(run)
    assert str(results / "full") in line and "it needs about" in line, line
    assert_intact(results, "full")
    assert trials(results, "full")[0].state.name == "COMPLETE"
    stopped = [t for t in trials(results, "full") if t.state.name == "FAIL"]
    assert [t.user_attrs["stop_reason"] for t in stopped] == ["interrupted"]
    assert "no space left on device" in stopped[0].user_attrs["error"]

    disk.unfill()  # the same command again (in this process: TensorFlow is loaded once)
    code, out, err = cli("search", study, "--results", results, "--backup-every", "0")
    assert code == 0, err
    assert "continuing study 'full'" in out
    done = [t for t in trials(results, "full") if t.state.name == "COMPLETE"]
    assert len(done) == 3
    assert stopped[0].params in [t.params for t in done]  # the stopped trial ran again
    assert_intact(results, "full")


@pytest.mark.slow
def test_a_disk_that_fills_between_trials_stops_the_search_in_one_line(disk, tmp_path, cli):
    """Another program fills the disk after trial 1 trained: the next write fails, most
    often the journal's record of trial 2 (it gave "internal error: OSError: [Errno 28]")."""
    study = tmp_path / "gap.py"
    extra = FILL_AFTER_TRIAL_1.format(filler=str(disk.filler))
    study.write_text(STUDY.format(n_trials=3, units=16, extra=extra))
    results = disk.root / "results"

    # The CLI in this process (TensorFlow loaded once; the test above keeps a process)
    run = subprocess.CompletedProcess([], *cli("search", study, "--results", results))
    line = the_error_line(run)
    assert str(results / "gap") in line, line  # the journal, trial.json or history.csv
    assert_intact(results, "gap")

    disk.unfill()
    code, out, err = cli("search", study, "--results", results)
    assert code == 0, err
    assert len([t for t in trials(results, "gap") if t.state.name == "COMPLETE"]) == 3
    from tunecb.storage.journal import check_journal

    assert check_journal(results / "gap" / "optuna.journal").ok


def test_a_journal_record_that_does_not_fit_is_cut_back_and_the_study_still_loads(disk):
    """Half a record at the end of the journal would break the study for every reader."""
    import optuna

    from tunecb.storage.journal import check_journal
    from tunecb.storage.urls import open_storage

    folder = disk.root / "results" / "j"
    study = optuna.create_study(study_name="j", storage=open_storage(None, folder))
    study.set_user_attr("before", 1)
    journal = folder / "optuna.journal"
    size = journal.stat().st_size
    disk.fill()

    with pytest.raises(DiskFull) as caught:
        study.set_user_attr("big", "x" * 20_000)  # more than any page's room left
    assert caught.value.path == journal and caught.value.exit_code == 1
    assert journal.stat().st_size == size and check_journal(journal).ok

    disk.unfill()
    study.set_user_attr("after", 2)
    reloaded = optuna.load_study(study_name="j", storage=open_storage(None, folder))
    assert reloaded.user_attrs == {"before": 1, "after": 2}


def test_a_report_to_a_full_disk_is_one_line(disk, cli, finished_study):
    disk.fill()
    for flags, fix in (
        (["--format", "html", "--output", disk.root / "r.html"], "another --output path"),
        (["--format", "csv", "--output", disk.root / "deep" / "r.csv"], "another --output path"),
        (["--plots", disk.root / "plots"], "another --plots folder"),
    ):
        code, out, err = cli("report", finished_study, *flags)
        assert code == 1, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "no space left on device to write" in lines[0], err
        assert lines[0].endswith(fix), lines[0]
    assert [p.name for p in disk.root.rglob("*") if p.is_file()] == ["filler"]
