"""A trial failed for a reason not its own (a dead worker, a stale heartbeat) runs again
exactly once, whatever stops its recoverer and however many recoverers find it (issue 24:
with 200 workers on PostgreSQL, a worker killed between failing a stale trial and queueing
its rerun lost that rerun; a sweep that queued the lost ones queued one attempt 175 times).

Real storages: a journal file and a real PostgreSQL server (tests/pgfixture.py); the
recoverer is a real process, SIGKILLed right after each of its writes in turn. No Keras."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tunecb.oracle import attempts, attrs, budget
from tunecb.storage import stale
from tunecb.storage.urls import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)

WRITES = ("create_new_trial", "set_trial_state_values", "set_trial_user_attr",
          "set_trial_system_attr")  # fmt: skip
KILL_POINTS = range(1, 8)  # after the 1st .. 7th write (a recovery writes at most 6)


@pytest.fixture(params=["journal", "postgresql"])
def url(request, tmp_path: Path) -> str:
    if request.param == "journal":
        return str(tmp_path / "journal.log")
    return request.getfixturevalue("postgres_url")


def _open(url: str, tmp_path: Path, name: str, heartbeat: bool = False) -> optuna.Study:
    beat = {"heartbeat_interval": 1, "grace_period": 1} if heartbeat else {}
    storage = open_storage(url, tmp_path, **beat)
    return optuna.load_study(study_name=name, storage=storage)


def _attempt(url: str, tmp_path: Path, name: str) -> optuna.trial.FrozenTrial:
    """A RUNNING trial whose worker is gone (claimed by a process that does not exist)."""
    study = optuna.create_study(study_name=name, storage=open_storage(url, tmp_path))
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    trial.set_user_attr(attrs.WORKER, "elsewhere:4242")
    return study.trials[0]


def _recover_then_die(
    url: str, tmp_path: Path, name: str, kind: str, kill_after: int, pending_s: float
) -> None:
    """A recoverer (a forked process) SIGKILLed right after its ``kill_after``-th write."""
    stale.PENDING_S = pending_s  # the test's setting (a child of the fork server)
    study = _open(url, tmp_path, name, heartbeat=kind == "stale")
    writes = [0]

    def counted(method):
        def call(*args, **kwargs):
            result = method(*args, **kwargs)
            writes[0] += 1
            if writes[0] == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        return call

    for method in WRITES:
        setattr(study._storage, method, counted(getattr(study._storage, method)))
    stale._write = counted(stale._write)
    if kind == "stale":
        attempts.fail_stale_trials(study)
    else:
        attempts.fail_and_requeue(study, 0, attrs.WORKER_DIED, "its process is gone")
    os._exit(0)  # not pytest's exit (no flush of its output a second time)


def _next_worker(study: optuna.Study, kind: str) -> None:
    """What the other workers do next: recover what is still RUNNING, then run every
    WAITING trial that is due (the loop's check) and discard the others."""
    if kind == "stale":
        attempts.fail_stale_trials(study)
    elif study.trials[0].state == TrialState.RUNNING:
        attempts.fail_and_requeue(study, 0, attrs.WORKER_DIED, "its process is gone")
    while (trial_id := study._pop_waiting_trial_id()) is not None:
        trial = optuna.Trial(study, trial_id)
        if attempts.rerun_due(study, trial):
            study.tell(trial, 1.0)
        else:
            attempts.discard(study, trial)


def _ran_once(study: optuna.Study) -> None:
    trials = study.get_trials(deepcopy=False)
    first = trials[0]
    ran = [t for t in trials if t.params == first.params and t.state == TrialState.COMPLETE]
    assert first.state == TrialState.FAIL
    assert len(ran) == 1, [(t.number, t.state.name, t.user_attrs) for t in trials]
    assert budget.finished(trials) == 1  # the rerun counts, the failed attempt does not
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def _killed_at_each_write(url: str, tmp_path: Path, kind: str) -> None:
    names = [f"{kind}-{k}" for k in KILL_POINTS]
    for name in names:
        _attempt(url, tmp_path, name)
    if kind == "stale":
        for name in names:
            study = _open(url, tmp_path, name, heartbeat=True)
            study._storage.record_heartbeat(study.trials[0]._trial_id)
        time.sleep(1.2)  # one missed beat with a grace of 1 s: every attempt is stale
    # forked from a fork server: a single-threaded process (forking pytest's own process,
    # with whatever threads earlier tests left in it, crashed a child with SIGSEGV once)
    context = multiprocessing.get_context("forkserver")
    for k, name in zip(KILL_POINTS, names, strict=True):
        args = (url, tmp_path, name, kind, k, stale.PENDING_S)
        child = context.Process(target=_recover_then_die, args=args)
        child.start()
        child.join(60)
        assert child.exitcode in (0, -signal.SIGKILL), (k, child.exitcode)
        study = _open(url, tmp_path, name, heartbeat=kind == "stale")  # a fresh process's view
        _next_worker(study, kind)
        _ran_once(study)


def test_a_dead_trial_reruns_once_whichever_write_its_recoverer_was_killed_after(
    url, tmp_path, monkeypatch
):
    monkeypatch.setattr(stale, "PENDING_S", 0.0)
    _killed_at_each_write(url, tmp_path, "dead")


def test_a_stale_trial_reruns_once_whichever_write_its_recoverer_was_killed_after(
    postgres_url, tmp_path, monkeypatch
):
    monkeypatch.setattr(stale, "PENDING_S", 0.0)
    _killed_at_each_write(postgres_url, tmp_path, "stale")


def _two_copies(study: optuna.Study) -> tuple[int, int]:
    """Two recoverers found the attempt at once: each queued a copy, one holds the claim
    (the other took over a claim it found pending too long, or read before the first
    wrote: on the journal)."""
    attempt = study.trials[0]
    first = stale.queue(study, attempt)
    second = stale.copy(study, attempt, token="another recoverer's")._trial_id
    assert stale.queue(study, attempt) == first
    return first, second


@pytest.mark.parametrize("popped", ["claimed first", "second copy first"])
def test_of_two_copies_queued_by_two_recoverers_only_the_claimed_one_runs(url, tmp_path, popped):
    _attempt(url, tmp_path, "race")
    study = _open(url, tmp_path, "race")
    first, second = _two_copies(study)
    assert attempts.fail_and_requeue(study, 0, attrs.WORKER_DIED, "its process is gone")
    order = [first, second] if popped == "claimed first" else [second, first]
    due = []
    for trial_id in order:
        assert study._storage.set_trial_state_values(trial_id, TrialState.RUNNING)  # popped
        trial = optuna.Trial(study, trial_id)
        due.append(attempts.rerun_due(study, trial))
        study.tell(trial, 1.0) if due[-1] else attempts.discard(study, trial)
    assert due == [trial_id == first for trial_id in order]
    _ran_once(_open(url, tmp_path, "race"))


def test_a_rerun_is_dropped_when_its_attempt_finishes_by_itself(monkeypatch):
    """A live worker's trial judged stale (its heartbeat came late) that it tells between
    the recoverer's two steps: the attempt counts, its rerun is discarded, popped or not."""
    study = optuna.create_study()
    live = study.ask()
    live.suggest_float("x", 0.0, 1.0)
    queue = stale.queue

    def queued_then_told(study_, attempt):
        rerun = queue(study_, attempt)
        study.tell(live, 0.5)  # the live worker, between the recoverer's two steps
        return rerun

    monkeypatch.setattr(stale, "queue", queued_then_told)
    assert attempts.fail_and_requeue(study, 0, attrs.WORKER_DIED, "stale") is False
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert trials[1].user_attrs[attrs.STOP_REASON] == attrs.DISCARDED
    assert budget.finished(trials) == 1 and budget.retried(trials) == set()

    study = optuna.create_study()  # the same, the rerun popped before the recoverer's drop
    live = study.ask()
    live.suggest_float("x", 0.0, 1.0)
    queue(study, study.trials[0])
    study.tell(live, 0.5)
    popped = study.ask()
    assert popped.params == live.params and not attempts.rerun_due(study, popped)


def test_a_second_copys_own_rerun_is_not_due(tmp_path):
    """A second copy popped by a worker killed before its check, recovered as dead: its
    rerun belongs to no claimed line of attempts."""
    url = str(tmp_path / "journal.log")
    _attempt(url, tmp_path, "chain")
    study = _open(url, tmp_path, "chain")
    first, second = _two_copies(study)
    assert attempts.fail_and_requeue(study, 0, attrs.WORKER_DIED, "its process is gone")
    assert study._storage.set_trial_state_values(second, TrialState.RUNNING)  # popped, then
    number = study._storage.get_trial(second).number  # its worker died before the check
    assert attempts.fail_and_requeue(study, number, attrs.WORKER_DIED, "its process is gone")
    reruns = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.WAITING]
    assert [stale.rerun_of(t.system_attrs) for t in reruns] == [0, second]  # trial ids
    for t in reruns:
        assert study._storage.set_trial_state_values(t._trial_id, TrialState.RUNNING)
    due = [attempts.rerun_due(study, optuna.Trial(study, t._trial_id)) for t in reruns]
    assert due == [True, False]


