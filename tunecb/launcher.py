"""The launcher: open the study, run an executor until the budget is spent, apply
``--keep-checkpoints``, and sum up.

The library side of ``tunecb search``: it reports what happens through ``on_event`` (the
typed events of :mod:`tunecb.execution.events`; the CLI prints them) and raises
:class:`TunecbError` for problems the user must fix. Every execution mode goes through the
same path; only the executor differs.

Example::

    loaded = load_study_file("studies/digits.py")
    settings = resolve(loaded.study.settings, {}, default_name=loaded.default_name)
    summary = run_search(loaded, settings)
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import optuna

from tunecb.errors import SearchFailed, StorageError, TunecbError, first_line
from tunecb.execution._base import STOP_BUDGET, Executor, Job, Limits
from tunecb.execution.events import SearchEnded, SearchStarted, TrialFinished
from tunecb.oracle import budget, retention
from tunecb.oracle.attrs import BEST_EPOCH, CHECKPOINT
from tunecb.oracle.opening import open_study
from tunecb.results import StudyDir
from tunecb.storage.failures import is_storage_failure, storage_reason
from tunecb.storage.urls import open_storage, redact, study_storage
from tunecb.study.declaration import LoadedStudy
from tunecb.study.settings import Settings
from tunecb.wording import plural

log = logging.getLogger("tunecb")

FAIL_FAST = 5  # the search stops when its first this-many trials all fail

Listener = Callable[[object], None]


def run_search(
    loaded: LoadedStudy,
    settings: Settings,
    on_event: Listener | None = None,
    executor: Executor | None = None,
    overrides: dict[str, Any] | None = None,
) -> SearchEnded:
    """Run the search ``settings`` describe; see the module docstring.

    Without ``executor`` the trials run in this process; ``overrides`` are the CLI flags,
    which each worker process applies to the study file again. A storage that fails
    mid-search (a database server that went away) ends it with a one-line
    :class:`StorageError` (exit code 1).
    """
    with _storage_failures(settings):
        emit = on_event or (lambda event: None)
        from tunecb.training import backends

        # Before anything imports Keras here or in a worker: Keras reads it once.
        backend = backends.chosen(settings.backend)
        backends.select(backend)
        if settings.tensorboard:
            from tunecb.training import tensorboard

            tensorboard.require(backend)  # before anything is written or trained
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

        trials = study.get_trials(deepcopy=False)
        left = budget.left(trials, settings.n_trials)
        executor = _sized(executor, left, notes, loaded, settings, study_dir)
        blob = loaded.portable() if loaded.in_code and executor.mode != "inline" else None
        best = _best(study)
        emit(SearchStarted(
            name=settings.name, storage=redact(settings.storage) if settings.storage else str(
                study_dir.root / "optuna.journal"), study_dir=str(study_dir.root), created=created,
            done=budget.finished(trials), best_value=best[0], best_number=best[1],
            n_trials=settings.n_trials, monitor=settings.monitor, direction=settings.direction,
            epochs=settings.epochs, mode=executor.mode, workers=executor.workers, notes=notes,
            timeout=settings.timeout,
        ))  # fmt: skip

        ran: Counter[str] = Counter()

        def relay(event: object) -> None:  # every executor's events pass here
            if isinstance(event, TrialFinished):
                ran[event.outcome.tally] += 1  # its state, or INFEASIBLE
                best = _best(study)
                done = budget.finished(study.get_trials(deepcopy=False))
                event = dataclasses.replace(
                    event, best_value=best[0], best_number=best[1], done=done,
                    n_trials=settings.n_trials,
                )  # fmt: skip
                emit(event)
                check_fail_fast(ran, event, study_dir)
            else:
                emit(event)

        stopped_by = STOP_BUDGET
        if budget.work_left(trials, settings.n_trials, None):
            job = Job(
                study_path=str(loaded.path), overrides=dict(overrides or {}),
                limits=Limits(
                    n_trials=settings.n_trials,
                    deadline=None if settings.timeout is None else started_wall + settings.timeout,
                ),
                epochs=settings.epochs, debug=log.isEnabledFor(logging.DEBUG), backend=backend,
                study_blob=blob,
            )  # fmt: skip
            stopped_by = executor.run(study, job, relay)
        keep = settings.keep_checkpoints
        retention.enforce(study, study_dir, keep)  # the last trials; a smaller K than before
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


def _sized(
    executor: Executor | None, left: int | None, notes: list[str], loaded: LoadedStudy,
    settings: Settings, study_dir: StudyDir,
) -> Executor:  # fmt: skip
    """The executor to run: ``None`` is this process; ``--jobs auto`` (a process executor
    with no ``jobs``) becomes one worker per core, or this process where that does not pay;
    ``--jobs N`` is capped at the trials left and (on this machine) the cores."""
    from tunecb.execution.inline import InlineExecutor

    jobs = getattr(executor, "jobs", 0)
    if executor is not None and executor.mode == "processes" and jobs is None:
        from tunecb.execution.processes import auto_jobs

        jobs, why = auto_jobs(left, settings.storage)
        if jobs >= 2 and loaded.in_code:
            try:
                loaded.portable()
            except TunecbError as exc:
                jobs, why = 1, f"trials run one at a time in this process: {exc}"
        if why and left != 0:
            notes.append(f"--jobs auto: {why}")
        if jobs < 2:
            executor = None
        else:
            return dataclasses.replace(executor, jobs=jobs)
    if executor is None:
        return InlineExecutor(loaded, settings, study_dir)
    if not jobs:
        return executor
    limit, why = jobs, ""
    if executor.mode == "processes":
        from tunecb.execution.processes import cores

        room = max(cores(), len(getattr(executor, "gpus", ()) or ()))
        if room < limit:
            limit, why = room, f"this machine has {room} cores"
    if left is not None and 0 < left < limit:
        limit, why = left, f"{plural(left, 'trial')} left to run"
    if limit == jobs:
        return executor
    notes.append(f"--jobs {jobs} capped to {limit}: {why}")
    return dataclasses.replace(executor, jobs=limit)


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
    checkpoint = best.user_attrs.get(CHECKPOINT)
    return {
        "number": best.number,
        "value": best.value,
        "best_epoch": best.user_attrs.get(BEST_EPOCH),
        "params": best.params,
        "checkpoint": str(study_dir.root / checkpoint) if checkpoint else None,
    }
