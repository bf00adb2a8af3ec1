"""``tunecb.search()``: the CLI's search, from a script or a notebook.

>>> result = tunecb.search("studies/digits.py", n_trials=4, jobs=0)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from tunecb.errors import ConfigError
from tunecb.execution.sizing import WORKER_MEMORY_MB, WORKER_TRIALS
from tunecb.session.display import choose
from tunecb.session.quiet import quieted
from tunecb.session.result import SearchResult
from tunecb.study.declaration import LoadedStudy, Study, study_in_code

log = logging.getLogger("tunecb")

# Keywords besides the settings (tunecb.study.fields.FIELDS): how trials run.
WORKER_OPTIONS = {
    "jobs": "trials at once: 'auto' (default: a worker per core), 0 (this process) or N",
    "threads_per_worker": "CPU threads of each worker",
    "worker_trials": "replace a worker after N trials (0: never)",
    "worker_memory": "replace a worker above N MiB (0: never)",
    "gpus": "'0,1': give worker i GPU i",
    "workers_per_gpu": "N workers share each GPU of gpus=, allocating memory on demand",
    "dask": "run the workers on this Dask cluster (tcp://host:port)",
}


@quieted  # as quiet as the CLI (TensorFlow's start-up lines, Optuna's INFO lines)
def search(
    study: Study | str | Path,
    *,
    quiet: bool = False,
    jobs: int | str | None = None,
    threads_per_worker: int | None = None,
    worker_trials: int = WORKER_TRIALS,
    worker_memory: float = WORKER_MEMORY_MB,
    gpus: str | None = None,
    workers_per_gpu: int = 1,
    dask: str | None = None,
    **settings: Any,
) -> SearchResult:
    """Run a search, as ``tunecb search`` does, and return its :class:`SearchResult`.

    ``study`` is a :class:`tunecb.Study` declared in the calling code (a script, a notebook
    cell) or a study file's path; ``settings`` are the CLI's by name (``n_trials=``,
    ``epochs=``, ``storage=``, ``results=``, ...) and win over the study's. Progress shows
    where the code runs (a notebook view, the terminal's live view, plain lines in a log;
    nothing with ``quiet=True``). Ctrl-C (or interrupting the kernel) stops the search
    resumable and raises ``KeyboardInterrupt``; a problem the user must fix raises a
    :class:`tunecb.TunecbError` with a one-line message.
    """
    from tunecb.execution.choice import WorkerOptions
    from tunecb.launcher import launch
    from tunecb.study.fields import FIELDS_BY_NAME

    unknown = sorted(set(settings) - set(FIELDS_BY_NAME))
    if unknown:
        known = ", ".join(sorted(FIELDS_BY_NAME) + sorted(WORKER_OPTIONS))
        raise ConfigError(f"tunecb.search(): unknown setting(s) {unknown}; known: {known}")
    if jobs is not None and not (
        jobs == "auto" or (isinstance(jobs, int) and not isinstance(jobs, bool) and jobs >= 0)
    ):
        raise ConfigError(
            f"jobs={jobs!r}: expected 'auto' (a worker per core), 0 (this process) or N workers"
        )
    options = WorkerOptions(
        jobs=jobs, threads_per_worker=threads_per_worker, worker_trials=worker_trials,
        worker_memory=worker_memory, gpus=gpus, dask=dask, workers_per_gpu=workers_per_gpu,
    )  # fmt: skip
    overrides = {k: v for k, v in settings.items() if v is not None}
    display = lambda resolved: choose(quiet, resolved.verbose)  # noqa: E731
    summary, resolved = launch(_loaded(study, settings.get("backend")), overrides, options, display)
    return SearchResult(summary, storage=resolved.storage)


def _loaded(study: Study | str | Path, backend: str | None) -> LoadedStudy:
    """The study, a study file imported with ``backend`` (``backend=``) selected first."""
    from tunecb.training.backends import check_declared, load_study

    if isinstance(study, str | os.PathLike):
        return load_study(study, backend)
    loaded = study_in_code(study)
    if not backend:
        check_declared(loaded)
    return loaded
