"""Workers ride out a real PostgreSQL restart (tests/pgfixture.py: the server stopped at once,
as a crash or a failover cuts every connection, kept down, started again), and a worker whose
reconnect window ends first stops in one line and leaves its trial to recovery (issue 24:
at 200 workers, 49 workers gave up after the earlier 20 s window).

Each worker is a real process running tunecb's real trial loop against the real server, with
a stand-in for training (a report and a pruning decision per epoch, a heartbeat). No Keras."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from tunecb.execution._base import Limits
from tunecb.oracle import attrs, budget, pruning
from tunecb.oracle.outcome import COMPLETE, TrialOutcome

optuna.logging.set_verbosity(optuna.logging.WARNING)

EPOCHS, EPOCH_S, HEARTBEAT_S, TRIALS = 6, 0.15, 1, 3  # grace: 3 heartbeats, 3 s
DOWN_S = 2.5  # at least; and until the impatient worker gave up (its window: 1 s)


class StandIn:
    """A trial without Keras: a report and a pruning decision per epoch, until the test has
    restarted the server (``released`` exists): each worker's first trial runs across the
    outage by construction, however slow a loaded machine makes the test's stop and start
    (a fixed trial length once let a worker end its trials before the stop, and wait idle
    through the outage: no trial of the impatient worker to lose)."""

    def __init__(self, busy: Path, released: Path) -> None:
        self.busy, self.released = busy, released

    def run(self, trial: optuna.Trial) -> TrialOutcome:
        self.busy.write_text(str(trial.number))  # the test restarts the server mid-trial
        x = trial.suggest_float("x", 0.0, 1.0)
        epoch = 0
        while epoch < EPOCHS or not self.released.exists():
            epoch += 1
            time.sleep(EPOCH_S)
            trial.report(x * epoch, step=epoch)
            pruning.should_prune(trial)
        return TrialOutcome(
            number=trial.number, state=COMPLETE, value=x * epoch, best_epoch=epoch,
            epochs_run=epoch, stop_reason="completed", error=None, checkpoint=None,
            duration_s=epoch * EPOCH_S, n_params=1, seed=0, lr_schedule="none",
        )  # fmt: skip


class Sink:
    def started(self, number: int) -> None: ...

    def epoch(self, number: int, epoch: int, value: float | None) -> None: ...

    def finished(self, outcome: TrialOutcome) -> None: ...


def _worker(url: str, name: str, window_s: float | None, out: Path) -> None:
    """A forked worker: the loop until the budget is spent; writes why it stopped, or the
    one line a worker process sends when it fails (exit 1)."""
    from tunecb.execution.loop import run_trials
    from tunecb.oracle.attempts import recover_dead_trials
    from tunecb.storage.failures import describe
    from tunecb.storage.reconnect import ReconnectingRDBStorage
    from tunecb.storage.urls import study_storage

    if window_s is not None:  # in this process only
        ReconnectingRDBStorage.reconnect_s = window_s
    try:
        storage = study_storage(url, out.parent, HEARTBEAT_S)
        study = optuna.load_study(study_name=name, storage=storage)
        recover_dead_trials(study)
        runner = StandIn(Path(f"{out}.busy"), out.parent / "released")
        reason = run_trials(study, runner, Limits(TRIALS), Sink(), 0)
        out.write_text(reason)
        code = 0
    except BaseException as exc:
        out.write_text(describe(exc))
        code = 1
    os._exit(code)


def test_workers_ride_out_a_database_restart_and_one_that_gives_up_loses_nothing(
    postgres_server, postgres_url, tmp_path
):
    from tunecb.storage.urls import open_storage

    name = postgres_url.rsplit("/", 1)[1]
    with postgres_server.connect() as conn, conn.cursor() as cursor:
        # no commit acknowledged before it is in the WAL, as on a production server (the
        # test server runs without, for speed: its immediate stop lost acknowledged writes)
        cursor.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = on')
    storage = open_storage(postgres_url, tmp_path)
    optuna.create_study(study_name="restart", storage=storage, direction="maximize")
    storage.engine.dispose()  # no connection crosses the fork
    context = multiprocessing.get_context("forkserver")  # single-threaded, unlike pytest's
    outs = {"patient": tmp_path / "patient.txt", "impatient": tmp_path / "impatient.txt"}
    windows = {"patient": None, "impatient": 1.0}  # None: tunecb's own window
    workers = {
        who: context.Process(target=_worker, args=(postgres_url, "restart", windows[who], out))
        for who, out in outs.items()
    }
    cluster = postgres_server.cluster
    try:
        for worker in workers.values():
            worker.start()
        deadline = time.monotonic() + 60
        while not all(Path(f"{out}.busy").exists() for out in outs.values()):
            assert time.monotonic() < deadline, "the workers never started a trial"
            time.sleep(0.05)
        time.sleep(2 * EPOCH_S)  # mid-trial: reports and heartbeats in flight
        assert cluster.stop() == 0  # every connection cut
        down = time.monotonic()
        workers["impatient"].join(60)  # down until its window ended, however late it looked
        time.sleep(max(0.0, down + DOWN_S - time.monotonic()))
        assert cluster.start() == 0
        (tmp_path / "released").touch()  # the trials held across the outage may end
        for worker in workers.values():
            worker.join(90)
    finally:
        if cluster.ctl("status") != 0:  # the other tests need it
            cluster.start()
        for worker in workers.values():
            if worker.is_alive():
                worker.kill()
                worker.join()
    said = {who: out.read_text() for who, out in outs.items()}
    assert workers["patient"].exitcode == 0 and said["patient"] == "budget", said
    assert workers["impatient"].exitcode == 1, said
    assert said["impatient"].startswith("the storage failed during the search: "), said
    assert "\n" not in said["impatient"]

    study = optuna.load_study(study_name="restart", storage=open_storage(postgres_url, tmp_path))
    trials = study.get_trials(deepcopy=False)
    again = budget.retried(trials)
    counted = [t for t in trials if t.state in attrs.FINISHED and budget.counts(t, again)]
    assert len(counted) == TRIALS == budget.finished(trials)
    assert len({t.params["x"] for t in counted}) == TRIALS  # none ran twice
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # The one trial not finished is the impatient worker's, failed for its worker and run
    # again; no trial of the patient one was taken for dead after the outage.
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and failed[0].number in again, [
        (t.number, t.state.name, t.user_attrs) for t in trials
    ]
    impatient = workers["impatient"].pid
    assert failed[0].user_attrs[attrs.WORKER].endswith(f":{impatient}")
