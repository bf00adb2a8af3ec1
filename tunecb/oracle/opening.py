"""Create the study once (in the launcher), or continue it saying so, checking that it
still matches the study file, and rerun the trials a dead process on this machine left.

Example::

    study, created, notes = open_study(loaded, settings, StudyDir(path), storage)
"""

from __future__ import annotations

from typing import Any

import optuna

from tunecb._version import __version__
from tunecb.errors import ConfigError, StorageError, first_line
from tunecb.oracle import warm
from tunecb.oracle.attempts import constraints_func, recover_dead_trials_judged, unchecked_owners
from tunecb.oracle.attrs import (
    ERROR,
    FINISHED,
    STUDY_EPOCHS,
    STUDY_FILE,
    STUDY_MONITOR,
    STUDY_OBJECTIVES,
    STUDY_SHA,
    STUDY_VERSION,
)
from tunecb.oracle.given import enqueue
from tunecb.oracle.promotions import is_side
from tunecb.oracle.space import recorded
from tunecb.results import StudyDir, write_json
from tunecb.storage.urls import redact, redact_text
from tunecb.study.configurations import read as read_configurations
from tunecb.study.declaration import LoadedStudy
from tunecb.study.objectives import text_of
from tunecb.study.samplers_pruners import make_pruner, make_sampler
from tunecb.study.settings import Settings


def open_study(
    loaded: LoadedStudy,
    settings: Settings,
    study_dir: StudyDir,
    storage: optuna.storages.BaseStorage,
) -> tuple[optuna.Study, bool, list[str]]:
    """Create the study, or load it and check it still matches the study file, and queue
    the configurations given to run first (``enqueue``). Two machines that start one study
    at the same moment both see no study; the one whose create comes second continues the
    other's."""
    enqueued = _near_study(settings.enqueue, "enqueue", settings, loaded)
    configurations = read_configurations(enqueued) if enqueued else []
    source = _near_study(settings.warm_start, "warm_start", settings, loaded)
    if source:  # a bad source is refused before the study is created
        warm.check(source, settings.monitor, settings.direction, settings.warm_start_study)
    try:
        study, created, notes = _open_study(loaded, settings, study_dir, storage)
    except optuna.exceptions.DuplicatedStudyError:
        study, created, notes = _open_study(loaded, settings, study_dir, storage)
    if source:
        more = (settings.warm_start_study, settings.warm_start_enqueue)
        notes = [*notes, *warm.prepare(study, source, settings.monitor, settings.direction, *more)]
    if configurations:
        earlier = recorded(study.get_trials(deepcopy=False))
        notes = [*notes, *enqueue(study, configurations, earlier)]
    return study, created, notes


def _near_study(value: Any, key: str, settings: Settings, loaded: LoadedStudy) -> Any:
    """A relative path a study file gives (not a flag) is relative to the study file."""
    from pathlib import Path

    from_file = settings.sources.get(key, "").endswith(f"{key}=") and not loaded.in_code
    relative = isinstance(value, str) and "://" not in value
    if relative and from_file and not Path(value).expanduser().is_absolute():
        return str(loaded.path.parent / value)
    return value


def _open_study(
    loaded: LoadedStudy,
    settings: Settings,
    study_dir: StudyDir,
    storage: optuna.storages.BaseStorage,
) -> tuple[optuna.Study, bool, list[str]]:
    shown = redact(settings.storage) if settings.storage else str(study_dir.root)
    try:
        summaries = optuna.get_all_study_summaries(storage)
        existing = {s.study_name: s for s in summaries if not is_side(s.study_name)}
    except Exception as exc:
        raise StorageError(
            f"storage {shown!r}: cannot list studies: {first_line(redact_text(str(exc)))}"
        ) from exc
    if settings.name in existing:
        study, notes = _continue(existing[settings.name], loaded, settings, study_dir, storage)
        return study, False, notes
    if study_dir.has_trials():
        raise ConfigError(
            f"{study_dir.trials} holds trials of an earlier run, but storage {shown!r} has no "
            f"study {settings.name!r}; delete that folder, or pass another --study-name or "
            "--results"
        )
    return _create(loaded, settings, study_dir, storage), True, []


def _continue(
    summary: optuna.study.StudySummary,
    loaded: LoadedStudy,
    settings: Settings,
    study_dir: StudyDir,
    storage: optuna.storages.BaseStorage,
) -> tuple[optuna.Study, list[str]]:
    """Load the study, check it still optimises the same metric the same way, and rerun
    the trials a dead process on this machine left; the notes to show."""
    shown = redact(settings.storage) if settings.storage else str(study_dir.root)
    notes: list[str] = []
    # No replay of the first run's parameters: the trial loop seeds each trial's
    # draws from (seed, trial number) (see tunecb.study.samplers_pruners.reseed).
    constraints = constraints_func(loaded.study, settings.max_params)
    sampler = make_sampler(settings.sampler, settings.seed, constraints)
    pruner = make_pruner(settings.pruner, settings.epochs)
    _check_objectives(summary, settings, shown)  # then a multi-objective one's monitor matches
    one = len(summary.directions) == 1
    old_direction = summary.directions[0].name.lower() if one else settings.direction
    old_monitor = summary.user_attrs.get(STUDY_MONITOR, settings.monitor)
    study = optuna.load_study(
        study_name=settings.name, storage=storage, sampler=sampler, pruner=pruner
    )
    if (
        old_monitor != settings.monitor
        and old_direction == settings.direction
        and not study.get_trials(deepcopy=False, states=FINISHED[:2])
    ):
        # Nothing finished with the old metric (a typo caught at the first epoch).
        study.set_user_attr(STUDY_MONITOR, settings.monitor)
        _write_study_json(study_dir, settings, loaded)
        notes.append(f"monitor changed from {old_monitor} to {settings.monitor}")
        old_monitor = settings.monitor
    if old_direction != settings.direction or old_monitor != settings.monitor:
        raise ConfigError(
            f"study {settings.name!r} in {shown!r} optimises {old_monitor} ({old_direction}); "
            f"the study now says {settings.monitor} ({settings.direction}). "
            "Use --study-name NEW for a new study, or restore the old monitor and direction"
        )
    judged = recover_dead_trials_judged(study)
    rerun = [n for n, what in judged.items() if what == "requeued"]
    if rerun:
        notes.append(
            f"trials {rerun} were left running by a process on this machine that died; "
            "they run again, resuming from their last backup"
        )
    notes += _killed_notes(study, [n for n, what in judged.items() if what == "failed"])
    notes += _unchecked_notes(study, settings, study_dir)
    notes += _file_notes(summary, loaded, settings, shown)
    return study, notes


