"""The promotion pruner and its scheduling (pause, find, claim, continue) with a fake runner
that resumes as a backup would: no Keras, real Optuna studies (in memory and on a journal
file shared by two storage handles, as two processes would), milliseconds per test."""

from __future__ import annotations

import subprocess
import sys
import threading

import optuna
import pytest
from optuna.trial import TrialState

from tunecb.execution._base import STOP_BUDGET, Limits
from tunecb.execution.loop import run_trials
from tunecb.oracle import attrs, budget, promotions
from tunecb.oracle.outcome import COMPLETE, PRUNED, TrialOutcome
from tunecb.study.promotion import PromotionPruner, promotable, rung_values
from tunecb.study.samplers_pruners import make_pruner

optuna.logging.set_verbosity(optuna.logging.WARNING)

EPOCHS = 9


class ResumingRunner:
    """A model whose monitored value is its parameter ``x`` at every epoch (minimised). A
    continuation re-reports the paused attempt's curve (as :func:`backup.restore` does) and
    goes on from its last epoch; each epoch trained is logged as ``(configuration, epoch)``."""

    def __init__(self) -> None:
        self.trained: list[tuple[int, int]] = []

    def run(self, trial: optuna.Trial) -> TrialOutcome:
        x = trial.suggest_float("x", 0.0, 1.0)
        system = trial.storage.get_trial_system_attrs(trial._trial_id)
        history = system.get(attrs.RETRY_HISTORY) or []
        first = history[0] if history else trial.number
        start = 0
        if attrs.PROMOTED_FROM in system:
            paused = trial.study.get_trials(deepcopy=False)[system[attrs.PROMOTED_FROM]]
            start = paused.last_step
            for step, value in paused.intermediate_values.items():
                trial.report(value, step)
        for epoch in range(start + 1, EPOCHS + 1):
            self.trained.append((first, epoch))
            trial.report(x, epoch)
            if trial.should_prune():
                trial.set_user_attr(attrs.STOP_REASON, attrs.PAUSED)  # as the runner records
                return outcome(trial.number, PRUNED, attrs.PAUSED, x, epoch)
        trial.set_user_attr(attrs.STOP_REASON, attrs.COMPLETED)
        return outcome(trial.number, COMPLETE, attrs.COMPLETED, x, EPOCHS)


def outcome(number: int, state: str, reason: str, x: float, epochs: int) -> TrialOutcome:
    return TrialOutcome(
        number=number, state=state, value=x, best_epoch=1, epochs_run=epochs,
        stop_reason=reason, error=None, checkpoint=None, duration_s=0.0, n_params=1, seed=0,
        lr_schedule="none",
    )  # fmt: skip


class Sink:
    def started(self, number: int) -> None: ...
    def epoch(self, number: int, epoch: int, value: float | None) -> None: ...
    def finished(self, result: TrialOutcome) -> None: ...


def new_study(storage=None, name="s") -> optuna.Study:
    return optuna.create_study(
        study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(0),
        pruner=PromotionPruner(1, EPOCHS),
    )  # fmt: skip


def test_rungs_follow_a_tenth_of_the_budget_times_three():
    assert make_pruner("promotion", 30).rungs == (3, 9, 27)
    assert make_pruner("promotion", 9).rungs == (1, 3)
    assert make_pruner("promotion", 3).rungs == (1,)


def test_promotable_means_the_top_third_of_the_configurations_at_the_rung():
    assert not promotable(0.1, [0.1, 0.2])  # fewer than three: nobody yet
    assert promotable(0.1, [0.3, 0.1, 0.2]) and not promotable(0.2, [0.3, 0.1, 0.2])
    assert promotable(0.9, [0.9, 0.1, 0.2], maximize=True)
    assert [promotable(v, list(range(6))) for v in range(6)] == [True, True] + [False] * 4


def test_a_configuration_counts_once_at_a_rung_however_many_attempts_it_took():
    first = optuna.trial.create_trial(state=TrialState.PRUNED, intermediate_values={1: 0.5})
    again = optuna.trial.create_trial(
        state=TrialState.RUNNING, intermediate_values={1: 0.5, 2: 0.4},
        system_attrs={attrs.RETRY_HISTORY: [0]},
    )  # fmt: skip
    first.number, again.number = 0, 1
    assert rung_values([first, again], 1, maximize=False) == {0: 0.5}


