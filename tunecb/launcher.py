"""The launcher: open the study, size and run an executor until the budget is spent, apply
``--keep-checkpoints``, and sum up.

The library side of ``tunecb search`` and ``tunecb.search()``: both front ends call
:func:`launch` (resolve the settings, choose the executor, run, check), each with its own
display of the events (:mod:`tunecb.execution.events`). It raises :class:`TunecbError` for
problems the user must fix. Every execution mode goes through the same path; only the
executor differs.

Example::

    loaded = load_study_file("studies/digits.py")
    summary, settings = launch(loaded, {"n_trials": 4}, WorkerOptions(jobs=0), lambda s: None)
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import optuna

from tunecb.errors import SearchFailed, StorageError, TunecbError, first_line
from tunecb.execution._base import STOP_BUDGET, Executor, Job, Limits
from tunecb.execution.choice import WorkerOptions, choose, where_it_can_be_ended, within_memory
from tunecb.execution.events import SearchEnded, SearchStarted, TrialFinished
from tunecb.oracle import budget, retention
from tunecb.oracle.attrs import BEST_EPOCH, CHECKPOINT, DATA
from tunecb.oracle.front import best_trial, monitor_value
from tunecb.oracle.opening import open_study
from tunecb.results import StudyDir
from tunecb.storage.failures import is_storage_failure, storage_reason
from tunecb.storage.urls import open_storage, redact, study_storage
from tunecb.study.declaration import LoadedStudy
from tunecb.study.settings import Settings, resolve

log = logging.getLogger("tunecb")

FAIL_FAST = 5  # the search stops when its first this-many trials all fail

Listener = Callable[[object], None]


class Display(Protocol):
    """What a front end shows of a search: each event, then (after ``close``) its summary."""

    def __call__(self, event: object) -> None: ...

    def close(self) -> None: ...

    def summary(self, summary: SearchEnded) -> None: ...


def launch(
    loaded: LoadedStudy,
    overrides: dict[str, Any],
    options: WorkerOptions,
    display: Callable[[Settings], Display | None],
) -> tuple[SearchEnded, Settings]:
    """The one entry of both front ends: resolve the settings (the study's, then
    ``overrides``), choose the executor of ``options``, run the search shown by
    ``display(settings)`` (``None``: nothing shown), show its summary, and raise
    :class:`SearchFailed` when every trial of this run failed. Returns the summary and the
    settings it ran with."""
    settings = resolve(
        loaded.study.settings, overrides, default_name=loaded.default_name,
        study_path=None if loaded.in_code else loaded.path,
    )  # fmt: skip
    executor = choose(options)  # a bad --jobs/--dask fails here, before anything is written
    shown = display(settings)
    try:
        summary = run_search(loaded, settings, shown, executor, overrides)
    finally:
        if shown is not None:
            shown.close()
    if shown is not None:
        shown.summary(summary)
    check_some_succeeded(summary)
    return summary, settings


def run_search(
    loaded: LoadedStudy,
    settings: Settings,
    on_event: Listener | None = None,
    executor: Executor | None = None,
    overrides: dict[str, Any] | None = None,
) -> SearchEnded:
    """Run the search ``settings`` describe with ``executor`` (sized here for the trials
    left; default: this process); ``overrides`` are the flags, which each worker process
    applies to the study file again. A storage that fails mid-search (a database server
    that went away) ends it with a one-line :class:`StorageError` (exit code 1)."""
    with _storage_failures(settings):
        emit = on_event or (lambda event: None)
        backend = _prepare_backend(settings)
        connecting = _tracking(settings)  # --mlflow, --wandb: connect in the background
        started, started_wall = time.perf_counter(), time.time()
        try:
            study_dir, study, created, notes = _open(loaded, settings)
            if connecting is not None:
                connecting.opened(study)  # the parent runs open in the background too
            trials = study.get_trials(deepcopy=False)
            if executor is None:
                from tunecb.execution.inline import InlineExecutor

                executor = InlineExecutor()
            auto = getattr(executor, "jobs", 0) is None  # --jobs auto
            left = budget.left(trials, settings.n_trials)
            executor, sizing = executor.sized(left, settings, loaded)
            executor, capped = within_memory(executor, auto, study.user_attrs.get(DATA))
            executor, moved = where_it_can_be_ended(executor, settings, loaded)
            sizing = [n for n in sizing if not (capped and n.startswith("--jobs auto:"))]
            sizing = [*sizing, *capped, *moved]
            job = _job(loaded, settings, overrides, executor, backend, started_wall)
        except BaseException:
            if connecting is not None:
                connecting.cancel()
            raise
        here = getattr(executor, "in_process", False)  # --jobs 0: the trials run here
        if connecting is not None and here and not connecting.failed():
            _import_backend(job.debug)  # TensorFlow's import overlaps the trackers' start
        tracking = connecting and connecting.join(study)  # fails fast, before any trial
        emit(_started(settings, study, study_dir, created, executor, [*notes, *sizing]))
        relay = _Relay(study, settings, study_dir, emit)
        stopped_by = STOP_BUDGET
        try:
            if budget.work_left(trials, settings.n_trials, None):
                stopped_by = executor.run(study, job, relay)
        except BaseException as exc:  # Ctrl-C, a storage gone: the parent run ends too
            if tracking is not None:
                tracking.abort(exc)
                tracking.close()
            raise
        if tracking is not None:
            try:
                for line in tracking.end(study, study_dir, _report_writer(settings)):
                    log.warning(line)
            finally:
                tracking.close()  # W&B's tracker process flushes and stops
        return _ended(study, settings, study_dir, relay.ran, stopped_by, started, started_wall)


def _import_backend(debug: bool) -> None:
    """Import Keras here now, as the trials of this process would (a tracked search:
    while its trackers open their parent runs, which it then waits for)."""
    from tunecb.execution.worker import prepare_backend

    prepare_backend(None, debug)


def _prepare_backend(settings: Settings) -> str:
    """Choose the Keras backend before anything imports Keras here or in a worker (Keras
    reads it once); with ``--tensorboard``, check it can write, before anything runs."""
    from tunecb.training import backends

    backend = backends.chosen(settings.backend)
    backends.select(backend)
    if settings.tensorboard:
        from tunecb.training import tensorboard

        tensorboard.require(backend)  # before anything is written or trained
    return backend


def _open(
    loaded: LoadedStudy, settings: Settings
) -> tuple[StudyDir, optuna.Study, bool, list[str]]:
    """The results folder and the study (created, or continued), and the notes about it.
    A storage URL is checked before anything is written; the embedded one lives in the
    results folder."""
    study_dir = StudyDir(settings.results / settings.name)
    storage = None
    if settings.storage:
        storage = study_storage(
            settings.storage, study_dir.root, settings.heartbeat, settings.reconnect
        )
    study_dir.prepare()
    storage = storage or open_storage(None, study_dir.root)
    study, created, notes = open_study(loaded, settings, study_dir, storage)
    return study_dir, study, created, notes


def _tracking(settings: Settings) -> Any:
    """The trackers connecting in the background (``None`` without ``--mlflow``, ``--wandb``)."""
    if not (settings.mlflow or settings.wandb):
        return None
    from tunecb.tracking.search import SearchTracking

    return SearchTracking.connect(settings, settings.name)


def _report_writer(settings: Settings) -> Callable[[Any], None]:
    """Writes the study's HTML report to a path (for the tracker's parent run): its
    summary and table, without plots (no matplotlib: ``tunecb sync`` adds them)."""

    def write(path: Any) -> None:
        from tunecb.reporting.data.records import study_records
        from tunecb.reporting.html.page import html_report
        from tunecb.reporting.plots.study import SEARCH_LEAVES_OUT, render_plots

        records = study_records(
            settings.results / settings.name, storage=settings.storage, study_name=settings.name
        )
        plots = render_plots(records, leave_out=SEARCH_LEAVES_OUT)
        path.write_text(html_report(records, plots), encoding="utf-8")

    return write


def _started(
    settings: Settings, study: optuna.Study, study_dir: StudyDir, created: bool,
    executor: Executor, notes: list[str],
) -> SearchStarted:  # fmt: skip
    best = _best(study)
    shown = redact(settings.storage) if settings.storage else str(study_dir.root / "optuna.journal")
    return SearchStarted(
        name=settings.name, storage=shown, study_dir=str(study_dir.root), created=created,
        done=budget.finished(study.get_trials(deepcopy=False)), best_value=best[0],
        best_number=best[1], n_trials=settings.n_trials, monitor=settings.monitor,
        direction=settings.direction, epochs=settings.epochs, mode=executor.mode,
        workers=executor.workers, notes=notes, timeout=settings.timeout,
    )  # fmt: skip


class _Relay:
    """Every executor's events pass here: a finished trial gets the study's numbers (best
    so far, trials done), is counted, and stops the search when the first ones all failed."""

    def __init__(
        self, study: optuna.Study, settings: Settings, study_dir: StudyDir, emit: Listener
    ) -> None:
        self.study, self.settings, self.study_dir, self.emit = study, settings, study_dir, emit
        self.ran: Counter[str] = Counter()

    def __call__(self, event: object) -> None:
        if not isinstance(event, TrialFinished):
            self.emit(event)
            return
        self.ran[event.outcome.tally] += 1  # its state, or INFEASIBLE
        best = _best(self.study)
        done = budget.finished(self.study.get_trials(deepcopy=False))
        event = dataclasses.replace(
            event, best_value=best[0], best_number=best[1], done=done,
            n_trials=self.settings.n_trials,
        )  # fmt: skip
        self.emit(event)
        check_fail_fast(self.ran, event, self.study_dir)


def _job(
    loaded: LoadedStudy, settings: Settings, overrides: dict[str, Any] | None,
    executor: Executor, backend: str, started_wall: float,
) -> Job:  # fmt: skip
    """What the executor is given; a study declared in code travels by value to workers."""
    deadline = None if settings.timeout is None else started_wall + settings.timeout
    return Job(
        study_path=str(loaded.path), overrides=dict(overrides or {}),
        limits=Limits(n_trials=settings.n_trials, deadline=deadline),
        epochs=settings.epochs, debug=log.isEnabledFor(logging.DEBUG), backend=backend,
        study_blob=loaded.portable() if loaded.in_code and not executor.in_process else None,
        loaded=loaded, settings=settings,
    )  # fmt: skip


def _ended(
    study: optuna.Study, settings: Settings, study_dir: StudyDir, ran: Counter[str],
    stopped_by: str, started: float, started_wall: float,
) -> SearchEnded:  # fmt: skip
    """``--keep-checkpoints`` applied once more (the last trials; a smaller K than before),
    and the summary."""
    keep = settings.keep_checkpoints
    retention.enforce(study, study_dir, keep)
    removed = retention.removed_since(study_dir, started_wall) if keep is not None else []
    files, size = study_dir.checkpoint_usage()
    return SearchEnded(
        name=settings.name, study_dir=str(study_dir.root),
        elapsed_s=time.perf_counter() - started, ran=dict(ran),
        done=budget.finished(study.get_trials(deepcopy=False)), stopped_by=stopped_by,
        best=_best_record(study, study_dir), monitor=settings.monitor,
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
        if not is_storage_failure(exc):
            raise
        shown = redact(settings.storage) if settings.storage else "the journal file"
        error = StorageError(
            f"storage {shown!r} failed during the search: {storage_reason(exc)}; "
            "finished trials and checkpoints are kept: run the same command again when it is back"
        )
        error.exit_code = 1
        raise error from exc


def check_fail_fast(ran: Counter[str], event: TrialFinished, study_dir: StudyDir) -> None:
    """Stop the search when the first ``FAIL_FAST`` trials of this run all failed
    (infeasible ones, which never trained, are not counted)."""
    if ran["FAIL"] == FAIL_FAST == sum(ran.values()) - ran["INFEASIBLE"]:
        outcome = event.outcome
        raise SearchFailed(
            f"the first {FAIL_FAST} trials all failed; the last one "
            f"(trial {outcome.number}) with: {first_line(outcome.error)}. "
            f"See {study_dir.trial_json(outcome.number)}"
        )


def check_some_succeeded(summary: SearchEnded) -> None:
    """Raise :class:`SearchFailed` (exit code 1) when every trial this run ran failed,
    however few (infeasible ones aside): a search with nothing to show must not look like a
    success."""
    failed = summary.ran.get("FAIL", 0)
    if failed and failed == sum(summary.ran.values()) - summary.ran.get("INFEASIBLE", 0):
        every = "the trial" if failed == 1 else f"all {failed} trials"
        raise SearchFailed(
            f"{every} of this run failed; see the errors above, or "
            f"tunecb report {summary.study_dir}"
        )


def _best(study: optuna.Study) -> tuple[float | None, int | None]:
    best = best_trial(study)  # a multi-objective study's: the best on its monitor
    if best is None:
        return None, None
    return monitor_value(best), best.number


def _best_record(study: optuna.Study, study_dir: StudyDir) -> dict[str, Any] | None:
    best = best_trial(study)
    if best is None:
        return None
    checkpoint = best.user_attrs.get(CHECKPOINT)
    return {
        "number": best.number,
        "value": monitor_value(best),
        "best_epoch": best.user_attrs.get(BEST_EPOCH),
        "params": best.params,
        "checkpoint": str(study_dir.root / checkpoint) if checkpoint else None,
    }
