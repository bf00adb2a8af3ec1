"""The budget's and the recovery rules' reads of a database study (tunecb.storage.light_trials,
tunecb.oracle.attempts.light_trials): the same trials, states and attributes as the study's
own, one light row per trial, and only the unfinished and newly finished ones read again
(through Optuna's cache every such read loaded every running trial whole: 25 ms of CPU a
read at 200 workers, four or five reads a trial, benchmarks/scale.py)."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from tunecb.execution import loop
from tunecb.execution._base import Limits
from tunecb.oracle import attempts, attrs, budget
from tunecb.oracle.outcome import COMPLETE, TrialOutcome
from tunecb.storage.light_trials import LightTrials
from tunecb.storage.urls import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)
KEYS = ((attrs.STOP_REASON, attrs.WORKER, attrs.WORKER_START), (attrs.RETRY_HISTORY,))


@pytest.fixture
def study(memory_path) -> optuna.Study:
    """Finished, discarded, running (claimed, unclaimed), failed with its rerun queued."""
    storage = open_storage(f"sqlite:///{memory_path}/s.db", memory_path)
    study = optuna.create_study(storage=storage, direction="maximize", study_name="s")
    for value in (0.1, 0.2):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        study.tell(trial, value)
    discarded = study.ask()
    attempts.discard(study, discarded)
    claimed = study.ask()
    attempts.claim(claimed, attrs.worker_id())
    study.ask()  # unclaimed
    dying = study.ask()
    dying.suggest_float("x", 0, 1)
    attempts.claim(dying, "elsewhere:1")
    attempts.fail_and_requeue(study, dying.number, attrs.WORKER_DIED, "gone")
    return study


def _seen(trials: list) -> list[tuple]:
    return [
        (
            t.number, t.state, t.datetime_start,
            {k: t.user_attrs.get(k) for k in KEYS[0]},
            t.system_attrs.get(attrs.RETRY_HISTORY),
        )
        for t in trials
    ]  # fmt: skip


def test_the_trials_and_attributes_are_the_studys(study):
    light = LightTrials(*KEYS)
    whole = study.get_trials(deepcopy=False)
    assert _seen(light.read(study)) == _seen(whole)
    assert {t.state for t in whole} == {
        TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING
    }  # fmt: skip
    found = light.read(study)
    assert budget.may_ask(found, 7) == budget.may_ask(whole, 7)
    assert budget.left(found, 7) == budget.left(whole, 7)
    assert budget.retried(found) == budget.retried(whole) == {5}
    assert [budget.within_budget(found, n, 4) for n in range(7)] == [
        budget.within_budget(whole, n, 4) for n in range(7)
    ]


def test_only_unfinished_and_newly_finished_rows_are_read_again(study):
    light = LightTrials(*KEYS)
    light.read(study)
    assert light.rows_read == 7  # all, once
    light.read(study)
    # above the floor (trial 2): the two running, the failed one above them, the waiting one
    assert light.rows_read == 7 + 4
    study.tell(3, 0.5)  # the first running one finishes: the floor moves past it
    assert [t.state for t in light.read(study)][3] == TrialState.COMPLETE
    assert light.rows_read == 7 + 4 + 4
    light.read(study)
    assert light.rows_read == 7 + 4 + 4 + 3


def test_a_trial_committed_late_under_the_floor_is_seen(study):
    # A trial whose INSERT took its id before the floor passed it and committed after:
    # hidden here by moving its row to another study while the reader reads, then back.
    import sqlalchemy

    engine = study._storage._backend.engine
    hidden = study.get_trials(deepcopy=False)[1]._trial_id
    other_id = optuna.create_study(storage=study._storage)._study_id

    def move(study_id: int) -> None:
        with engine.begin() as connection:
            connection.execute(
                sqlalchemy.text("UPDATE trials SET study_id = :s WHERE trial_id = :t"),
                {"s": study_id, "t": hidden},
            )

    move(other_id)
    light = LightTrials(*KEYS)
    assert 1 not in [t.number for t in light.read(study)]
    move(study._study_id)
    assert [t.number for t in light.read(study)] == list(range(7))


def test_a_connection_lost_while_reading_falls_back_to_the_storages_read(study, monkeypatch):
    # The light rows' queries are not the storage's (no retry): a server restart between
    # two of them must not crash the worker (the storage's own read waits for the server).
    import sqlalchemy

    def lost(*args, **kwargs):
        raise sqlalchemy.exc.OperationalError(
            "SELECT", {}, Exception("server closed the connection unexpectedly")
        )

    light = LightTrials(*KEYS)
    monkeypatch.setattr(light, "_above", lost)
    assert light.read(study) == study.get_trials(deepcopy=False)


def test_a_journal_study_is_read_as_it_is(memory_path):
    study = optuna.create_study(storage=open_storage(str(memory_path / "j.journal"), memory_path))
    study.ask()
    assert attempts.light_trials(study) == study.get_trials(deepcopy=False)


class _Runner:
    def run(self, trial: optuna.Trial) -> TrialOutcome:
        trial.suggest_float("x", 0, 1)
        return TrialOutcome(
            number=trial.number, state=COMPLETE, value=0.5, best_epoch=1, epochs_run=1,
            stop_reason="completed", error=None, checkpoint=None, duration_s=0.0,
            n_params=1, seed=0, lr_schedule="none",
        )  # fmt: skip


class _Sink:
    def started(self, number: int) -> None: ...

    def epoch(self, number: int, epoch: int, value: float | None) -> None: ...

    def finished(self, outcome: TrialOutcome) -> None: ...


def test_the_loop_reads_no_running_trial_whole_for_its_budget(memory_path, monkeypatch):
    # Every whole read of a database study loads every running trial again (Optuna's
    # cache): per trial, the loop's budget checks made two of them, before the sampler's
    # own (one in ask for a waiting trial, one for the sampler): now none, and not ask's
    # look for a waiting trial either (the light rows say whether one is queued).
    storage = open_storage(f"sqlite:///{memory_path}/l.db", memory_path)
    study = optuna.create_study(storage=storage, study_name="l", direction="maximize")
    whole = []
    real = type(study._storage).get_all_trials

    def counting(self, study_id, deepcopy=True, states=None):
        whole.append(states)
        return real(self, study_id, deepcopy, states)

    monkeypatch.setattr(type(study._storage), "get_all_trials", counting)
    assert loop.run_trials(study, _Runner(), Limits(n_trials=4), _Sink(), seed=0) == "budget"
    assert whole == [None] * 4  # per trial: the sampler's read alone
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == 4