def test_the_best_are_promoted_from_their_backups_and_n_trials_counts_configurations():
    study, runner = new_study(), ResumingRunner()
    reason = run_trials(study, runner, Limits(n_trials=9), Sink(), seed=0)
    assert reason == STOP_BUDGET
    trials = study.get_trials(deepcopy=False)
    assert budget.finished(trials) == 9  # configurations, not attempts
    assert len({promotions_config(t) for t in trials}) == 9
    # No epoch is trained twice; every configuration trained to rung 1 at least.
    assert len(runner.trained) == len(set(runner.trained))
    xs = {promotions_config(t): t.params["x"] for t in trials}
    epochs = {c: max(e for k, e in runner.trained if k == c) for c in xs}
    assert min(epochs.values()) >= 1
    # The best configuration trained to the end; the worst three never went past rung 1.
    ranked = sorted(xs, key=xs.get)
    assert epochs[ranked[0]] == EPOCHS
    assert all(epochs[c] == 1 for c in ranked[-3:])
    # Fewer epochs than training all nine to the end, and nothing promotable is left.
    assert len(runner.trained) < 9 * EPOCHS / 2
    side = promotions._side_id(study, create=False)
    tickets = study._storage.get_all_trials(side, deepcopy=False)
    by_number = {t.number: t for t in trials}
    assert not promotions.promotable(study, tickets, by_number, trials, last=True)
    # Each paused attempt was continued at most once, as a trial resuming it.
    continued = [t.system_attrs[attrs.PROMOTED_FROM] for t in trials
                 if attrs.PROMOTED_FROM in t.system_attrs]  # fmt: skip
    assert continued and len(continued) == len(set(continued))
    for t in trials:
        if t.number in continued:
            assert (t.state, t.user_attrs[attrs.STOP_REASON]) == (TrialState.PRUNED, attrs.PAUSED)


def promotions_config(trial) -> int:
    history = trial.system_attrs.get(attrs.RETRY_HISTORY) or []
    return history[0] if history else trial.number


def paused_study(
    storage=None, xs: tuple[float, ...] = (0.1, 0.5, 0.9)
) -> tuple[optuna.Study, int]:
    """Configurations paused at rung 1 with values ``xs`` (by default three: the best,
    x=0.1, trial 0, is promotable)."""
    study = new_study(storage)
    for x in xs:
        study.enqueue_trial({"x": x})
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.report(x, 1)
        trial.set_user_attr(attrs.STOP_REASON, attrs.PAUSED)
        promotions.pause(study, trial.number, 1)
        study.tell(trial, state=TrialState.PRUNED)
    return study, 0


