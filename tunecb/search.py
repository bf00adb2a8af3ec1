"""Create or continue a study, load the data once, and run trials until the budget is spent.

The library side of ``tunecb search``: it reports what happens through ``on_event``
(the CLI prints) and raises :class:`TunecbError` for problems the user must fix.

Example::

    loaded = load_study_file("studies/digits.py")
    settings = resolve(loaded.study.settings, {}, default_name=loaded.default_name)
    summary = run_search(loaded, settings)
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from tunecb import __version__, budget
from tunecb.config import Settings
from tunecb.data import Data
from tunecb.errors import ConfigError, SearchFailed, StorageError, StudyFileError, TunecbError
from tunecb.results import StudyDir, read_json, write_json
from tunecb.storage import open_storage, redact, redact_text, study_storage
from tunecb.strategies import make_pruner, make_sampler
from tunecb.study import LoadedStudy
from tunecb.worker import STOP_BUDGET, Limits, retry, run_trials, tell_failed

if TYPE_CHECKING:
    from tunecb.pool import Execution

log = logging.getLogger("tunecb")

FAIL_FAST = 5  # the search stops when its first this-many trials all fail
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


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
    try:
        return _run_search(loaded, settings, on_event, execution, overrides)
    except TunecbError:
        raise
    except Exception as exc:
        if not _is_storage_failure(exc):
            raise
        shown = redact(settings.storage) if settings.storage else "the journal file"
        error = StorageError(
            f"storage {shown!r} failed during the search: {first_line(redact_text(str(exc)))}; "
            "finished trials and checkpoints are kept: run the same command again when it is back"
        )
        error.exit_code = 1
        raise error from exc


def _is_storage_failure(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module.startswith(("sqlalchemy", "psycopg", "pymysql")) or isinstance(
        exc, optuna.exceptions.StorageInternalError
    )


def _run_search(
    loaded: LoadedStudy,
    settings: Settings,
    on_event: Listener | None = None,
    execution: Execution | None = None,
    overrides: dict[str, Any] | None = None,
) -> Summary:
    emit = on_event or (lambda event: None)
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
    ))  # fmt: skip

    ran: Counter[str] = Counter()
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

        def on_trial(outcome: Any) -> None:
            ran[outcome.state] += 1
            best = _best(study)
            done = budget.finished(study.get_trials(deepcopy=False))
            emit(TrialDone(outcome, best[0], best[1], settings.epochs, done, settings.n_trials))
            check_fail_fast(ran, outcome, study_dir)

        pool_limits = Limits(
            n_trials=limits.n_trials, deadline=limits.deadline,
            max_trials=execution.worker_trials, max_rss_mb=execution.worker_memory_mb,
        )  # fmt: skip
        if execution.dask:
            from tunecb.cluster import run_dask

            result = run_dask(
                execution.dask, study, execution.jobs, make_spec, pool_limits, on_trial
            )
        else:
            result = run_pool(study, execution, make_spec, pool_limits, on_trial)
        stopped_by = result.stopped_by
    elif work_left:
        data = load_data(loaded, settings)
        from tunecb.trial import TrialRunner  # imports Keras: only when training

        runner = TrialRunner(loaded, settings, study_dir, data)

        def on_outcome(outcome: Any) -> None:
            ran[outcome.state] += 1
            best = _best(study)
            done = budget.finished(study.get_trials(deepcopy=False))
            emit(TrialDone(outcome, best[0], best[1], settings.epochs, done, settings.n_trials))
            check_fail_fast(ran, outcome, study_dir)

        stopped_by = run_trials(study, runner, limits, on_outcome)
    done = budget.finished(study.get_trials(deepcopy=False))
    best_trial = _best_record(study, study_dir)
    return Summary(
        name=settings.name, study_dir=str(study_dir.root),
        elapsed_s=time.perf_counter() - started, ran=dict(ran), done=done,
        stopped_by=stopped_by, best=best_trial, monitor=settings.monitor,
        direction=settings.direction,
    )  # fmt: skip


def check_fail_fast(ran: Counter[str], outcome: Any, study_dir: StudyDir) -> None:
    """Stop the search when the first ``FAIL_FAST`` trials of this run all failed."""
    if ran["FAIL"] == FAIL_FAST == sum(ran.values()):
        raise SearchFailed(
            f"the first {FAIL_FAST} trials all failed; the last one "
            f"(trial {outcome.number}) with: {first_line(outcome.error)}. "
            f"See {study_dir.trial_json(outcome.number)}"
        )


def open_study(
    loaded: LoadedStudy,
    settings: Settings,
    study_dir: StudyDir,
    storage: optuna.storages.BaseStorage,
) -> tuple[optuna.Study, bool, list[str]]:
    """Create the study, or load it and check it still matches the study file."""
    shown = redact(settings.storage) if settings.storage else str(study_dir.root)
    try:
        existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    except Exception as exc:
        raise StorageError(
            f"storage {shown!r}: cannot list studies: {first_line(redact_text(str(exc)))}"
        ) from exc
    pruner = make_pruner(settings.pruner, settings.epochs)
    notes: list[str] = []
    if settings.name in existing:
        summary = existing[settings.name]
        # A sampler restarted from the same seed would propose the first run's trials again:
        # continue from a seed that depends on how far the study got (still reproducible).
        seed = None if settings.seed is None else settings.seed + summary.n_trials
        sampler = make_sampler(settings.sampler, seed)
        old_direction = summary.direction.name.lower()
        old_monitor = summary.user_attrs.get("monitor", settings.monitor)
        study = optuna.load_study(
            study_name=settings.name, storage=storage, sampler=sampler, pruner=pruner
        )
        if (
            old_monitor != settings.monitor
            and old_direction == settings.direction
            and not study.get_trials(deepcopy=False, states=FINISHED[:2])
        ):
            # Nothing finished with the old metric (a typo caught at the first epoch).
            study.set_user_attr("monitor", settings.monitor)
            _write_study_json(study_dir, settings, loaded)
            notes.append(f"monitor changed from {old_monitor} to {settings.monitor}")
            old_monitor = settings.monitor
        if old_direction != settings.direction or old_monitor != settings.monitor:
            raise ConfigError(
                f"study {settings.name!r} in {shown!r} optimises {old_monitor} ({old_direction}); "
                f"the study now says {settings.monitor} ({settings.direction}). "
                "Use --study-name NEW for a new study, or restore the old monitor"
            )
        rerun = recover_dead_trials(study)
        if rerun:
            notes.append(
                f"trials {rerun} were left running by a process on this machine that died; "
                "they run again, resuming from their last backup"
            )
        old_sha = summary.user_attrs.get("study_sha256")
        if old_sha and old_sha != loaded.sha256:
            notes.append(f"the study file {loaded.path} changed since the study began")
        return study, False, notes
    if study_dir.has_trials():
        raise ConfigError(
            f"{study_dir.trials} holds trials of an earlier run, but storage {shown!r} has no "
            f"study {settings.name!r}; delete that folder, or pass another --study-name or "
            "--results"
        )
    sampler = make_sampler(settings.sampler, settings.seed)
    study = optuna.create_study(
        storage=storage, study_name=settings.name, direction=settings.direction,
        sampler=sampler, pruner=pruner,
    )  # fmt: skip
    for key, value in {
        "monitor": settings.monitor,
        "epochs": settings.epochs,
        "study_sha256": loaded.sha256,
        "study_file": str(loaded.path),
        "tunecb_version": __version__,
    }.items():
        study.set_user_attr(key, value)
    _write_study_json(study_dir, settings, loaded)
    return study, True, notes


def recover_dead_trials(study: optuna.Study) -> list[int]:
    """Mark FAIL (``worker_died``) and queue again the RUNNING trials whose process, on this
    machine, no longer exists (a search killed with SIGKILL, a crash, a reboot). Trials of
    other machines are left to their own processes (or to the RDB heartbeat)."""
    host = socket.gethostname()
    rerun = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker_host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
        if worker_host != host or not pid.isdigit() or _alive(int(pid)):
            continue
        tell_failed(study, trial.number, "worker_died", f"its process {pid} is gone")
        retry(study, study._storage.get_trial(trial._trial_id))
        rerun.append(trial.number)
    return rerun


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_study_json(study_dir: StudyDir, settings: Settings, loaded: LoadedStudy) -> None:
    write_json(
        study_dir.study_json,
        {
            "name": settings.name,
            "monitor": settings.monitor,
            "direction": settings.direction,
            "epochs": settings.epochs,
            "storage": redact(settings.storage) if settings.storage else None,
            "study_file": str(loaded.path),
            "tunecb_version": __version__,
        },
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


def stored_settings(study_dir: StudyDir) -> dict[str, Any]:
    """What ``study.json`` says about the study (empty when tunecb did not create it)."""
    return read_json(study_dir.study_json) or {}


def first_line(text: str | None, limit: int = 300) -> str:
    """The first line of ``text``, cut to ``limit`` characters (for one-line messages)."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


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
