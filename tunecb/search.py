"""Create or continue a study, load the data once, and run trials until the budget is spent.

The library side of ``tunecb search``: it reports what happens through ``on_event``
(the CLI prints) and raises :class:`TunecbError` for problems the user must fix.

Example::

    loaded = load_study_file("studies/digits.py")
    settings = resolve(loaded.study.settings, {}, default_name=loaded.default_name)
    summary = run_search(loaded, settings)
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna

from tunecb import budget, retention, tblogs
from tunecb.config import Settings
from tunecb.data import Data
from tunecb.errors import (
    ConfigError,
    SearchFailed,
    StorageError,
    StudyFileError,
    TunecbError,
    first_line,
)
from tunecb.opening import open_study
from tunecb.results import StudyDir
from tunecb.storage import open_storage, redact, redact_text, study_storage
from tunecb.study import LoadedStudy
from tunecb.worker import STOP_BUDGET, Limits, run_trials

if TYPE_CHECKING:
    from tunecb.pool import Execution

log = logging.getLogger("tunecb")

FAIL_FAST = 5  # the search stops when its first this-many trials all fail


@dataclass
class Start:
    """Sent once before the first trial."""

    name: str
    storage: str
    study_dir: str
    created: bool
    done: int
    best_value: float | None
    best_number: int | None
    n_trials: int | None
    monitor: str
    direction: str
    notes: list[str] = field(default_factory=list)
    timeout: float | None = None


@dataclass
class TrialStart:
    """Sent when a trial starts (with ``--dask``, when the launcher sees it running)."""

    number: int
    worker: int | str | None  # the worker slot with --jobs; None in this process


@dataclass
class EpochDone:
    """Sent after each epoch of a running trial (the monitored value ``None`` when not
    finite); with ``--dask``, when the launcher sees the trial's reported epochs."""

    number: int
    epoch: int
    epochs: int
    value: float | None
    worker: int | str | None


@dataclass
class TrialDone:
    """Sent after each trial: its outcome and the study's best so far."""

    outcome: Any  # tunecb.trial.TrialOutcome
    best_value: float | None
    best_number: int | None
    epochs: int
    done: int
    n_trials: int | None


@dataclass
class Summary:
    """The end of a search."""

    name: str
    study_dir: str
    elapsed_s: float
    ran: dict[str, int]
    done: int
    stopped_by: str
    best: dict[str, Any] | None
    monitor: str
    direction: str
    checkpoints: int = 0  # best.keras files in the results folder at the end
    checkpoint_bytes: int = 0  # their total size
    checkpoints_removed: int = 0  # by --keep-checkpoints during this run (any process)
    keep_checkpoints: int | None = None


Listener = Callable[[object], None]


def run_search(
    loaded: LoadedStudy,
    settings: Settings,
    on_event: Listener | None = None,
    execution: Execution | None = None,
    overrides: dict[str, Any] | None = None,
) -> Summary:
    """Run the search ``settings`` describe; see the module docstring.

    Without ``execution`` the trials run in this process; with it, in
    ``execution.jobs`` supervised worker processes (``overrides``: the CLI flags, which
    each worker applies to the study file again). A storage that fails mid-search (a
    database server that went away) ends it with a one-line :class:`StorageError`.
    """
    with _storage_failures(settings):
        emit = on_event or (lambda event: None)
        if settings.tensorboard:
            tblogs.require()  # before anything is written or trained
        started = time.perf_counter()
        started_wall = time.time()
        study_dir = StudyDir(settings.results / settings.name)
        # A storage URL is checked before anything is written; the embedded one lives in study_dir.
        storage = None
        if settings.storage:
            storage = study_storage(settings.storage, study_dir.root, settings.heartbeat)
        study_dir.prepare()
        storage = storage or open_storage(None, study_dir.root)
        study, created, notes = open_study(loaded, settings, study_dir, storage)

        done = budget.finished(study.get_trials(deepcopy=False))
        best = _best(study)
        emit(Start(
            name=settings.name, storage=redact(settings.storage) if settings.storage else str(
                study_dir.root / "optuna.journal"), study_dir=str(study_dir.root), created=created,
            done=done, best_value=best[0], best_number=best[1], n_trials=settings.n_trials,
            monitor=settings.monitor, direction=settings.direction, notes=notes,
            timeout=settings.timeout,
        ))  # fmt: skip

        def progress(number: int, epoch: int, value: float | None, worker: Any = None) -> None:
            if epoch == 0:
                emit(TrialStart(number, worker))
            else:
                emit(EpochDone(number, epoch, settings.epochs, value, worker))

        ran: Counter[str] = Counter()

        def on_trial(outcome: Any) -> None:  # a trial finished, here or in a worker
            ran[outcome.state] += 1
            best = _best(study)
            done = budget.finished(study.get_trials(deepcopy=False))
            emit(TrialDone(outcome, best[0], best[1], settings.epochs, done, settings.n_trials))
            check_fail_fast(ran, outcome, study_dir)

        stopped_by = STOP_BUDGET
        limits = Limits(
            n_trials=settings.n_trials,
            deadline=None if settings.timeout is None else started_wall + settings.timeout,
        )
        work_left = budget.may_ask(study.get_trials(deepcopy=False), settings.n_trials)
        if execution is not None and work_left:
            from tunecb.pool import WorkerSpec, run_pool

            def make_spec(slot: int, generation: int, slot_limits: Limits) -> WorkerSpec:
                return WorkerSpec(
                    study_path=str(loaded.path), overrides=dict(overrides or {}), slot=slot,
                    generation=generation, env=execution.worker_env(slot),
                    threads=execution.threads(), limits=slot_limits,
                    debug=log.isEnabledFor(logging.DEBUG),
                )  # fmt: skip

            pool_limits = Limits(
                n_trials=limits.n_trials, deadline=limits.deadline,
                max_trials=execution.worker_trials, max_rss_mb=execution.worker_memory_mb,
            )  # fmt: skip
            if execution.dask:
                from tunecb.cluster import run_dask

                result = run_dask(
                    execution.dask, study, execution.jobs, make_spec, pool_limits, on_trial,
                    on_progress=progress,
                )  # fmt: skip
            else:
                result = run_pool(study, execution, make_spec, pool_limits, on_trial, progress)
            stopped_by = result.stopped_by
        elif work_left:
            data = load_data(loaded, settings)
            from tunecb.trial import TrialRunner  # imports Keras: only when training

            runner = TrialRunner(loaded, settings, study_dir, data, on_progress=progress)

            stopped_by = run_trials(
                study, runner, limits, on_trial,
                after_tell=retention.keeper(study_dir, settings.keep_checkpoints),
            )  # fmt: skip
        keep = settings.keep_checkpoints
        retention.enforce(study, study_dir, keep)  # the last trials; a smaller K than before
        removed = retention.removed_since(study_dir, started_wall) if keep is not None else []
        files, size = study_dir.checkpoint_usage()
        done = budget.finished(study.get_trials(deepcopy=False))
        best_trial = _best_record(study, study_dir)
        return Summary(
            name=settings.name, study_dir=str(study_dir.root),
            elapsed_s=time.perf_counter() - started, ran=dict(ran), done=done,
            stopped_by=stopped_by, best=best_trial, monitor=settings.monitor,
            direction=settings.direction, checkpoints=files, checkpoint_bytes=size,
            checkpoints_removed=len(removed), keep_checkpoints=keep,
        )  # fmt: skip


