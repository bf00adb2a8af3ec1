"""A journal-file lock that dies with its holder.

Optuna's default journal lock is a symlink (``PATH.lock``): a process SIGKILLed while it
holds it leaves the link behind, and every other writer waits 30 s (its grace period)
before taking it over. tunecb's writers take an advisory ``flock`` on ``PATH.flock``
instead: the kernel releases it when its holder dies, at any instruction. (``tunecb
repair`` takes both locks, so it also excludes plain Optuna writers.)

>>> import tempfile, pathlib
>>> lock = FlockLock(str(pathlib.Path(tempfile.mkdtemp()) / "optuna.journal"))
>>> lock.acquire(), lock.release()
(True, None)
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from optuna.storages.journal._file import BaseJournalFileLock

SUFFIX = ".flock"


class FlockLock(BaseJournalFileLock):
    """``flock(LOCK_EX)`` on ``PATH.flock``; thread-safe (one holder per process at a time)."""

    def __init__(self, journal_path: str) -> None:
        self.path = journal_path + SUFFIX
        self._thread_lock = threading.Lock()
        self._fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        import fcntl

        if not self._thread_lock.acquire(blocking):
            return False
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                self._thread_lock.release()
                return False
        except BaseException:
            if self._thread_lock.locked() and self._fd is None:
                self._thread_lock.release()
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        import fcntl

        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self._thread_lock.release()


@contextlib.contextmanager
def writers_paused(journal: Path, symlink_lock: Path, timeout: float) -> Iterator[None]:
    """Run the block when no writer is mid-append: after a plain Optuna writer's symlink lock
    is gone, holding tunecb's writers' lock (a writer holds it for one append); after
    ``timeout`` seconds (a stale lock), or when no lock file can be made (a read-only
    folder), the block runs anyway. Without a ``PATH.flock`` (no tunecb writer ever wrote the
    journal) it runs at once, and creates none.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "optuna.journal"
    >>> writer = FlockLock(str(path))
    >>> writer.acquire(), writer.release()  # a tunecb writer wrote here once
    (True, None)
    >>> with writers_paused(path, Path(f"{path}.lock"), 1.0):
    ...     FlockLock(str(path)).acquire(blocking=False)  # held by the block
    False
    """
    deadline = time.monotonic() + timeout
    while os.path.lexists(symlink_lock) and time.monotonic() < deadline:
        time.sleep(0.02)
    lock = FlockLock(str(Path(journal).absolute()))
    held = False
    if not os.path.exists(lock.path):  # no tunecb writer ever wrote here: none to wait for,
        yield  # and a reader leaves no lock file beside a file it only reads
        return
    with contextlib.suppress(OSError):
        while not (held := lock.acquire(blocking=False)) and time.monotonic() < deadline:
            time.sleep(0.02)
    try:
        yield
    finally:
        if held:
            lock.release()
