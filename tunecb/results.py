"""The results folder: the one module that knows where files go, and writes them atomically.

::

    results/<study>/
        optuna.journal            the embedded Optuna storage (unless --storage is given)
        study.json                what the report needs without the study file
        trials/<number>/best.keras    the best epoch's model, self-contained
        trials/<number>/history.csv   one row per epoch, with the learning rate
        trials/<number>/trial.json    the trial's metadata
        trials/<number>/final.keras   `tunecb retrain`: the trial refit on train + validation
        trials/<number>/final.json    how it was retrained, and its test metrics
        trials/<number>/test.json     `tunecb evaluate`: the best checkpoint's test metrics
        trials/<number>/rerun.json    `tunecb rerun`: the value the trial gave again
        tensorboard/trial_<number>/   TensorBoard logs with an HParams session (--tensorboard)
        backups/<number>/state.json   a running trial's last backup: epoch, callbacks' states
        backups/<number>/checkpoint.json   what its best checkpoint holds (every new best)
        backups/<number>/weights-<epochs>.keras   the model and optimizer at that backup

>>> d = StudyDir(Path("results/digits"))
>>> d.checkpoint(7).as_posix(), d.relative(d.checkpoint(7))
('results/digits/trials/7/best.keras', 'trials/7/best.keras')
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunecb.errors import DiskFull, ResultsError

CHECKPOINT = "best.keras"
HISTORY = "history.csv"
TRIAL_JSON = "trial.json"
STUDY_JSON = "study.json"
FINAL_MODEL = "final.keras"
FINAL_JSON = "final.json"
TEST_JSON = "test.json"
RERUN_JSON = "rerun.json"
BACKUPS = "backups"
BACKUP_STATE = "state.json"
BACKUP_CHECKPOINT = "checkpoint.json"
BACKUP_WEIGHTS = "weights-{epochs}.keras"
CHECKPOINT_REMOVED = "checkpoint_removed"  # trial.json key: --keep-checkpoints removed it


@dataclass(frozen=True)
class StudyDir:
    """Paths of one study's results folder."""

    root: Path

    @property
    def trials(self) -> Path:
        return self.root / "trials"

    @property
    def study_json(self) -> Path:
        return self.root / STUDY_JSON

    @property
    def tensorboard(self) -> Path:
        """The ``--logdir`` of ``tensorboard``: one run folder per trial."""
        return self.root / "tensorboard"

    def tensorboard_run(self, number: int) -> Path:
        """Trial ``number``'s TensorBoard run (its HParams session; Keras' ``train`` and
        ``validation`` runs below it); never outside the folder (:meth:`guard`)."""
        return self.guard(self.tensorboard / f"trial_{number}")

    def backup_dir(self, number: int) -> Path:
        """Where a running trial (by its first attempt's number) keeps its backup (removed
        whole when the trial ends): never outside the folder (:meth:`guard`)."""
        return self.guard(self.root / BACKUPS / str(number))

    def backup(self, number: int) -> BackupDir:
        """The files of the backup of trial ``number`` (its first attempt's number)."""
        return BackupDir(self.backup_dir(number))

    def trial_dir(self, number: int) -> Path:
        return self.trials / str(number)

    def checkpoint(self, number: int) -> Path:
        return self.trial_dir(number) / CHECKPOINT

    def history(self, number: int) -> Path:
        return self.trial_dir(number) / HISTORY

    def trial_json(self, number: int) -> Path:
        return self.trial_dir(number) / TRIAL_JSON

    def final_model(self, number: int) -> Path:
        return self.trial_dir(number) / FINAL_MODEL

    def final_json(self, number: int) -> Path:
        return self.trial_dir(number) / FINAL_JSON

    def test_json(self, number: int) -> Path:
        return self.trial_dir(number) / TEST_JSON

    def rerun_json(self, number: int) -> Path:
        return self.trial_dir(number) / RERUN_JSON

    def guard(self, path: Path) -> Path:
        """``path``, once it is sure that writing or deleting there stays inside the results
        folder; else :class:`ResultsError` naming the link on the way and where it points.

        Every write, replace and delete of tunecb in the folder goes through this. A link
        that stays inside the folder is followed (a trial folder moved within it, say); the
        folder itself may be reached through links (``results`` on a bigger disk).

        >>> d = StudyDir(Path(tempfile.mkdtemp()))
        >>> d.guard(d.trial_dir(3)) == d.trial_dir(3)
        True
        """
        leaves = self.leaves(path)
        if leaves is None:
            return path
        raise ResultsError(
            f"{leaves}; tunecb neither writes nor deletes through it: replace the link by a "
            "folder or file of its own (or move what it points to into the results folder)"
        )

    def leaves(self, path: Path) -> str | None:
        """How ``path`` leads out of the results folder ("X is a symbolic link to Y, outside
        the results folder R"), or ``None`` when it stays inside (links followed)."""
        link = _first_link(self.root, path)
        if link is None and path.is_relative_to(self.root) and ".." not in path.parts:
            return None  # no link on the way (a few lstat calls, the common case)
        if path.resolve().is_relative_to(self.root.resolve()):
            return None
        if link is None:
            shown = f"{path} leads to {path.resolve()}"
        else:
            shown = f"{link} is a symbolic link to {os.path.realpath(link)}"
        return f"{shown}, outside the results folder {self.root}"

    def relative(self, path: Path) -> str:
        """``path`` relative to the study folder, so the folder can move."""
        return path.relative_to(self.root).as_posix()

    def checkpoint_removal(self, number: int) -> dict[str, Any] | None:
        """How ``--keep-checkpoints`` removed trial ``number``'s checkpoint (``at``,
        ``keep_checkpoints``, ``by``), from its ``trial.json``; ``None`` if it did not."""
        data = read_json(self.trial_json(number)) or {}
        mark = data.get(CHECKPOINT_REMOVED)
        return mark if isinstance(mark, dict) else None

    def checkpoint_usage(self) -> tuple[int, int]:
        """``(files, bytes)`` of the trials' best checkpoints on disk.

        >>> StudyDir(Path(tempfile.mkdtemp())).checkpoint_usage()
        (0, 0)
        """
        files = size = 0
        for path in self.trials.glob(f"*/{CHECKPOINT}"):
            with contextlib.suppress(OSError):  # removed meanwhile
                size += path.stat().st_size
                files += 1
        return files, size

    def has_trials(self) -> bool:
        return self.trials.is_dir() and any(self.trials.iterdir())

    def prepare(self) -> None:
        """Create the folder and prove it is writable, or raise :class:`ResultsError`."""
        try:
            self.trials.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".write-test-"):
                pass
        except OSError as exc:
            if no_space(exc):
                raise disk_full(self.root, exc) from exc
            raise ResultsError(
                f"--results: cannot write {str(self.root)!r} ({exc.strerror or exc}); "
                "pass a writable folder with --results DIR"
            ) from exc

    def reset_trial(self, number: int) -> Path:
        """An empty folder for trial ``number`` (files of an earlier attempt removed)."""
        folder = self.guard(self.trial_dir(number))
        with space_for(folder):
            folder.mkdir(parents=True, exist_ok=True)
        for child in folder.iterdir():
            if child.is_file():
                child.unlink()
        return folder


