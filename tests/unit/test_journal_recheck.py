"""A reader that checks the journal while a search appends to it can see a record half
written: it is torn only if it is still half written once the writer's lock is free
(issue 18, finding 7). A real writer process, holding tunecb's journal lock."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from tunecb.errors import StorageError
from tunecb.storage.journal import raise_if_torn

FIRST = b'{"op_code":0,"worker_id":"w","study_name":"s"}\n'
SECOND = b'{"op_code":2,"worker_id":"w","study_id":0,"user_attr":{"a":1}}\n'

WRITER = """
import sys
from tunecb.storage.flock import FlockLock

path, cut = sys.argv[1], int(sys.argv[2])
record = sys.argv[3].encode() + b"\\n"
lock = FlockLock(path)
lock.acquire()
with open(path, "ab", buffering=0) as f:
    f.write(record[:cut])
    print("half", flush=True)
    sys.stdin.readline()  # the test says when to finish the record
    f.write(record[cut:])
lock.release()
print("done", flush=True)
"""


def test_a_record_half_written_under_the_lock_is_not_called_torn(tmp_path):
    journal = tmp_path / "optuna.journal"
    journal.write_bytes(FIRST)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(journal), "20", SECOND.decode().strip()],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert writer.stdout.readline().strip() == "half"
        outcome: list[BaseException | None] = []

        def read() -> None:
            try:
                raise_if_torn(journal)
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        time.sleep(0.5)  # the reader has seen the half record and waits for the lock
        assert not outcome, outcome
        writer.stdin.write("go\n")
        writer.stdin.flush()
        reader.join(20)
        assert outcome == [None]
        assert writer.stdout.readline().strip() == "done"
    finally:
        writer.kill()
        writer.wait()
    assert journal.read_bytes() == FIRST + SECOND


def test_a_half_record_left_without_a_writer_is_still_torn(tmp_path):
    journal = tmp_path / "optuna.journal"
    journal.write_bytes(FIRST + SECOND[:20])
    started = time.monotonic()
    with pytest.raises(StorageError, match="half-written record"):
        raise_if_torn(journal)
    assert time.monotonic() - started < 2  # no writer holds the lock: no wait
