"""A configuration that keeps killing its process (issue 21): counted along its attempts,
failed for good after the stated number of deaths; an operator's stop never counts. Real
Optuna studies in memory, real dead processes for the next-run rule; no training."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import optuna
import pytest

from tunecb.oracle import attempts, attrs, budget, deaths
from tunecb.oracle.deaths import MAX_DEATHS, MAX_MEMORY_DEATHS, Death

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = {"size": optuna.distributions.CategoricalDistribution(["small", "huge"])}


def _run_next(study: optuna.Study, worker: str) -> int:
    """Ask the next trial (the waiting rerun first, as every worker does), claimed by
    ``worker``; its number."""
    trial = study.ask(SPACE)
    trial.set_user_attr(attrs.WORKER, worker)
    return trial.number


def _dead_worker() -> str:
    """The ``host:pid`` of a process of this machine that ran and exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return attrs.worker_id(proc.pid)


def _own(trials: list) -> list:
    """The trials that ran (not the prior a killed configuration adds for the sampler)."""
    return [t for t in trials if attrs.WARM_START not in t.user_attrs]


def _bury_until_failed(study: optuna.Study, death: Death, limit: int = 10) -> list[str]:
    done = []
    for _ in range(limit):
        number = _run_next(study, "host:1")
        done.append(attempts.bury(study, number, death))
        if done[-1] == "failed":
            break
    return done


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSEGV", "exit code 1"])
def test_a_configuration_killed_again_and_again_fails_on_its_last_stated_death(how):
    study = optuna.create_study()
    done = _bury_until_failed(study, Death(how))
    assert done == ["requeued"] * (MAX_DEATHS - 1) + ["failed"]
    trials = study.get_trials()
    last = _own(trials)[-1]  # after it: the prior that tells the sampler (test_killed_region)
    assert last.state.name == "FAIL" and last.user_attrs[attrs.STOP_REASON] == attrs.KILLED
    assert last.user_attrs[attrs.ERROR].startswith(f"killed {MAX_DEATHS} times ({how})")
    assert {t.params["size"] for t in trials} == {trials[0].params["size"]}  # one lineage
    assert not [t for t in trials if t.state.name in ("WAITING", "RUNNING")]
    # The lineage uses one unit of the budget: the failed-for-good attempt, not the others.
    assert budget.left(trials, 3) == 2 and budget.finished(trials) == 1


def test_an_operators_stop_never_counts_and_the_trial_always_runs_again():
    study = optuna.create_study()
    for sig in ("SIGTERM", "SIGINT", "SIGHUP") * 3:
        assert attempts.bury(study, _run_next(study, "host:1"), Death(sig)) == "requeued"
    assert study.get_trials()[-1].state.name == "WAITING"
    # ... nor do they add up with later deaths that count.
    assert _bury_until_failed(study, Death("SIGKILL"))[-1] == "failed"
    assert len(_bury_until_failed(optuna.create_study(), Death("SIGKILL"))) == MAX_DEATHS


@pytest.mark.parametrize(
    "death",
    [Death("SIGKILL", rss_mb=23_500.0, oom=True), Death("SIGKILL", rss_mb=950.0, limit_mb=1000.0)],
    ids=["oom-killer", "rss-near-limit"],
)
def test_a_death_the_system_blames_on_memory_fails_the_configuration_sooner(death):
    study = optuna.create_study()
    assert len(_bury_until_failed(study, death)) == MAX_MEMORY_DEATHS
    error = study.get_trials()[-1].user_attrs[attrs.ERROR]
    assert error.endswith("out of memory?") and "RSS" in error


def test_a_small_worker_killed_without_a_word_from_the_system_is_not_blamed_on_memory():
    study = optuna.create_study()
    death = Death("SIGKILL", rss_mb=300.0, oom=False, limit_mb=8000.0)
    assert len(_bury_until_failed(study, death)) == MAX_DEATHS
    assert "or killed from outside?" in study.get_trials()[-1].user_attrs[attrs.ERROR]


def test_each_dead_attempt_records_how_it_died():
    study = optuna.create_study()
    number = _run_next(study, "host:1")
    attempts.bury(study, number, Death("SIGKILL", rss_mb=812.0, oom=False, limit_mb=4096.0))
    dead = study.get_trials()[number]
    assert dead.user_attrs[attrs.STOP_REASON] == attrs.WORKER_DIED
    assert dead.user_attrs[attrs.ERROR] == "worker killed by SIGKILL at 812 MiB RSS"
    assert dead.user_attrs[attrs.DEATH] == {
        "how": "SIGKILL", "rss_mb": 812.0, "oom": False, "limit_mb": 4096.0,
        "error": None, "counts": True, "memory": False,
    }  # fmt: skip


