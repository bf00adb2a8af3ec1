"""``--dask tcp://HOST:PORT --jobs N``: the workers run on an existing Dask cluster.

joblib's Dask backend sends N worker tasks to the cluster at a time; each runs
:func:`tunecb.pool.run_worker` (load the study file and the data once, run trials until
the budget is spent or the worker's trial limit is reached; then the next task starts).
The storage must be reachable from every Dask worker: an RDB URL (PostgreSQL), or the
journal file on a folder they all see; the results folder likewise.

This process does not hear from the tasks while they run: it follows the study in the
storage and prints each trial as it finishes. To stop (Ctrl-C, or the first trials all
failing) it marks the study so that every task stops after its current trial.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import optuna
from optuna.trial import TrialState

from tunecb.errors import ConfigError
from tunecb.pool import PoolResult, WorkerSpec, run_worker, work_left
from tunecb.worker import STOP_BUDGET, STOP_TIMEOUT, Limits

log = logging.getLogger("tunecb")

STOP_ATTR = "tunecb_stop_run"
_DONE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def connect(address: str, timeout: float = 5.0) -> Any:
    """A Dask client for ``address``, or a one-line :class:`ConfigError` in seconds."""
    try:
        from dask.distributed import Client
    except ImportError as exc:
        raise ConfigError("--dask needs dask.distributed: pip install 'tunecb[dask]'") from exc
    if "://" not in address:
        raise ConfigError(f"--dask {address!r}: give the scheduler address, e.g. tcp://host:8786")
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"--dask {address!r}: no Dask scheduler answered within {timeout:.0f} s ({reason}); "
            "start one (dask scheduler) or fix the address"
        ) from exc


def dask_task(spec: WorkerSpec, run_id: str) -> dict[str, Any]:
    """One worker task on a Dask worker: trials until done; returns what it did."""
    import os

    os.environ.update({k: v for k, v in spec.env.items() if k != "CUDA_VISIBLE_DEVICES"})
    states: list[str] = []

    def stop_requested(study: optuna.Study) -> bool:
        return study.user_attrs.get(STOP_ATTR) == run_id

    reason = run_worker(spec, lambda outcome: states.append(outcome.state), stop_requested)
    return {"reason": reason, "trials": len(states), "pid": os.getpid()}


def run_dask(
    address: str,
    study: optuna.Study,
    jobs: int,
    make_spec: Callable[[int, int, Limits], WorkerSpec],
    limits: Limits,
    on_trial: Callable[[Any], None],
    poll_s: float = 0.5,
    on_progress: Callable[[int, int, float | None, Any], None] | None = None,
) -> PoolResult:
    """Run ``jobs`` worker tasks at a time on the Dask cluster at ``address`` until the
    budget is spent; ``on_trial`` is called here for every trial that finishes, and
    ``on_progress(number, epochs_done, value, worker)`` for the running trials' epochs
    seen in the storage (their pruning reports)."""
    import joblib

    client = connect(address)
    run_id = uuid.uuid4().hex
    result = PoolResult()
    seen = {t.number for t in study.get_trials(deepcopy=False, states=_DONE)}
    epochs_seen: dict[int, int] = {}
    errors: list[BaseException] = []
    reasons: list[str] = []

    def tasks():
        index = 0
        while work_left(study, limits) and not errors:
            yield joblib.delayed(dask_task)(make_spec(index % jobs, index // jobs, limits), run_id)
            index += 1

    def drive() -> None:
        try:
            with joblib.parallel_config(backend="dask", client=client, wait_for_workers_timeout=30):
                for done in joblib.Parallel(
                    n_jobs=jobs, pre_dispatch="n_jobs", return_as="generator_unordered"
                )(tasks()):
                    reasons.append(done["reason"])
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=drive, name="tunecb-dask", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(poll_s)
            _report_new(study, seen, result, on_trial)
            if on_progress is not None:
                _report_epochs(study, epochs_seen, on_progress)
        _report_new(study, seen, result, on_trial)
    except BaseException:
        study.set_user_attr(STOP_ATTR, run_id)  # tasks stop after their current trial
        raise
    finally:
        if thread.is_alive():
            thread.join(5)
        client.close()
    if errors:
        raise errors[0]
    result.stopped_by = STOP_TIMEOUT if STOP_TIMEOUT in reasons else STOP_BUDGET
    return result


def _report_epochs(study: optuna.Study, epochs_seen: dict[int, int], on_progress) -> None:
    """Start and epoch events of the running trials, from the values they reported."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        if trial.number not in epochs_seen:
            epochs_seen[trial.number] = 0
            on_progress(trial.number, 0, None, worker)
        for step in sorted(trial.intermediate_values):
            if step > epochs_seen[trial.number]:
                epochs_seen[trial.number] = step
                on_progress(trial.number, step, trial.intermediate_values[step], worker)


def _report_new(study: optuna.Study, seen: set[int], result: PoolResult, on_trial) -> None:
    for trial in study.get_trials(deepcopy=False, states=_DONE):
        if trial.number in seen:
            continue
        seen.add(trial.number)
        attrs = trial.user_attrs
        if "stop_reason" not in attrs or attrs["stop_reason"] == "discarded":
            continue
        outcome = SimpleNamespace(
            number=trial.number,
            state=trial.state.name,
            value=attrs.get("best_value"),
            epochs_run=attrs.get("epochs_run", 0),
            stop_reason=attrs["stop_reason"],
            duration_s=attrs.get("duration_s") or 0.0,
            error=attrs.get("error"),
        )
        result.ran[outcome.state] += 1
        on_trial(outcome)