def _file_notes(
    summary: optuna.study.StudySummary, loaded: LoadedStudy, settings: Settings, shown: str
) -> list[str]:
    """Refuse a study that another study file began (the same ``name=`` in two files),
    unless ``--allow-other-file``; else a note when the study file changed."""
    old_sha = summary.user_attrs.get(STUDY_SHA)
    if not old_sha or old_sha == loaded.sha256:
        return []  # the same file, or a copy of it moved elsewhere
    began = summary.user_attrs.get(STUDY_FILE)
    here = str(loaded.path.resolve())
    if began and began != here:
        if not settings.allow_other_file:
            raise ConfigError(
                f"study {settings.name!r} in {shown!r} was begun by the study file {began}, "
                f"not {loaded.path}; use --study-name NEW for a new study, or "
                "--allow-other-file to continue it with this file"
            )
        return [f"study {settings.name!r} was begun by {began}; continuing it with {here}"]
    return [f"the study file {loaded.path} changed since the study began"]


def _create(
    loaded: LoadedStudy,
    settings: Settings,
    study_dir: StudyDir,
    storage: optuna.storages.BaseStorage,
) -> optuna.Study:
    """Create the study with the attributes that later runs check, and its study.json."""
    study = optuna.create_study(
        storage=storage, study_name=settings.name, directions=directions(settings),
        sampler=make_sampler(
            settings.sampler, settings.seed, constraints_func(loaded.study, settings.max_params)
        ),
        pruner=make_pruner(settings.pruner, settings.epochs),
    )  # fmt: skip
    for key, value in {
        STUDY_MONITOR: settings.monitor,
        STUDY_EPOCHS: settings.epochs,
        STUDY_SHA: loaded.sha256,
        STUDY_FILE: str(loaded.path.resolve()),
        STUDY_VERSION: __version__,
        **({STUDY_OBJECTIVES: text_of(settings.objectives)} if settings.objectives else {}),
    }.items():
        study.set_user_attr(key, value)
    _write_study_json(study_dir, settings, loaded)
    return study


def _killed_notes(study: optuna.Study, numbers: list[int]) -> list[str]:
    """One note per trial found dead that died too often and failed for good."""
    notes = []
    for number in numbers:
        error = study.get_trials(deepcopy=False)[number].user_attrs.get(ERROR, "")
        notes.append(f"trial {number} was left running by a process that died, and failed: {error}")
    return notes


def directions(settings: Settings) -> list[str]:
    """The Optuna study's directions: one per objective, or the monitor's."""
    if settings.objectives:
        return [o.direction for o in settings.objectives]
    return [settings.direction]


def _check_objectives(summary: optuna.study.StudySummary, settings: Settings, shown: str) -> None:
    """Refuse to continue a study under other objectives than it began with."""
    old = summary.user_attrs.get(STUDY_OBJECTIVES)
    new = text_of(settings.objectives)
    if old != new:
        raise ConfigError(
            f"study {settings.name!r} in {shown!r} optimises {old or 'one objective'}; the "
            f"study now says {new or 'one objective'}. Use --study-name NEW for a new study, "
            "or restore the old objectives"
        )


def _unchecked_notes(study: optuna.Study, settings: Settings, study_dir: StudyDir) -> list[str]:
    """A note per trial left RUNNING by another machine, which nothing here can find dead
    (the journal has no heartbeat), with the command that releases it."""
    import shlex

    where = (
        shlex.quote(str(study_dir.root))
        if settings.storage is None
        else f"--storage {shlex.quote(redact(settings.storage))}"
    )
    return [
        f"trial {number} is RUNNING, owned by host {host} pid {pid}, which this machine "
        f"cannot check; if that run is dead, release it with `tunecb repair {where} "
        "--release-running` (its parameters run again)"
        for number, owner in unchecked_owners(study)
        for host, pid in [owner.rsplit(":", 1)]
    ]


def _write_study_json(study_dir: StudyDir, settings: Settings, loaded: LoadedStudy) -> None:
    write_json(
        study_dir.study_json,
        {
            "name": settings.name,
            "monitor": settings.monitor,
            "direction": settings.direction,
            **({"objectives": text_of(settings.objectives)} if settings.objectives else {}),
            "epochs": settings.epochs,
            "storage": redact(settings.storage) if settings.storage else None,
            "study_file": str(loaded.path.resolve()),
            "tunecb_version": __version__,
        },
    )