def test_a_trial_no_longer_running_is_left_as_it_is():
    study = optuna.create_study()
    trial = study.ask(SPACE)
    study.tell(trial, 1.0)
    assert attempts.bury(study, trial.number, Death("SIGKILL")) is None


def test_the_next_run_counts_the_deaths_of_a_search_process_that_kept_dying():
    """``--jobs 0``: each run dies with its trial; the next run finds the process gone."""
    study = optuna.create_study()
    found = []
    for _ in range(MAX_DEATHS):
        _run_next(study, _dead_worker())
        found.append(attempts.recover_dead_trials_judged(study))
    values = [next(iter(f.values())) for f in found]
    assert values == ["requeued"] * (MAX_DEATHS - 1) + ["failed"]
    last = _own(study.get_trials())[-1]
    assert last.user_attrs[attrs.STOP_REASON] == attrs.KILLED
    assert "is gone" in last.user_attrs[attrs.ERROR]
    assert attempts.recover_dead_trials(study) == []  # nothing left to recover


def test_the_oom_count_recorded_at_start_tells_the_next_run_the_oom_killer_acted(monkeypatch):
    study = optuna.create_study()
    trial = study.ask(SPACE)
    monkeypatch.setattr(deaths, "oom_kills", lambda: 4)
    attempts.claim(trial, _dead_worker())
    assert study.get_trials()[0].user_attrs[attrs.OOM_KILLS] == 4
    monkeypatch.setattr(deaths, "oom_kills", lambda: 5)  # the OOM killer acted since
    frozen = study.get_trials()[0]
    death = deaths.found_dead(frozen, 1234)
    assert death.oom is True and death.memory and death.how == "its process 1234 is gone"


# -- out-of-memory errors raised inside a trial (its worker lives on) ----------------------

OOM_TEXTS = {
    "tensorflow": "ResourceExhaustedError: OOM when allocating tensor with shape[8192,8192] "
    "and type float on /job:localhost/replica:0/task:0/device:GPU:0 by allocator GPU_0_bfc",
    "jax": "XlaRuntimeError: RESOURCE_EXHAUSTED: Out of memory while trying to allocate "
    "17179869184 bytes.",
    "torch": "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 "
    "GiB total capacity; 5.01 GiB already allocated)",
}


@pytest.mark.parametrize("backend", sorted(OOM_TEXTS))
def test_an_out_of_memory_error_is_a_memory_death(backend):
    death = deaths.from_error(OOM_TEXTS[backend] + "\n(the whole message)")
    assert death is not None and death.memory and death.counts
    assert death.error == OOM_TEXTS[backend]


@pytest.mark.parametrize("text", [None, "", "ValueError: shapes (4,) and (3,) differ"])
def test_other_errors_are_no_death(text):
    assert deaths.from_error(text) is None


def _failed_outcome(number: int, error: str) -> Any:
    from tunecb.oracle.outcome import TrialOutcome

    return TrialOutcome(number, "FAIL", None, None, 1, attrs.FAILED, error, None, 0.1, 10, 1,
                        "none")  # fmt: skip


def test_a_trial_out_of_memory_runs_again_once_then_fails_saying_so():
    study = optuna.create_study()
    told = []
    for _ in range(MAX_MEMORY_DEATHS):
        trial = study.ask(SPACE)
        told.append(attempts.tell(study, trial, _failed_outcome(trial.number, OOM_TEXTS["jax"])))
    assert told == [True] * MAX_MEMORY_DEATHS
    first, last = _own(study.get_trials())
    assert first.user_attrs[attrs.STOP_REASON] == attrs.WORKER_DIED
    assert first.user_attrs[attrs.ERROR].startswith("out of memory (XlaRuntimeError: ")
    assert last.state.name == "FAIL" and last.user_attrs[attrs.STOP_REASON] == attrs.KILLED
    assert last.user_attrs[attrs.ERROR].startswith("out of memory 2 times (XlaRuntimeError")
    assert last.system_attrs["retry_history"] == [first.number]
    assert budget.finished(study.get_trials()) == 1


def test_a_plain_failure_is_told_as_before():
    study = optuna.create_study()
    trial = study.ask(SPACE)
    assert attempts.tell(study, trial, _failed_outcome(trial.number, "ValueError: bad"))
    assert [t.state.name for t in study.get_trials()] == ["FAIL"]