def test_two_workers_on_one_journal_file_claim_a_paused_trial_once(tmp_path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = str(tmp_path / "journal.log")
    study_a, best = paused_study(JournalStorage(JournalFileBackend(path)))
    study_b = optuna.load_study(
        study_name="s", storage=JournalStorage(JournalFileBackend(path)),
        pruner=PromotionPruner(1, EPOCHS),
    )  # fmt: skip
    side = promotions._side_id(study_a, create=False)
    ticket = study_a._storage.get_all_trials(side)[0]
    # Both saw it WAITING; the compare-and-set lets exactly one through.
    assert promotions._claim(study_a._storage, ticket._trial_id, "a:1") is True
    assert promotions._claim(study_b._storage, ticket._trial_id, "b:2") is False


def test_racing_workers_make_one_continuation_per_paused_trial(tmp_path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = str(tmp_path / "journal.log")
    paused_study(JournalStorage(JournalFileBackend(path)))
    studies = [
        optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(path)),
                          pruner=PromotionPruner(1, EPOCHS))
        for _ in range(4)
    ]  # fmt: skip
    barrier, got = threading.Barrier(4), []

    def worker(study):
        barrier.wait()
        got.append(promotions.next_continuation(study, attrs.worker_id()))

    threads = [threading.Thread(target=worker, args=(s,)) for s in studies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    made = [t for t in got if t is not None]
    assert len(made) == 1
    trials = studies[0].get_trials(deepcopy=False)
    continuation = trials[made[0].number]
    assert continuation.state == TrialState.RUNNING
    assert continuation.params == {"x": 0.1}
    assert continuation.system_attrs[attrs.RETRY_HISTORY] == [0]
    assert continuation.system_attrs[attrs.PROMOTED_FROM] == 0
    assert budget.finished(trials) == 2 and budget.left(trials, 3) == 0  # 3 configurations


def test_a_claim_whose_process_died_before_it_continued_is_released():
    study, best = paused_study()
    side = promotions._side_id(study, create=False)
    ticket = study._storage.get_all_trials(side)[0]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert promotions._claim(study._storage, ticket._trial_id, attrs.worker_id(dead.pid))
    # the claimer's start token is ours; a dead pid is what makes it gone
    trial = promotions.next_continuation(study, attrs.worker_id())
    assert trial is not None and trial.params == {"x": 0.1}
    states = [t.state for t in study._storage.get_all_trials(side)]
    assert states.count(TrialState.FAIL) == 1 and states.count(TrialState.COMPLETE) == 1


class FullOnce(optuna.storages.InMemoryStorage):
    """An in-memory storage whose disk is full for the next continuation it creates."""

    full = False

    def create_new_trial(self, study_id, template_trial=None):
        if self.full and template_trial is not None and template_trial.state == TrialState.RUNNING:
            self.full = False
            raise OSError(28, "No space left on device")
        return super().create_new_trial(study_id, template_trial)


def test_a_claim_this_process_left_when_its_search_ended_is_released():
    """A search of this process claimed the ticket, then ended before its continuation (a
    full disk): its pid lives on (a notebook's kernel), but nothing of it makes that
    continuation any more; the next search releases the ticket and continues the trial."""
    storage = FullOnce()
    study, best = paused_study(storage)
    storage.full = True
    with pytest.raises(OSError, match="No space"):
        promotions.next_continuation(study, attrs.worker_id())
    side = promotions._side_id(study, create=False)
    assert [t.state for t in storage.get_all_trials(side)].count(TrialState.RUNNING) == 1
    trial = promotions.next_continuation(study, attrs.worker_id())
    assert trial is not None and trial.params == {"x": 0.1}
    states = [t.state for t in storage.get_all_trials(side)]
    assert states.count(TrialState.FAIL) == 1 and states.count(TrialState.COMPLETE) == 1


def test_a_claim_a_search_of_this_process_is_making_its_continuation_of_stays_claimed():
    """Another thread of this process (a Dask worker's) claimed it a moment ago."""
    from tunecb.oracle import attempts

    study, best = paused_study()
    side = promotions._side_id(study, create=False)
    ticket = study._storage.get_all_trials(side)[0]
    with attempts.running_here(study._storage, ticket._trial_id):
        assert promotions._claim(study._storage, ticket._trial_id, attrs.worker_id())
        assert promotions.next_continuation(study, attrs.worker_id()) is None
    assert study._storage.get_trial(ticket._trial_id).state == TrialState.RUNNING


def test_paused_is_a_stop_reason_of_its_own_not_a_crash():
    assert attrs.PAUSED == "paused" and attrs.PAUSED in attrs.STOP_REASONS
    assert attrs.PAUSED not in attrs.NOT_COUNTED
    paused = outcome(3, PRUNED, attrs.PAUSED, 0.5, 1)
    assert paused.tally == "PAUSED"  # the run's summary says "paused", fail-fast ignores it


@pytest.mark.parametrize("name", ["digits", "a:b"])
def test_side_studies_are_named_after_their_study(name):
    assert promotions.is_side(promotions.side_name(name)) and not promotions.is_side(name)


def test_a_search_too_small_to_fill_the_rungs_still_trains_its_best_to_the_end():
    # Four configurations: one reaches rung 3 alone. Once the budget is spent, the best
    # paused configuration of each rung is promoted even where fewer than eta reached it.
    study, runner = new_study(), ResumingRunner()
    assert run_trials(study, runner, Limits(n_trials=4), Sink(), seed=0) == STOP_BUDGET
    trials = study.get_trials(deepcopy=False)
    best = min(trials, key=lambda t: t.params["x"])
    assert (promotions_config(best), EPOCHS) in runner.trained
    assert budget.finished(trials) == 4
    assert len(runner.trained) == len(set(runner.trained))


def test_a_continuation_whose_worker_died_runs_again_as_the_same_continuation():
    from tunecb.oracle import attempts

    study, best = paused_study()
    continuation = promotions.next_continuation(study, attrs.worker_id())
    assert attempts.fail_and_requeue(study, continuation.number, attrs.WORKER_DIED, "killed")
    runner = ResumingRunner()
    assert run_trials(study, runner, Limits(n_trials=3), Sink(), seed=0) == STOP_BUDGET
    trials = study.get_trials(deepcopy=False)
    rerun = trials[continuation.number + 1]
    assert rerun.system_attrs[attrs.PROMOTED_FROM] == best
    assert rerun.system_attrs[attrs.RETRY_HISTORY] == [best, continuation.number]
    assert rerun.user_attrs[attrs.STOP_REASON] == attrs.PAUSED  # at rung 3, then resumed
    assert (best, 1) not in runner.trained  # resumed after the rung, not from epoch 1
    assert sorted(e for c, e in runner.trained if c == best) == list(range(2, EPOCHS + 1))
    assert budget.finished(trials) == 3
    assert promotions.segments(trials)[trials[-1].number] == f"1→3→{EPOCHS}"


def test_keep_checkpoints_spares_a_paused_trial_until_its_continuation_ends():
    from tunecb.oracle.retention import removable

    study, best = paused_study()  # three paused; keep 1: none may go while paused
    trials = study.get_trials(deepcopy=False)
    assert removable(trials, maximize=False, keep=1) == []
    runner = ResumingRunner()
    run_trials(study, runner, Limits(n_trials=3), Sink(), seed=0)
    trials = study.get_trials(deepcopy=False)
    # The resumed one's paused attempts may go now (their continuation has its files); the
    # two still paused stay for a later, larger run.
    gone = removable(trials, maximize=False, keep=1)
    still = {t.number for t in trials if t.number not in promotions.continued(trials)
             and t.user_attrs.get(attrs.STOP_REASON) == attrs.PAUSED}  # fmt: skip
    assert gone and best in gone and not still & set(gone)


def test_a_worker_resumes_only_configurations_whose_backup_it_sees():
    # Machines with results folders of their own: the backup is on the machine that paused.
    study, best = paused_study()
    assert promotions.next_continuation(study, "m:1", resumable=lambda first: False) is None
    trial = promotions.next_continuation(study, "m:1", resumable=lambda first: first == best)
    assert trial is not None and trial.params == {"x": 0.1}


def test_a_worker_resumes_the_configurations_it_keeps_in_memory_first():
    # Six paused at rung 1: the top two (x=0.1, trial 0; x=0.2, trial 1) are promotable.
    study, _ = paused_study(xs=(0.1, 0.2, 0.5, 0.6, 0.8, 0.9))
    held = {1, 4}  # trial 4 (x=0.8) is kept too, but not promotable
    first = promotions.next_continuation(study, "m:1", held=held.__contains__)
    second = promotions.next_continuation(study, "m:1", held=held.__contains__)
    assert first.params == {"x": 0.2} and second.params == {"x": 0.1}
    assert promotions.next_continuation(study, "m:1", held=held.__contains__) is None


@pytest.mark.parametrize("stopping_anyway", [False, True])
def test_the_pruning_callback_pauses_unless_the_fit_stops_there_anyway(stopping_anyway):
    from types import SimpleNamespace

    from tunecb.training.callbacks import OptunaPruning

    saved = []
    trial = SimpleNamespace(
        study=SimpleNamespace(pruner=PromotionPruner(1, EPOCHS)),
        report=lambda value, step: None, should_prune=lambda: True,
    )  # fmt: skip
    pruning = OptunaPruning(trial, "val_loss")
    pruning.on_pause = saved.append
    model = SimpleNamespace(stop_training=stopping_anyway)  # early stopping said stop
    pruning.set_model(model)
    pruning.on_epoch_end(0, {"val_loss": 0.5})
    if stopping_anyway:  # early stopped (or NaN): it ends here, nothing to resume
        assert (pruning.paused, pruning.pruned_at, saved) == (False, None, [])
    else:  # paused: the backup is written now, before on_train_end restores best weights
        assert (pruning.paused, pruning.pruned_at, saved) == (True, 1, [1])
        assert model.stop_training
