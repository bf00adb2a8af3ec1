"""Dask workers lost mid-trial: tunecb's real trial loop in tasks on a real LocalCluster (the
dead-trial recovery a task starts with, then ``run_trials``, as ``dask_task`` runs them), one
Dask worker process SIGKILLed while its trials run. Its nanny starts a new process, the
scheduler runs the lost tasks again, and those find the dead trials and queue them again:
every trial finished once, none lost, none repeated, no hang. The training is a stand-in that
sleeps per epoch (no Keras: the cluster starts in seconds)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tunecb.execution._base import Limits
from tunecb.oracle import attrs, budget
from tunecb.oracle.outcome import COMPLETE, TrialOutcome

distributed = pytest.importorskip("dask.distributed")

N_TRIALS, EPOCHS, EPOCH_S = 8, 4, 0.3


class SleepyRunner:
    """A trial that sleeps ``EPOCH_S`` per epoch and reports each epoch, as a fit would."""

    def run(self, trial: optuna.Trial) -> TrialOutcome:
        x = trial.suggest_float("x", 0.0, 1.0)
        for epoch in range(1, EPOCHS + 1):
            time.sleep(EPOCH_S)
            trial.report(x * epoch, step=epoch)
            trial.should_prune()
        return TrialOutcome(
            number=trial.number, state=COMPLETE, value=x, best_epoch=EPOCHS, epochs_run=EPOCHS,
            stop_reason=attrs.COMPLETED, error=None, checkpoint=None, duration_s=0.0,
            n_params=1, seed=0, lr_schedule="none",
        )  # fmt: skip


class CountingSink:
    def started(self, number: int) -> None: ...

    def epoch(self, number: int, epoch: int, value: float | None) -> None: ...

    def finished(self, outcome: TrialOutcome) -> None: ...


def task(journal: str) -> dict:
    """One worker task: what ``dask_task`` does, with the stand-in runner."""
    from tunecb.execution.loop import run_trials
    from tunecb.oracle.attempts import recover_dead_trials
    from tunecb.storage.urls import open_storage

    study = optuna.load_study(
        study_name="s", storage=open_storage(journal, Path(journal).parent),
        sampler=optuna.samplers.RandomSampler(),
    )  # fmt: skip
    recovered = recover_dead_trials(study)
    reason = run_trials(study, SleepyRunner(), Limits(N_TRIALS), CountingSink(), seed=0)
    return {"pid": os.getpid(), "reason": reason, "recovered": recovered}


def test_dask_workers_lost_mid_trial_lose_no_trial_and_repeat_none(tmp_path):
    import cloudpickle

    from tunecb.storage.urls import open_storage

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import it
    journal = str(tmp_path / "optuna.journal")
    study = optuna.create_study(study_name="s", storage=open_storage(journal, tmp_path))
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):  # fmt: skip
        victim = next(iter(client.run(os.getpid).values()))
        futures = [client.submit(task, journal, pure=False) for _ in range(4)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until a trial of the victim has an epoch
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if any(
                str(t.user_attrs.get(attrs.WORKER, "")).endswith(f":{victim}")
                and t.intermediate_values
                for t in running
            ):
                break
            time.sleep(0.05)
        os.kill(victim, signal.SIGKILL)
        results = client.gather(futures)  # the lost tasks ran again elsewhere
        assert victim not in client.run(os.getpid).values()
    trials = study.get_trials(deepcopy=False)
    died = [t for t in trials if t.user_attrs.get(attrs.STOP_REASON) == attrs.WORKER_DIED]
    assert died and all(t.user_attrs[attrs.WORKER].endswith(f":{victim}") for t in died)
    # A task that starts finds only dead trials dead, each once. Which finds them first (a
    # rescheduled task as it starts, or a surviving task's loop once the budget is spent) is
    # the machine's timing: under load the nanny's new process starts after the loop's turn.
    recovered = [n for r in results for n in r["recovered"]]
    assert set(recovered) <= {t.number for t in died} and len(set(recovered)) == len(recovered)
    again = budget.retried(trials)
    counted = [t for t in trials if t.state in attrs.FINISHED and budget.counts(t, again)]
    assert len(counted) == N_TRIALS and {t.state for t in counted} == {TrialState.COMPLETE}
    params = [t.params["x"] for t in counted]
    assert len(set(params)) == N_TRIALS  # no parameter set ran twice
    assert {t.params["x"] for t in died} <= set(params)  # each killed trial ran again
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
