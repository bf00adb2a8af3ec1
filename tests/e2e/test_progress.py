"""What `tunecb search` shows while it runs: a live view on a terminal (a real pseudo-terminal),
one line per trial in a log, nothing but the summary with --quiet, JSON events for scripts."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import optuna
import pytest
from conftest import trial_json

from tunecb.progress.live import LiveState, clock

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"

# Each epoch takes at least half a second, so that the view (4 frames a second) shows it.
SLOW_EPOCHS = """
import time

class Slow(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        time.sleep(0.5)

@study.callbacks
def callbacks(trial):
    return [Slow()]
"""
TWO_TRIALS = 'monitor="val_accuracy", epochs=3, batch_size=64, n_trials=2, seed=0, pruner="none"'


def run_in_terminal(args: list, interrupt_when: str | None = None, timeout: float = 300):
    """Run `python -m tunecb search ARGS` with a pseudo-terminal as its stdin, stdout and
    stderr (120 columns); with ``interrupt_when``, send SIGINT (as Ctrl-C does) once that
    text has appeared. Returns (exit code, everything the terminal received)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    # The pty's size, not a COLUMNS or LINES inherited from the runner (pytest-xdist sets them).
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM", "COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunecb", "search", *map(str, args)],
        stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    received = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            received += chunk
            if interrupt_when and interrupt_when in ANSI.sub("", received.decode(errors="replace")):
                os.killpg(proc.pid, signal.SIGINT)
                interrupt_when = None
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        os.close(master)
    return code, received.decode(errors="replace")


def test_a_terminal_gets_a_live_view_with_done_total_best_and_epochs(study_file, tmp_path):
    path = study_file(settings=TWO_TRIALS, extra=SLOW_EPOCHS)
    code, screen = run_in_terminal([path, "--results", tmp_path / "r"])
    text = ANSI.sub("", screen)
    assert code == 0, text
    assert "1/2 trials" in text and "elapsed" in text and "remaining" in text
    best = trial_json(tmp_path / "r", "tiny", 0)["best_value"]
    bars = [line.strip() for line in re.split(r"[\r\n]", text) if "1/2 trials" in line]
    assert f"best val_accuracy {best:.4g} (#0)" in text, bars  # the bar, while trial 1 runs
    assert re.search(r"trial +[01] +epoch +[123]/3 +val_accuracy [0-9.]+", text)
    # The finished trials leave their lines above the view, then the summary follows.
    assert re.search(r"\[1/2\] trial +0 +COMPLETE", text)
    assert re.search(r"\[2/2\] trial +1 +COMPLETE", text)
    assert "search done in" in text and "best model:" in text
    assert HIDE_CURSOR in screen and screen.rindex(SHOW_CURSOR) > screen.rindex(HIDE_CURSOR)


def test_ctrl_c_under_the_live_view_restores_the_terminal(study_file, tmp_path):
    path = study_file(settings=TWO_TRIALS, extra=SLOW_EPOCHS)
    code, screen = run_in_terminal([path, "--results", tmp_path / "r"], interrupt_when="epoch")
    text = ANSI.sub("", screen)
    assert code == 130, text
    assert "interrupted; finished trials and checkpoints are kept" in text
    assert "Traceback" not in text
    assert screen.rindex(SHOW_CURSOR) > screen.rindex(HIDE_CURSOR)  # the cursor is back


def test_a_log_gets_one_plain_line_per_finished_trial(study_file, tmp_path, cli):
    code, out, err = cli("search", study_file(), "--results", tmp_path / "r")
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == 3
    for n, line in enumerate(lines):
        assert re.match(
            rf"\[{n + 1}/3\] trial +{n}  COMPLETE +val_accuracy +[0-9.]+  best [0-9.]+ \(#\d\) +"
            r"epochs +3/3 completed +[0-9.]+s$",
            line,
        ), line
    assert "\x1b" not in out and "remaining" not in out and "elapsed" not in out


def test_quiet_prints_only_the_summary(study_file, tmp_path, cli):
    code, out, err = cli("search", study_file(), "--results", tmp_path / "r", "--quiet",
                         "--n-trials", "1", "--epochs", "1")  # fmt: skip
    assert code == 0, err
    assert out.lstrip().startswith("search done in") and "created study" not in out
    assert not any(line.startswith("[") for line in out.splitlines())  # no trial lines
    assert "best model:" in out and err == ""


def test_quiet_still_prints_errors(tmp_path, cli):
    code, out, err = cli("search", tmp_path / "missing.py", "--quiet")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "missing.py" in err


def parse_lines(out: str) -> list[dict]:
    def no_nan(name: str):
        raise AssertionError(f"{name} in a JSON line")

    return [json.loads(line, parse_constant=no_nan) for line in out.splitlines()]


def check_epochs_in_order(events: list[dict], trials: dict[int, dict]) -> None:
    """Per trial: trial_start, then epochs 1..epochs_run, then its trial event."""
    for number, trial in trials.items():
        mine = [e for e in events if e.get("trial") == number]
        kinds = [e["event"] for e in mine]
        assert kinds == ["trial_start"] + ["epoch"] * trial["epochs_run"] + ["trial"], kinds
        assert [e["epoch"] for e in mine[1:-1]] == list(range(1, trial["epochs_run"] + 1))
        assert all(e["epochs"] == 3 for e in mine[1:-1])


def test_json_log_format_gives_one_parsable_event_per_line(study_file, tmp_path, cli):
    path = study_file(
        settings='monitor="val_loss", epochs=3, batch_size=64, n_trials=3, seed=0, pruner="none"',
        build_extra="scale = float('nan') if trial.number == 1 else 1.0",
        layers_extra="keras.layers.Rescaling(scale),",
    )
    code, out, err = cli("search", path, "--results", tmp_path / "r", "--log-format", "json")
    assert code == 0, err
    events = parse_lines(out)  # every line is a JSON object; NaN would fail here
    assert events[0]["event"] == "start" and events[0]["n_trials"] == 3
    assert events[-1]["event"] == "summary" and events[-1]["done"] == 3
    assert {e["event"] for e in events} == {"start", "trial_start", "epoch", "trial", "summary"}
    trials = {e["trial"]: e for e in events if e["event"] == "trial"}
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "r" / "tiny" / "optuna.journal"))
    )
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert {t.number: t.state.name for t in study.trials} == {
        n: e["state"] for n, e in trials.items()
    }
    assert trials[0]["value"] == study.trials[0].value and trials[1]["value"] is None
    check_epochs_in_order(events, trials)
    # The epoch values are the monitored values of the history; a NaN epoch is null.
    history = (tmp_path / "r" / "tiny" / "trials" / "0" / "history.csv").read_text().splitlines()
    column = history[0].split(",").index("val_loss")
    logged = [float(row.split(",")[column]) for row in history[1:]]
    epochs = [e["value"] for e in events if e["event"] == "epoch" and e["trial"] == 0]
    assert epochs == logged
    assert [e["value"] for e in events if e["event"] == "epoch" and e["trial"] == 1] == [None]
    assert "search done" not in out and "\x1b" not in out