def _first_link(root: Path, path: Path) -> Path | None:
    """The first symbolic link on the way from ``root`` down to ``path`` (``None``: none)."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        parts = path.parts
        root = Path(path.anchor)
    current = str(root)
    for part in parts:
        current = os.path.join(current, part)
        if os.path.islink(current):
            return Path(current)
    return None


@dataclass(frozen=True)
class BackupDir:
    """The files of one running trial's backup folder.

    >>> b = BackupDir(Path("results/digits/backups/3"))
    >>> b.state.name, b.checkpoint_state.name, b.weights(4).name
    ('state.json', 'checkpoint.json', 'weights-4.keras')
    """

    folder: Path

    @property
    def state(self) -> Path:
        """The last backup: epochs done, weights file, the callbacks' states."""
        return self.folder / BACKUP_STATE

    @property
    def checkpoint_state(self) -> Path:
        """What the trial's best checkpoint holds, rewritten at every new best."""
        return self.folder / BACKUP_CHECKPOINT

    def weights(self, epochs: int) -> Path:
        """The model with its optimizer after ``epochs`` epochs."""
        return self.folder / BACKUP_WEIGHTS.format(epochs=epochs)

    def stale_weights(self, keep: Path) -> list[Path]:
        """The weights files of earlier backups (all but ``keep``)."""
        pattern = BACKUP_WEIGHTS.format(epochs="*")
        return [path for path in self.folder.glob(pattern) if path.name != keep.name]


