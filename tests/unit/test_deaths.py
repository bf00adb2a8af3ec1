"""A configuration that keeps killing its process (issue 21): counted along its attempts,
failed for good after the stated number of deaths; an operator's stop never counts. Real
Optuna studies in memory, real dead processes for the next-run rule; no training."""

from __future__ import annotations

import subprocess
import sys

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
        "counts": True, "memory": False,
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
