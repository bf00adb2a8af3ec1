"""The journal lock tunecb's writers take dies with its holder (a killed process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tunecb.storage.flock import FlockLock

HOLD = """
import sys, time
from tunecb.storage.flock import FlockLock
lock = FlockLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_writer_killed_while_holding_the_journal_lock_blocks_nobody(tmp_path):
    journal = str(tmp_path / "optuna.journal")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, journal], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = FlockLock(journal)
        assert not lock.acquire(blocking=False)  # really held by the other process
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        started = time.monotonic()
        assert lock.acquire()  # Optuna's symlink lock would wait out its 30 s grace period
        assert time.monotonic() - started < 5
        lock.release()
    finally:
        holder.kill()
        holder.wait()


def test_threads_of_one_process_take_turns(tmp_path):
    import threading

    lock, inside, overlaps = FlockLock(str(tmp_path / "j")), [], []

    def work() -> None:
        for _ in range(50):
            lock.acquire()
            inside.append(1)
            overlaps.append(len(inside) > 1)
            inside.pop()
            lock.release()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(overlaps) == 200 and not any(overlaps)