def atomic_write(
    path: Path,
    write: Callable[[Path], None],
    suffix: str = "",
    durable: bool = True,
    needed: Callable[[], int | None] | None = None,
) -> None:
    """Write ``path`` through ``write(tmp)`` on a temporary file in the same folder, then
    fsync and rename it into place: a crash leaves either the old file or the new one.
    ``durable=False`` skips the fsyncs: still whole after a killed process, not after a
    power cut (for files that only speed up a resume).

    A full disk raises :class:`DiskFull` (the temporary file removed, ``path`` as it was),
    saying about how much space the write needed: the largest of ``needed()`` (an
    estimate), the size of the file it replaces, and what was written before the disk filled.

    A device or pipe (``/dev/null``, ``/dev/stdout``, a FIFO) is written through, never
    replaced: renaming over ``/dev/null`` as root would turn it into a regular file.

    >>> atomic_write(Path(tempfile.mkdtemp()) / "a.txt", lambda p: p.write_text("hi"))
    """
    if path.exists() and not path.is_file() and not path.is_dir():
        write(path)
        return
    with space_for(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        if durable:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        written = _size_of(tmp)
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, Exception) and no_space(exc):
            size = max(_call(needed) or 0, _size_of(path) or 0, written or 0) or None
            raise disk_full(path, exc, size) from exc
        raise
    if durable:
        _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str, durable: bool = True) -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), durable=durable)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON atomically; non-finite floats become ``null``."""
    atomic_write_text(path, json.dumps(finite(data), indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or ``None`` when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_history(path: Path) -> list[dict[str, float | int | None]]:
    """The rows of a ``history.csv``, one dict per epoch: ``epoch`` an int, every other
    column a float, ``None`` where a cell is empty or not a number; ``[]`` when the file is
    missing or unreadable.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "history.csv"
    >>> _ = path.write_text("epoch,loss,val_accuracy\\n1,0.5,0.8\\n2,0.25,\\n")
    >>> read_history(path)[1]
    {'epoch': 2, 'loss': 0.25, 'val_accuracy': None}
    """
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    return [{k: _cell(k, v) for k, v in row.items() if k is not None} for row in rows]


def _cell(key: str, text: str | None) -> float | int | None:
    try:
        value = float(text) if text else None
    except (TypeError, ValueError):
        return None
    if key == "epoch" and value is not None and math.isfinite(value):
        return int(value)
    return value


def finite(data: Any) -> Any:
    """``data`` with NaN and infinities replaced by ``None`` (strict JSON has neither)."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [finite(v) for v in data]
    return data


def no_space(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from) says a disk is full: ``ENOSPC``, or
    ``EDQUOT`` (a quota).

    >>> no_space(OSError(errno.ENOSPC, "No space left on device")), no_space(OSError(2, "x"))
    (True, False)
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DiskFull):
            return True
        if isinstance(current, OSError) and current.errno in _NO_SPACE:
            return True
        current = current.__cause__ or current.__context__
    return False


_NO_SPACE = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


def disk_full(path: Path, exc: BaseException, needed: int | None = None) -> DiskFull:
    """The :class:`DiskFull` of a write to ``path`` that failed with ``exc`` (already one:
    itself), with the space left on its filesystem."""
    if isinstance(exc, DiskFull):
        return exc
    free = None
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(folder).free
    return DiskFull(path, needed, free)


@contextlib.contextmanager
def space_for(path: Path, needed: Callable[[], int | None] | None = None) -> Iterator[None]:
    """Turn a full disk while writing ``path`` into :class:`DiskFull`; other errors pass.

    >>> with space_for(Path("x")):
    ...     raise OSError(errno.ENOSPC, "No space left on device")
    Traceback (most recent call last):
    tunecb.errors.DiskFull: no space left on device to write x (...); free some space, ...
    """
    try:
        yield
    except OSError as exc:
        if not no_space(exc):
            raise
        raise disk_full(path, exc, _call(needed)) from exc


def _call(needed: Callable[[], int | None] | None) -> int | None:
    if needed is None:
        return None
    try:
        return needed()
    except Exception:  # an estimate only
        return None


def _size_of(path: Path) -> int | None:
    try:
        return path.stat().st_size if path.is_file() else None
    except OSError:
        return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
