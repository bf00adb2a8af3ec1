"""The body of a worker, in whatever process it runs (this process, a ``--jobs`` process, a
Dask task): set up the Keras backend, load the data once, build the trial runner and run the
trial loop (:func:`run_trials_of`, the one assembly of "data, runner, loop").

>>> from tunecb.execution._base import Limits, WorkerSpec
>>> spec = WorkerSpec("studies/digits.py", {}, limits=Limits(10))
>>> run_worker(spec, sink)  # doctest: +SKIP
'budget'
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import optuna

from tunecb.execution._base import Limits, Sink, WorkerSpec
from tunecb.study.declaration import LoadedStudy
from tunecb.study.settings import Settings


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


def run_trials_of(
    study: optuna.Study,
    loaded: LoadedStudy,
    settings: Settings,
    limits: Limits,
    sink: Sink,
    should_stop: Callable[[], bool] = lambda: False,
) -> str:
    """Load the data, build the trial runner (its epochs reported to ``sink``) and run the
    trial loop on ``study`` until ``limits`` (or ``should_stop()``) says stop; returns why
    it stopped. The backend must be prepared (:func:`prepare_backend`)."""
    from tunecb.execution.loop import run_trials
    from tunecb.oracle.retention import keeper
    from tunecb.results import StudyDir
    from tunecb.study.data import load_data
    from tunecb.training.runner import TrialRunner  # imports Keras: only when training

    study_dir = StudyDir(settings.results / settings.name)
    data = load_data(loaded, settings)
    runner = TrialRunner(loaded, settings, study_dir, data, sink.epoch)
    runner.memory_limit_mb = limits.max_rss_mb  # --worker-memory, also within a trial
    after_tell = keeper(study_dir, settings.keep_checkpoints)  # --keep-checkpoints K
    try:
        return run_trials(study, runner, limits, sink, settings.seed, should_stop, after_tell)
    finally:
        runner.release()  # the paused trials' models it kept in memory
        if runner.tracking is not None:  # --mlflow: its thread (a Dask worker lives on);
            runner.tracking.close()  # the last trials' runs are completed there: wait (30 s)


def run_worker(
    spec: WorkerSpec,
    sink: Sink,
    should_stop: Callable[[optuna.Study], bool] = lambda study: False,
) -> str:
    """Run trials of the study ``spec`` names until the budget is spent (or the worker's
    recycling limit, or ``should_stop()``); returns why it stopped."""
    prepare_backend(spec.threads, spec.debug)
    getattr(sink, "loading", lambda: None)()  # a supervisor times what follows (timeouts)

    from tunecb.oracle.attempts import constraints_func, recover_dead_trials
    from tunecb.results import StudyDir
    from tunecb.storage.reconnect import opening
    from tunecb.storage.urls import study_storage
    from tunecb.study.declaration import from_portable
    from tunecb.study.samplers_pruners import make_pruner, make_sampler
    from tunecb.study.settings import resolve
    from tunecb.study.study_file import load_study_file

    if spec.study_blob is not None:
        loaded = from_portable(spec.study_blob)
    else:
        loaded = load_study_file(spec.study_path, defer_backends=False)
    settings = resolve(
        loaded.study.settings, spec.overrides, default_name=loaded.default_name,
        study_path=loaded.path,
    )  # fmt: skip
    study_dir = StudyDir(settings.results / settings.name)
    storage = opening(  # started while the database restarts: wait for it, as the others
        lambda: study_storage(
            settings.storage, study_dir.root, settings.heartbeat, settings.reconnect
        ),
        wait_s=settings.reconnect,
    )
    study = optuna.load_study(
        study_name=settings.name,
        storage=storage,
        sampler=make_sampler(
            settings.sampler, settings.seed, constraints_func(loaded.study, settings.max_params)
        ),
        pruner=make_pruner(settings.pruner, settings.epochs),
    )
    recover_dead_trials(study)  # e.g. a Dask worker on this machine that was killed
    stop = lambda: should_stop(study)  # noqa: E731
    return run_trials_of(study, loaded, settings, spec.limits, sink, stop)
