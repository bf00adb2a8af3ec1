"""Ctrl-C and SIGTERM while a trial's main thread is blocked in C code (issue 21): a real
child process whose main thread waits in libc with the signal blocked (as a thread waiting
inside TensorFlow's C++ never runs Python's handler); no Keras."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import ctypes, os, signal, sys, time
from tunecb.execution.watchdog import stuck_trial_guard

marker, mode = sys.argv[1], sys.argv[2]
if mode == "term":  # as the CLI does: SIGTERM stops the search like Ctrl-C
    def terminated(signum, frame):
        raise KeyboardInterrupt(signum)
    signal.signal(signal.SIGTERM, terminated)
libc = ctypes.CDLL(None)
try:
    with stuck_trial_guard(lambda: open(marker, "w").write("requeued"), grace=0.5):
        if mode == "answers":  # a fit that runs Python: the signal's own handler answers
            print("ready", flush=True)
            while True:
                time.sleep(0.01)
        mask = (ctypes.c_ulong * 16)()
        libc.sigemptyset(mask)
        libc.sigaddset(mask, signal.SIGINT)
        libc.sigaddset(mask, signal.SIGTERM)
        libc.pthread_sigmask(signal.SIG_BLOCK, mask, None)  # this thread never sees them
        print("ready", flush=True)
        libc.sleep(60)  # blocked in C, as in a tf.py_function that never returns
except KeyboardInterrupt:
    print("answered", flush=True)
    sys.exit(7)
"""


def _child(tmp_path: Path, mode: str) -> tuple[subprocess.Popen, Path]:
    marker = tmp_path / "marker"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(marker), mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout.readline().strip() == "ready"
    if mode != "answers":
        _wait_until_asleep_in_c(proc.pid)
    return proc, marker


def _wait_until_asleep_in_c(pid: int) -> None:
    """Until the child's main thread sleeps in libc (``/proc/PID/syscall``: nanosleep 35
    or clock_nanosleep 230). A signal that came while it still ran Python between
    ``print`` and ``sleep`` would be answered by Python's own handler there (the flag is
    process-wide), and the test would not test the watchdog."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            call = Path(f"/proc/{pid}/syscall").read_text().split()[0]
        except (OSError, IndexError):
            return  # not Linux, or no access: the short window stays
        if call in ("35", "230"):
            return
        time.sleep(0.01)


@pytest.mark.parametrize(
    "mode, sig, code", [("int", signal.SIGINT, 130), ("term", signal.SIGTERM, 143)]
)
def test_a_signal_the_blocked_trial_cannot_answer_requeues_it_and_exits(tmp_path, mode, sig, code):
    proc, marker = _child(tmp_path, mode)
    try:
        sent = time.monotonic()
        proc.send_signal(sig)
        assert proc.wait(timeout=20) == code, proc.stderr.read()
        assert time.monotonic() - sent < 10
        assert marker.read_text() == "requeued"
    finally:
        proc.kill()
        proc.wait()


def test_a_trial_that_answers_the_signal_itself_is_left_to_the_loop(tmp_path):
    proc, marker = _child(tmp_path, "answers")
    try:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 7
        assert "answered" in proc.stdout.read()
        time.sleep(0.7)  # past the grace: the watchdog has stood down
        assert not marker.exists()
    finally:
        proc.kill()
        proc.wait()