def test_json_with_quiet_gives_the_summary_only(study_file, tmp_path, cli):
    path = study_file(settings=TWO_TRIALS.replace("epochs=3", "epochs=1"))
    code, out, err = cli(
        "search", path, "--results", tmp_path / "r", "--log-format", "json", "--quiet"
    )
    assert code == 0, err
    [summary] = parse_lines(out)
    assert summary["event"] == "summary" and summary["best"]["number"] in (0, 1)


@pytest.mark.slow
def test_workers_send_their_epochs_to_the_launcher(study_file, tmp_path, cli):
    path = study_file(settings=TWO_TRIALS.replace("n_trials=2", "n_trials=4"))
    code, out, err = cli(  # the launcher: this process
        "search", path, "--results", tmp_path / "r", "--jobs", "2", "--log-format", "json"
    )
    assert code == 0, err
    events = parse_lines(out)
    trials = {e["trial"]: e for e in events if e["event"] == "trial"}
    assert sorted(trials) == [0, 1, 2, 3]
    check_epochs_in_order(events, trials)
    workers = {e["worker"] for e in events if e["event"] in ("trial_start", "epoch")}
    assert 1 <= len(workers) <= 2 and all(w.rpartition(":")[2].isdigit() for w in workers)
    assert workers == {e["worker"] for e in trials.values()}  # host:pid, the same in every event
    for number in trials:  # every event of a trial comes from the worker that ran it
        assert len({e["worker"] for e in events if e.get("trial") == number and "worker" in e}) == 1


