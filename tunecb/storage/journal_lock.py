"""Holding an Optuna journal's locks: the lock file Optuna's writers take (``PATH.lock``), with
a deadline and stale-lock removal, and tunecb's own writers' lock (:mod:`tunecb.storage.flock`).

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "optuna.journal"
>>> _ = path.write_text("")
>>> with journal_lock(path, timeout=1, stale_after=30, fix="tunecb repair DIR"):
...     Path(str(path) + LOCK_SUFFIX).is_symlink()
True
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from tunecb.errors import StorageError

logger = logging.getLogger("tunecb")

# The lock JournalFileBackend takes by default: JournalFileSymlinkLock(file_path), which creates
# ``file_path + LOCK_FILE_SUFFIX`` (optuna/storages/journal/_file.py). JournalFileOpenLock uses
# the same name, so holding it excludes writers that use either lock.
LOCK_SUFFIX = ".lock"
# Optuna's own waiters force-release a lock after 30 s without a change to the journal
# (JournalFileSymlinkLock's default grace_period); a writer holds it for one append only.
STALE_LOCK_S = 30.0
LOCK_TIMEOUT_S = 40.0


@contextlib.contextmanager
def journal_lock(path: Path, *, timeout: float, stale_after: float, fix: str) -> Iterator[None]:
    """Hold the lock Optuna's JournalFileBackend takes, or raise :class:`StorageError`.

    ``JournalFileSymlinkLock.acquire`` blocks with no timeout (and with a relative journal
    path its symlink dangles, so it never sees a stale lock and spins), so this takes the same
    lock with the same ``os.symlink`` call in a loop with a deadline, and releases it with
    Optuna's ``release``. ``fix`` is the command to run again once the lock is free.
    """
    from optuna.storages.journal import JournalFileSymlinkLock

    lock = JournalFileSymlinkLock(str(path))
    lock_file = Path(str(path) + LOCK_SUFFIX)
    target = str(path.absolute())  # absolute, so that the link resolves from its folder
    deadline = time.monotonic() + timeout
    waiting = False
    while True:
        try:
            os.symlink(target, lock_file)
            break
        except FileExistsError:
            pass
        except OSError as exc:
            raise StorageError(
                f"journal {path}: cannot create its lock file {lock_file} "
                f"({exc.strerror or exc}); make {path.parent} writable"
            ) from exc
        age = _age(lock_file)
        if age is not None and age > stale_after and (_age(path) or 0.0) > stale_after:
            logger.warning(
                "removing the lock %s: held for %.0f s with no write to the journal, so it was "
                "left by a killed process", lock_file, age
            )  # fmt: skip
            with contextlib.suppress(RuntimeError):  # another process removed it first
                lock.release()
            continue
        if time.monotonic() >= deadline:
            held = "" if age is None else f" (held for {age:.0f} s)"
            raise StorageError(
                f"journal {path} is locked by {lock_file}{held}: a process is writing to it; "
                f"stop the processes using the study and run `{fix}` again "
                f"(a lock older than {stale_after:.0f} s is removed as left by a killed process)"
            )
        if not waiting:
            waiting = True
            logger.warning(
                "journal %s is locked by %s; waiting up to %.0f s for it", path, lock_file, timeout
            )
        time.sleep(0.05)
    try:
        with _our_writers_excluded(path, deadline, fix):
            yield
    finally:
        with contextlib.suppress(RuntimeError):  # removed by another process as stale
            lock.release()


@contextlib.contextmanager
def _our_writers_excluded(path: Path, deadline: float, fix: str) -> Iterator[None]:
    """Hold tunecb's own journal lock too (:mod:`tunecb.storage.flock`), until ``deadline``."""
    from tunecb.storage.flock import FlockLock

    lock = FlockLock(str(path.absolute()))
    while not lock.acquire(blocking=False):
        if time.monotonic() >= deadline:
            raise StorageError(
                f"journal {path} is being written by a tunecb search; stop it and run `{fix}` again"
            )
        time.sleep(0.05)
    try:
        yield
    finally:
        lock.release()


def _age(path: Path) -> float | None:
    """Seconds since ``path`` (not what a symlink points to) was last modified."""
    try:
        return time.time() - os.lstat(path).st_mtime
    except FileNotFoundError:
        return None