def test_two_recoverers_at_once_on_a_journal_queue_one_copy(tmp_path, monkeypatch):
    """Two processes (here two threads, each with the journal opened as a process opens it)
    find one dead trial at the same moment: the second reads the study while the first is
    between its read and its copy. Only one copy is queued, and both name it."""
    import threading

    url = str(tmp_path / "journal.log")
    _attempt(url, tmp_path, "both")
    first_read, second_done = threading.Event(), threading.Event()
    copy = stale.copy

    def slow_copy(study, attempt, token=None):
        if threading.current_thread().name == "first":
            first_read.set()  # it found no copy: now the second one looks
            second_done.wait(0.5)  # (it waits for the first, once the first holds a lock)
        return copy(study, attempt, token)

    monkeypatch.setattr(stale, "copy", slow_copy)
    found: dict[str, int | None] = {}

    def recover(name: str) -> None:
        study = _open(url, tmp_path, name="both")
        if name == "second":
            first_read.wait(10)
        found[name] = stale.queue(study, study.get_trials(deepcopy=False)[0])
        if name == "second":
            second_done.set()

    threads = [threading.Thread(target=recover, args=(n,), name=n) for n in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    study = _open(url, tmp_path, "both")
    copies = [t for t in study.get_trials(deepcopy=False) if stale.rerun_of(t.system_attrs) == 0]
    assert len(copies) == 1 and found["first"] == found["second"] == copies[0]._trial_id


def test_a_copy_popped_while_the_claim_is_pending_runs_whoever_queued_it(postgres_url, tmp_path):
    """Under load a copy took longer to commit than ``PENDING_S`` (create_new_trial's p50 was
    34 s at 200 workers): each recoverer's claim was taken over before its copy was popped,
    and every copy, its token no longer the pending one, was discarded, the attempt left
    RUNNING for ever (20 trials, a copy queued and discarded every ~30 s each). The first
    copy popped while the claim is pending takes it; a later one is discarded."""
    import json

    _attempt(postgres_url, tmp_path, "pending")
    study = _open(postgres_url, tmp_path, "pending")
    attempt = study.trials[0]
    backend = stale._database(study)
    late = stale.copy(study, attempt, token="a")._trial_id  # A's copy, A's claim taken over:
    taken = json.dumps({"pending": "b", "at": time.time()}, sort_keys=True)
    assert stale._write(backend, attempt._trial_id, None, taken)  # B's pending claim
    due = []
    for trial_id in (late, stale.copy(study, attempt, token="b")._trial_id):
        assert study._storage.set_trial_state_values(trial_id, TrialState.RUNNING)  # popped
        trial = optuna.Trial(study, trial_id)
        due.append(attempts.rerun_due(study, trial))
        study.tell(trial, 1.0) if due[-1] else attempts.discard(study, trial)
    assert due == [True, False]
    _ran_once(_open(postgres_url, tmp_path, "pending"))