def test_epoch_notice_has_no_batch_hooks():
    from keras.src.utils.python_utils import is_default

    from tunecb.training.callbacks import EpochNotice

    # A batch hook would run Python (and read the logs) after every batch: none here.
    notice = EpochNotice("loss", lambda epoch, value: None)
    hooks = ["on_batch_end", "on_train_batch_end", "on_test_batch_end", "on_predict_batch_end"]
    assert all(is_default(getattr(notice, hook)) for hook in hooks)
    assert not is_default(notice.on_epoch_end)


def test_remaining_time_comes_from_the_pace_and_the_deadline():
    from tunecb.execution.events import SearchStarted, TrialFinished

    def started(n_trials, timeout):
        return SearchStarted("s", "j", "d", True, 0, None, None, n_trials, "val_loss",
                             "minimize", 3, "inline", 1, timeout=timeout)  # fmt: skip

    now = [100.0]
    state = LiveState(clock=lambda: now[0])
    start = started(5, None)
    state.update(start)
    assert state.eta() is None  # no trial finished yet, no deadline
    now[0] = 104.0
    outcome = type("Outcome", (), {"number": 0})()
    state.update(TrialFinished(outcome, "h:1", 0.5, 0, done=1, n_trials=5))
    assert state.eta() == 16.0  # 4 trials left at 4 s each
    now[0] = 110.0
    assert state.eta() == 10.0  # counting down
    state.deadline = 105.0 + 3.0  # --timeout: no trial starts after it
    assert state.eta() == 0.0
    unlimited = LiveState(clock=lambda: now[0])
    unlimited.update(started(None, 60))
    assert unlimited.eta() == 60.0
    assert clock(3725) == "1:02:05"


def test_rich_stays_out_of_import_tunecb_and_help():
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, tunecb\nfrom tunecb.cli import main\n"
         "main(['--help'])\nprint('RICH', 'rich' in sys.modules)"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "RICH False"


def test_json_records_have_null_for_non_finite_numbers_and_text_for_objects():
    from tunecb.execution.events import EpochEnded
    from tunecb.execution.events import record as to_record

    record = to_record(EpochEnded(1, 2, 3, float("inf"), Path("w")))
    assert record["value"] is None and record["worker"] == "w"
    json.dumps(record, allow_nan=False)


@pytest.mark.slow
def test_a_dask_search_reports_epochs_seen_in_the_storage(study_file, tmp_path, cli, dask_cluster):
    """On the session's shared cluster (its workers imported Keras already), launched here."""
    path = study_file(settings=TWO_TRIALS, extra=SLOW_EPOCHS)
    address = dask_cluster.scheduler_address
    code, out, err = cli("search", path, "--results", tmp_path / "r", "--jobs", "1",
                         "--dask", address, "--log-format", "json")  # fmt: skip
    assert code == 0, err
    events = parse_lines(out)
    assert sorted(e["trial"] for e in events if e["event"] == "trial") == [0, 1]
    for number in (0, 1):  # epochs polled from the storage: some, in order, from its worker
        epochs = [e for e in events if e["event"] == "epoch" and e["trial"] == number]
        assert epochs and [e["epoch"] for e in epochs] == sorted({e["epoch"] for e in epochs})
        assert all(isinstance(e["worker"], str) and ":" in e["worker"] for e in epochs)