@contextlib.contextmanager
def _storage_failures(settings: Settings) -> Iterator[None]:
    """Turn a storage that fails mid-search into one line naming it (exit code 1)."""
    try:
        yield
    except TunecbError:
        raise
    except Exception as exc:
        if not _is_storage_failure(exc):
            raise
        shown = redact(settings.storage) if settings.storage else "the journal file"
        error = StorageError(
            f"storage {shown!r} failed during the search: {storage_reason(exc)}; "
            "finished trials and checkpoints are kept: run the same command again when it is back"
        )
        error.exit_code = 1
        raise error from exc


def storage_reason(exc: BaseException) -> str:
    """The first line of the innermost database error behind ``exc`` (Optuna wraps it in a
    generic "exception during the commit"), password redacted."""
    inner: BaseException = exc
    seen = set()
    while id(inner) not in seen:
        seen.add(id(inner))
        nxt = inner.__cause__ or inner.__context__
        if nxt is None or not _is_storage_failure(nxt):
            break
        inner = nxt
    text = getattr(inner, "orig", None) or inner
    return first_line(redact_text(f"{type(text).__name__}: {text}"))


def _is_storage_failure(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module.startswith(("sqlalchemy", "psycopg", "pymysql")) or isinstance(
        exc, optuna.exceptions.StorageInternalError
    )


def check_fail_fast(ran: Counter[str], outcome: Any, study_dir: StudyDir) -> None:
    """Stop the search when the first ``FAIL_FAST`` trials of this run all failed."""
    if ran["FAIL"] == FAIL_FAST == sum(ran.values()):
        raise SearchFailed(
            f"the first {FAIL_FAST} trials all failed; the last one "
            f"(trial {outcome.number}) with: {first_line(outcome.error)}. "
            f"See {study_dir.trial_json(outcome.number)}"
        )


def load_data(loaded: LoadedStudy, settings: Settings) -> Data:
    """Call the study's data function once and check what it returned."""
    fn = loaded.study.data_fn
    where = f"the data function {getattr(fn, '__name__', 'data')}() in {loaded.path}"
    try:
        value = fn()
    except Exception as exc:
        raise StudyFileError(f"{where} raised {type(exc).__name__}: {exc}") from exc
    data = Data.from_return(value, where)
    if (
        settings.monitor.startswith("val_")
        and not data.has_validation
        and not settings.fit_kwargs.get("validation_split")
    ):
        raise ConfigError(
            f"monitor {settings.monitor!r} needs validation data, but {where} returned "
            "None for it; return (train, validation) or monitor a training metric"
        )
    return data


def _best(study: optuna.Study) -> tuple[float | None, int | None]:
    try:
        best = study.best_trial
    except ValueError:
        return None, None
    return best.value, best.number


def _best_record(study: optuna.Study, study_dir: StudyDir) -> dict[str, Any] | None:
    try:
        best = study.best_trial
    except ValueError:
        return None
    checkpoint = best.user_attrs.get("checkpoint")
    return {
        "number": best.number,
        "value": best.value,
        "best_epoch": best.user_attrs.get("best_epoch"),
        "params": best.params,
        "checkpoint": str(study_dir.root / checkpoint) if checkpoint else None,
    }
