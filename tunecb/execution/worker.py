"""The body of a worker, in whatever process it runs (a ``--jobs`` process, a Dask task):
set up the Keras backend, load the study file and the data once, run trials.

>>> from tunecb.execution._base import Limits, WorkerSpec
>>> spec = WorkerSpec("studies/digits.py", {}, limits=Limits(10))
>>> run_worker(spec, sink)  # doctest: +SKIP
'budget'
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import optuna

from tunecb.execution._base import WorkerSpec
from tunecb.oracle.outcome import TrialOutcome


class WorkerSink(Protocol):
    """What a worker tells whoever supervises it."""

    def started(self, number: int) -> None: ...

    def epoch(self, number: int, epoch: int, value: float | None) -> None: ...

    def finished(self, outcome: TrialOutcome) -> None: ...


def prepare_backend(threads: int | None, debug: bool) -> str:
    """Import Keras on the backend ``KERAS_BACKEND`` names, quietly (unless ``debug``), with
    ``threads`` CPU threads, and keep Optuna's chatter off the terminal; returns the
    backend's name."""
    from tunecb.training.backends import prepare

    backend = prepare(threads, debug)
    if not debug:  # as in the CLI: a lost connection is reported in one line
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        logging.getLogger("optuna.storages._rdb.storage").setLevel(logging.ERROR)
    return backend


def run_worker(
    spec: WorkerSpec,
    sink: WorkerSink,
    should_stop: Callable[[optuna.Study], bool] = lambda study: False,
) -> str:
    """Run trials of the study ``spec`` names until the budget is spent (or the worker's
    recycling limit, or ``should_stop()``); returns why it stopped."""
    prepare_backend(spec.threads, spec.debug)

    from tunecb.execution.loop import run_trials
    from tunecb.oracle.attempts import constraints_func, recover_dead_trials
    from tunecb.oracle.retention import keeper
    from tunecb.results import StudyDir
    from tunecb.storage.urls import study_storage
    from tunecb.study.data import load_data
    from tunecb.study.declaration import from_portable, load_study_file
    from tunecb.study.samplers_pruners import make_pruner, make_sampler
    from tunecb.study.settings import resolve
    from tunecb.training.runner import TrialRunner

    if spec.study_blob is not None:
        loaded = from_portable(spec.study_blob)
    else:
        loaded = load_study_file(spec.study_path, defer_backends=False)
    settings = resolve(
        loaded.study.settings, spec.overrides, default_name=loaded.default_name,
        study_path=loaded.path,
    )  # fmt: skip
    study_dir = StudyDir(settings.results / settings.name)
    storage = study_storage(settings.storage, study_dir.root, settings.heartbeat)
    study = optuna.load_study(
        study_name=settings.name,
        storage=storage,
        sampler=make_sampler(
            settings.sampler, settings.seed, constraints_func(loaded.study, settings.max_params)
        ),
        pruner=make_pruner(settings.pruner, settings.epochs),
    )
    recover_dead_trials(study)  # e.g. a Dask worker on this machine that was killed
    runner = TrialRunner(loaded, settings, study_dir, load_data(loaded, settings), sink.epoch)
    after_tell = keeper(study_dir, settings.keep_checkpoints)  # --keep-checkpoints K
    stop = lambda: should_stop(study)  # noqa: E731
    return run_trials(study, runner, spec.limits, sink, settings.seed, stop, after_tell)
