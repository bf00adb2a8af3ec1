"""Who owns a RUNNING trial, and when that owner is gone (issue 18, finding 7): a process of
this machine that died, also when another process (this one) has its pid now; real Optuna
studies in memory, no training."""

from __future__ import annotations

import os
import socket

import optuna
import pytest

from tunecb.oracle import attempts, attrs

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _running(worker: str, start: str | None) -> optuna.Study:
    study = optuna.create_study()
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.set_user_attr(attrs.WORKER, worker)
    if start is not None:
        trial.set_user_attr(attrs.WORKER_START, start)
    return study


def test_a_trial_of_an_earlier_process_with_this_pid_is_rerun():
    """A container's entrypoint is PID 1 every run: the trial's owner has our pid, but
    started at another moment."""
    me = attrs.worker_id()
    study = _running(me, "boot-1")  # another incarnation of this pid
    assert attempts.recover_dead_trials(study) == [0]
    trials = study.get_trials()
    assert trials[0].state.name == "FAIL" and trials[0].user_attrs["stop_reason"] == "worker_died"
    assert trials[1].state.name == "WAITING" and trials[1].params == trials[0].params


@pytest.mark.parametrize("start", ["now", None], ids=["same-start", "not-recorded"])
def test_a_trial_of_a_live_process_is_left_alone(start):
    """Its owner runs (another live process of this machine, as it recorded itself; or an
    older tunecb's record, which only has the pid). This process's own trials are alive
    while a search of it runs them (tests/unit/test_own_trials.py)."""
    owner = os.getppid()
    worker = f"{socket.gethostname()}:{owner}"
    study = _running(worker, attrs.process_start(owner) if start == "now" else None)
    assert attempts.recover_dead_trials(study) == []
    assert study.get_trials()[0].state.name == "RUNNING"


def test_claim_records_the_owner_and_when_it_started():
    study = optuna.create_study()
    trial = study.ask()
    attempts.claim(trial, attrs.worker_id())
    got = study.get_trials()[0].user_attrs
    assert got[attrs.WORKER] == f"{socket.gethostname()}:{os.getpid()}"
    assert got[attrs.WORKER_START] == attrs.process_start()


def test_a_process_start_tells_two_processes_apart():
    import subprocess
    import time

    time.sleep(0.05)  # start times count clock ticks (10 ms): this process is older
    child = subprocess.Popen(["sleep", "30"])
    try:
        theirs = attrs.process_start(child.pid)
        assert theirs is not None and theirs != attrs.process_start()
    finally:
        child.kill()
        child.wait()
    assert attrs.process_start(2**22 + 12345) is None  # no such process
