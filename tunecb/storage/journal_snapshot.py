"""A snapshot of a journal's replayed state beside it (``PATH.snapshot``), so that a process
that opens a long journal replays only the records written after the snapshot.

Optuna replays the whole journal in every process that opens it, a cost that grows with the
file (``benchmarks/scale.py --replay``: seconds at a few hundred trials on the development
machine), paid by every worker a search starts. A process whose replay went
:data:`EVERY_RECORDS` records past the last snapshot writes a new one (atomically: a
temporary file, then a rename); the next ones start from it.

A snapshot is a hint, never the truth; one that does not fit is ignored (a full replay):

- it names the records and the byte offset it covers, and the SHA-256 of the journal's first
  and last :data:`_WINDOW` bytes before that offset: a journal cut back by ``tunecb repair``
  below it, replaced, or another study's file does not match;
- it is read with an unpickler that builds nothing but Optuna's study and trial records
  (:data:`_ALLOWED`): a snapshot from someone else cannot run code here;
- an unreadable, truncated or garbled one, or one of another format, is ignored.

>>> import tempfile, optuna
>>> path = Path(tempfile.mkdtemp()) / "optuna.journal"
>>> def opened():
...     backend = SnapshotJournal(str(path))
...     return optuna.storages.JournalStorage(backend), backend
>>> storage, _ = opened()
>>> study = optuna.create_study(study_name="s", storage=storage)
>>> for _ in range(3): _ = study.tell(study.ask(), 1.0)
>>> write(storage)
True
>>> _ = study.tell(study.ask(), 2.0)  # after the snapshot: read from the journal's tail
>>> storage, backend = opened()
>>> backend.snapshot_records > 0, len(storage.get_all_trials(0))
(True, 4)
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import json
import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.storages.journal._base import BaseJournalSnapshot
from optuna.storages.journal._storage import JournalStorageReplayResult

log = logging.getLogger("tunecb")

SUFFIX = ".snapshot"
MAGIC = b"tunecb journal snapshot 1\n"
EVERY_RECORDS = 2000  # a replay this many records past the snapshot writes a new one
_WINDOW = 1 << 16


def _allowed() -> frozenset[tuple[str, str]]:
    from optuna import distributions

    classes = [
        JournalStorageReplayResult, optuna.study._frozen.FrozenStudy,
        optuna.trial.FrozenTrial, optuna.trial.TrialState, optuna.study.StudyDirection,
        datetime.datetime,
    ]  # fmt: skip
    classes += [
        c
        for c in vars(distributions).values()
        if isinstance(c, type) and issubclass(c, distributions.BaseDistribution)
    ]
    return frozenset((c.__module__, c.__qualname__) for c in classes)


_ALLOWED = _allowed()


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not a journal record")
        return super().find_class(module, name)


def snapshot_path(journal: Path) -> Path:
    return journal.with_name(journal.name + SUFFIX)


def _digests(handle: Any, offset: int) -> list[str]:
    handle.seek(0)
    head = handle.read(min(offset, _WINDOW))
    handle.seek(max(0, offset - _WINDOW))
    tail = handle.read(offset - max(0, offset - _WINDOW))
    return [hashlib.sha256(head).hexdigest(), hashlib.sha256(tail).hexdigest()]


def read(journal: Path) -> tuple[int, int, bytes] | None:
    """``(records, offset, pickled state)`` of the snapshot beside ``journal`` when it fits
    the journal as it is now (see the module), else ``None``."""
    try:
        data = snapshot_path(journal).read_bytes()
    except OSError:
        return None
    try:
        if not data.startswith(MAGIC):
            raise ValueError("not a snapshot")
        header, blob = data[len(MAGIC) :].split(b"\n", 1)
        meta = json.loads(header)
        records, offset = int(meta["records"]), int(meta["offset"])
        with open(journal, "rb") as handle:
            if os.fstat(handle.fileno()).st_size < offset or offset <= 0:
                raise ValueError("the journal is shorter than the snapshot")
            handle.seek(offset - 1)
            if handle.read(1) != b"\n" or _digests(handle, offset) != meta["sha256"]:
                raise ValueError("the journal's bytes differ")
        state = _Unpickler(io.BytesIO(blob)).load()  # builds only records, or raises
        if not isinstance(state, JournalStorageReplayResult) or state.log_number_read != records:
            raise ValueError("not the replayed state it names")
    except Exception as exc:  # a hint only: any doubt, a full replay
        log.debug("journal snapshot of %s ignored: %s", journal, exc)
        return None
    return records, offset, blob


def write(storage: JournalStorage) -> bool:
    """Write the snapshot of ``storage`` (a journal storage over :class:`SnapshotJournal`)
    beside its journal, covering what it has replayed. ``False`` when it cannot."""
    backend = storage._backend
    journal = Path(backend._file_path)
    with storage._thread_lock:
        records = storage._replay_result.log_number_read
        offset = backend._log_number_offset.get(records)
        blob = pickle.dumps(storage._replay_result, protocol=pickle.HIGHEST_PROTOCOL)
    if not records or offset is None:
        return False
    try:
        with open(journal, "rb") as handle:
            digests = _digests(handle, offset)
        header = json.dumps({"records": records, "offset": offset, "sha256": digests})
        target = snapshot_path(journal)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(MAGIC + header.encode() + b"\n" + blob)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:  # a read-only folder, a full disk: the next opening replays all
        log.debug("journal snapshot of %s not written: %s", journal, exc)
        return False
    return True


class SnapshotJournal(JournalFileBackend, BaseJournalSnapshot):
    """Optuna's journal file whose opening starts from the snapshot beside it (if it fits)."""

    snapshot_records = 0  # the records of the snapshot this opening started from (0: none)
    snapshots = True  # False: a full replay, no snapshot (benchmarks/scale.py's "before")

    def load_snapshot(self) -> bytes | None:
        found = read(Path(self._file_path)) if self.snapshots else None
        if found is None:
            return None
        records, offset, blob = found
        self._log_number_offset[records] = offset  # read_logs seeks there
        self.snapshot_records = records
        return blob  # Optuna unpickles it: _Unpickler has shown it holds only records

    def save_snapshot(self, snapshot: bytes) -> None:
        """Optuna's own trigger (every 100th study created): :func:`refresh` writes ours."""


def refresh(storage: Any) -> None:
    """After opening: a new snapshot when this replay went :data:`EVERY_RECORDS` past it."""
    backend = getattr(storage, "_backend", None)
    if not isinstance(backend, SnapshotJournal) or not backend.snapshots:
        return
    if storage._replay_result.log_number_read - backend.snapshot_records >= EVERY_RECORDS:
        write(storage)
