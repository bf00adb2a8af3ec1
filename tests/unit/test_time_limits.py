"""Per-trial and per-epoch time limits (issue 21) without a fit: the supervisor's clock that
decides when a stuck trial's worker is ended, the epoch-end stop of the trial's callback on
a stand-in model, and where in-process trials go when a limit is set."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tunecb.errors import StudyFileError
from tunecb.execution.choice import where_it_can_be_ended
from tunecb.execution.inline import InlineExecutor
from tunecb.execution.processes import ProcessExecutor
from tunecb.execution.timeouts import GRACE_S, TrialClock


def test_a_clock_without_limits_or_without_a_running_trial_never_ends_anything():
    clock = TrialClock(None, None)
    clock.start(0, now=0.0)
    assert clock.overdue(now=1e9) is None
    limited = TrialClock(1.0, 1.0)
    assert limited.overdue(now=1e9) is None  # nothing started
    limited.start(3, now=0.0)
    limited.stop()
    assert limited.overdue(now=1e9) is None


def test_a_trial_stuck_before_any_epoch_end_is_ended_after_the_limit_and_the_grace():
    clock = TrialClock(trial_timeout=3.0, epoch_timeout=None)
    clock.start(5, now=10.0)
    assert clock.overdue(now=10.0 + 3.0 + GRACE_S - 0.1) is None
    why = clock.overdue(now=10.0 + 3.0 + GRACE_S + 0.1)
    assert why is not None and "trial limit of 3 s" in why and "process was ended" in why


def test_a_trial_whose_epochs_still_end_gets_time_to_reach_the_next_epoch_end():
    """Long epochs (10 s): past the limit, the trial's own callback stops it at the next
    epoch end; the process is ended only when that end is two epochs late."""
    clock = TrialClock(trial_timeout=15.0, epoch_timeout=None)
    clock.start(0, now=0.0)
    clock.epoch(now=10.0)
    assert clock.overdue(now=15.0 + GRACE_S + 1.0) is None
    assert clock.overdue(now=15.0 + 2 * 10.0 + 0.1) is not None


def test_an_epoch_that_does_not_end_is_ended_after_the_epoch_limit_and_the_grace():
    clock = TrialClock(trial_timeout=None, epoch_timeout=2.0)
    clock.start(0, now=0.0)
    for end in (1.0, 2.5, 4.0):  # each epoch within its limit
        clock.epoch(now=end)
        assert clock.overdue(now=end) is None
    assert clock.overdue(now=4.0 + 2.0 + GRACE_S - 0.1) is None
    assert "epoch limit of 2 s" in clock.overdue(now=4.0 + 2.0 + GRACE_S + 0.1)


def _settings(trial_timeout=None, epoch_timeout=None):
    return SimpleNamespace(trial_timeout=trial_timeout, epoch_timeout=epoch_timeout)


def test_with_a_time_limit_in_process_trials_run_in_one_worker_process():
    loaded = SimpleNamespace(in_code=False)
    executor, notes = where_it_can_be_ended(InlineExecutor(), _settings(3.0), loaded)
    assert isinstance(executor, ProcessExecutor) and executor.jobs == 1
    assert notes == [
        "--trial-timeout: trials run one at a time in a worker process, where a trial stuck "
        "past its limit can be ended"
    ]
    executor, notes = where_it_can_be_ended(InlineExecutor(), _settings(None, 2.0), loaded)
    assert isinstance(executor, ProcessExecutor) and notes[0].startswith("--epoch-timeout:")


@pytest.mark.parametrize(
    "executor, settings",
    [(InlineExecutor(), _settings()), (ProcessExecutor(jobs=2), _settings(3.0))],
    ids=["no-limit", "already-in-workers"],
)
def test_without_a_limit_or_with_workers_nothing_moves(executor, settings):
    assert where_it_can_be_ended(executor, settings, SimpleNamespace(in_code=False)) == (
        executor, [],
    )  # fmt: skip


def test_a_study_that_cannot_travel_stays_here_and_says_what_the_limit_cannot_do():
    def portable():
        raise StudyFileError("its functions use a lock")

    loaded = SimpleNamespace(in_code=True, portable=portable)
    executor, notes = where_it_can_be_ended(InlineExecutor(), _settings(3.0), loaded)
    assert isinstance(executor, InlineExecutor)
    assert "not if stuck inside one (its functions use a lock)" in notes[0]


def test_the_callback_stops_the_fit_at_the_first_epoch_end_past_a_limit(monkeypatch):
    from tunecb.training import time_limit

    now = [100.0]
    monkeypatch.setattr(time_limit.time, "monotonic", lambda: now[0])
    limit = time_limit.TimeLimit(trial_timeout=3.0, epoch_timeout=None, started=100.0)
    limit.set_model(SimpleNamespace(stop_training=False))
    for epoch, end in enumerate((101.0, 102.5)):
        limit.on_epoch_begin(epoch)
        now[0] = end
        limit.on_epoch_end(epoch)
        assert limit.hit is None and not limit.model.stop_training
    limit.on_epoch_begin(2)
    now[0] = 104.0
    limit.on_epoch_end(2)
    assert limit.model.stop_training
    assert limit.hit == "trial limit of 3 s passed after epoch 3"


def test_the_callback_stops_after_an_epoch_longer_than_the_epoch_limit(monkeypatch):
    from tunecb.training import time_limit

    now = [0.0]
    monkeypatch.setattr(time_limit.time, "monotonic", lambda: now[0])
    limit = time_limit.TimeLimit(trial_timeout=None, epoch_timeout=2.0, started=0.0)
    limit.set_model(SimpleNamespace(stop_training=False))
    limit.on_epoch_begin(0)
    now[0] = 2.5
    limit.on_epoch_end(0)
    assert limit.model.stop_training and limit.hit.startswith("epoch limit of 2 s passed")


def test_a_new_worker_may_take_one_trials_limit_to_load_its_data():
    clock = TrialClock(trial_timeout=3.0, epoch_timeout=None)
    clock.loading(now=0.0)
    assert clock.overdue(now=3.0 + GRACE_S - 0.1) is None
    assert "the data function never returned?" in clock.overdue(now=3.0 + GRACE_S + 0.1)
    clock.start(0, now=4.0)  # its first trial started: the trial's own limit from now
    assert clock.overdue(now=4.0 + 3.0 + GRACE_S - 0.1) is None
    unlimited = TrialClock(None, None)
    unlimited.loading(now=0.0)
    assert unlimited.overdue(now=1e9) is None


def test_a_rerun_resumed_from_its_backup_counts_the_time_before_it(monkeypatch):
    """The backup keeps the time the trial had run; the rerun that resumes from it stops
    at its first epoch end past the limit, not after a whole new limit."""
    from tunecb.training import time_limit

    now = [100.0]
    monkeypatch.setattr(time_limit.time, "monotonic", lambda: now[0])
    first = time_limit.TimeLimit(trial_timeout=10.0, epoch_timeout=None, started=100.0)
    now[0] = 108.0  # its backup, after 8 s; then its worker died
    saved = first.get_state()
    assert saved == {"elapsed_s": 8.0}
    now[0] = 500.0  # the rerun, much later
    rerun = time_limit.TimeLimit(trial_timeout=10.0, epoch_timeout=None, started=500.0)
    rerun.set_model(SimpleNamespace(stop_training=False))
    rerun.set_state(saved)
    rerun.on_epoch_begin(4)
    now[0] = 501.5
    rerun.on_epoch_end(4)
    assert not rerun.model.stop_training  # 9.5 s in all
    rerun.on_epoch_begin(5)
    now[0] = 503.0
    rerun.on_epoch_end(5)
    assert rerun.model.stop_training
    assert rerun.hit == "trial limit of 10 s passed after epoch 6 (8.0 s of it in earlier attempts)"


def test_the_trials_backup_holds_the_time_limits_state():
    from pathlib import Path

    from tunecb.training.callbacks import (
        BestCheckpoint,
        EpochWatch,
        HistoryLog,
        OptunaPruning,
        TrialCallbacks,
    )
    from tunecb.training.time_limit import TimeLimit

    cbs = TrialCallbacks(EpochWatch("loss"), BestCheckpoint(Path("b"), "loss", False),
                         HistoryLog(Path("h")), OptunaPruning(None, "loss"))  # fmt: skip
    assert "time_limit" not in cbs.stateful()  # no limit: nothing to keep
    cbs.time_limit = TimeLimit(trial_timeout=5.0, epoch_timeout=None)
    assert cbs.stateful()["time_limit"] is cbs.time_limit


def test_a_worker_that_grows_past_its_memory_limit_mid_trial_stops_the_trial(monkeypatch):
    from tunecb.oracle import deaths
    from tunecb.training import memory_limit

    rss = [500.0]
    monkeypatch.setattr(memory_limit, "rss_of", lambda pid: rss[0])
    limit = memory_limit.MemoryLimit(limit_mb=1000.0)
    limit.on_train_begin()
    limit.on_epoch_end(0)  # within its limit: nothing
    rss[0] = 1200.0
    with pytest.raises(memory_limit.WorkerMemoryExceeded) as raised:
        limit.on_epoch_end(1)
    text = f"WorkerMemoryExceeded: {raised.value}"
    assert text == (
        "WorkerMemoryExceeded: the worker grew to 1200 MiB RSS by epoch 2, over "
        "--worker-memory 1000 MiB"
    )
    assert deaths.from_error(text).memory  # a memory death: run again once, then killed


def test_a_worker_above_its_limit_before_the_fit_leaves_the_trial_alone(monkeypatch):
    """Its data alone is that large: not the trial's doing (replaced after it, as before)."""
    from tunecb.training import memory_limit

    monkeypatch.setattr(memory_limit, "rss_of", lambda pid: 1500.0)
    limit = memory_limit.MemoryLimit(limit_mb=1000.0)
    limit.on_train_begin()
    limit.on_epoch_end(0)
    unlimited = memory_limit.MemoryLimit(limit_mb=None)
    unlimited.on_train_begin()
    unlimited.on_epoch_end(0)
