"""A rerun takes its attempt's place in the budget, never a place behind the trials asked
after that attempt (issue 24: with 200 workers on PostgreSQL, 8 configurations ended FAIL for
good, failed as stale or dead with their rerun queued; a trial asked while the attempt still
ran passed the budget check once the attempt was failed, and the rerun, numbered after it,
was then discarded as past the budget: the attempt counted as a FAIL).

In-memory studies and the real loop with a fake runner: the rule needs no fit."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from tunecb.execution import loop
from tunecb.execution._base import Limits
from tunecb.oracle import attempts, attrs, budget
from tunecb.oracle.outcome import COMPLETE, TrialOutcome
from tunecb.storage import stale

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _asked(study: optuna.Study) -> optuna.Trial:
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    return trial


def _race(n_trials: int = 2) -> tuple[optuna.Study, optuna.Trial, optuna.Trial, int]:
    """A study of budget ``n_trials``: one trial done, attempt X RUNNING (its worker dead),
    a racer T asked by another worker while X ran (past the budget then), and X's rerun R
    queued and X failed by a recoverer before T's worker checked the budget."""
    study = optuna.create_study()
    done = _asked(study)
    study.tell(done, 1.0)
    x = _asked(study)
    t = _asked(study)  # asked while x still ran: the budget was full then
    rerun = attempts.fail_and_requeue(study, x.number, attrs.WORKER_DIED, "its process died")
    assert rerun
    r = study.trials[-1]
    assert r.state == TrialState.WAITING and stale.rerun_of(r.system_attrs) == x._trial_id
    return study, x, t, r.number


def test_a_rerun_keeps_its_attempts_place_in_the_budget():
    study, x, t, r = _race()
    trials = study.get_trials(deepcopy=False)
    assert budget.within_budget(trials, r, 2)  # the rerun holds x's place
    assert not budget.within_budget(trials, t.number, 2)  # the racer was past it, still is


def test_a_racer_is_discarded_and_the_rerun_runs_in_the_loop():
    study, x, t, r = _race()
    ran = []

    class Runner:
        def run(self, trial: optuna.Trial) -> TrialOutcome:
            trial.suggest_float("x", 0.0, 1.0)
            ran.append(trial.number)
            return TrialOutcome(
                number=trial.number, state=COMPLETE, value=0.5, best_epoch=1, epochs_run=1,
                stop_reason="completed", error=None, checkpoint=None, duration_s=0.0,
                n_params=None, seed=None, lr_schedule=None,
            )  # fmt: skip

    if not budget.within_budget(study.get_trials(deepcopy=False), t.number, 2):
        attempts.discard(study, t)  # the racer's worker checks after the rerun was queued
    else:
        study.tell(t, 0.1)  # ... and ran it: the rerun is then past the budget
    loop.run_trials(study, Runner(), Limits(n_trials=2), _Sink(), seed=0)
    trials = study.get_trials(deepcopy=False)
    assert ran == [r]  # the rerun ran, nothing else
    assert budget.finished(trials) == 2
    again = budget.retried(trials)
    counted = [s for s in trials if s.state in attrs.FINISHED and budget.counts(s, again)]
    assert [s.state for s in counted] == [TrialState.COMPLETE] * 2  # no FAIL counts


def test_two_copies_of_one_rerun_hold_one_place():
    """Two recoverers queued a copy each (a pending claim taken over, or a journal of an
    older tunecb): until the second is discarded, both are WAITING, but they hold one place."""
    study = optuna.create_study()
    for _ in range(2):
        done = _asked(study)
        study.tell(done, 1.0)
    x = _asked(study)
    attempts.fail_and_requeue(study, x.number, attrs.WORKER_DIED, "died")
    stale.copy(study, study.trials[x.number])  # a second copy, not claimed
    new = study._storage.create_new_trial(study._study_id)  # asked now, a new configuration
    trials = study.get_trials(deepcopy=False)
    number = next(s.number for s in trials if s._trial_id == new)
    assert budget.within_budget(trials, number, 4)  # 2 done + x's place: the 4th is free
    assert not budget.within_budget(trials, number, 3)


class _Sink:
    finished_trials = 0

    def started(self, number: int) -> None: ...

    def epoch(self, number: int, epoch: int, value: float | None) -> None: ...

    def finished(self, outcome: TrialOutcome) -> None: ...
