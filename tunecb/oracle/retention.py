"""``--keep-checkpoints K``: keep the best checkpoints of the K best trials, delete the others.

:func:`enforce` runs in the process that finished a trial, right after it told Optuna
(every worker, on every machine), and once more in the launcher when the search ends (so
that continuing a study with a smaller K trims it even when no trial is left to run).
The ranking is the report's (:func:`tunecb.oracle.ranking.rank_key`): COMPLETE trials by the
objective, then PRUNED ones by their best value, then FAIL.

Why it is safe while several workers (and machines) run, finish and delete at once:

- Only finished trials (COMPLETE, PRUNED, FAIL) are candidates. A trial writes its files
  before it is told, and once told its state and value never change. A trial that is
  RUNNING or WAITING in the snapshot read is never touched, so a file a trial is still
  writing is never deleted.
- The ranking is a total order on finished trials that depends only on their state, value
  and number. A later snapshot of the storage only *adds* finished trials, so a trial that
  has K better finished trials in one snapshot has them in every later one: once outside
  the top K, outside for ever. A deletion decided on any snapshot, however stale, is one
  every later snapshot agrees with; which process deletes first does not matter. The
  current best is in the top K (K >= 1) and Optuna's best trial is protected besides.
- A trial whose worker died (``worker_died``, ``interrupted``, or failed by a stale
  heartbeat) is FAIL, and runs again under a new number; the rerun copies the history and
  best checkpoint of the attempt that wrote the last backup when it starts
  (:func:`tunecb.training.backup.restore`), and that may be any earlier attempt of the chain. Such
  a trial's checkpoint is deleted only when its chain has ended: some rerun of it was
  finished by tunecb's runner (COMPLETE, PRUNED, or FAIL for a reason of its own). While
  a rerun waits, runs, is about to be queued or died in turn, the file stays. (A dead
  attempt whose rerun never comes, e.g. past Optuna's retry limit, keeps its file: then
  more than K checkpoints remain.)
- A deletion first marks the trial's ``trial.json`` (``checkpoint_removed``: when, K, by
  which process; an atomic rewrite), then unlinks the file (``missing_ok``): two processes
  removing the same file both succeed, and a crash between the two leaves the file, which
  the next pass removes. The report trusts the mark, never a missing file alone.
- Nothing is deleted through a symbolic link that leaves the results folder (a trial folder
  linked elsewhere, say: :meth:`~tunecb.results.StudyDir.guard`); that checkpoint is kept,
  with a warning naming the link.

Cost per pass: one ``get_trials``, the ranking and a ``stat`` per finished trial outside the
top K (measured: 4.5 ms for a 200-trial study, 12 ms for 1,000), plus 1-7 ms per removal
(the fsynced ``trial.json`` rewrite). A trial takes seconds; this is well under 1 %.

>>> enforce(study, StudyDir(Path("results/digits")), keep=3)  # doctest: +SKIP
[5, 2]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import optuna
from optuna.trial import TrialState

from tunecb.errors import ResultsError
from tunecb.oracle.attrs import (
    DISCARDED,
    FINISHED,
    PAUSED,
    RETRY_HISTORY,
    RUNNER_FAILED,
    STOP_REASON,
    worker_id,
)
from tunecb.oracle.front import front_numbers, monitor_value, study_objectives
from tunecb.oracle.ranking import rank_key, trial_record
from tunecb.results import CHECKPOINT_REMOVED, StudyDir, read_json, write_json
from tunecb.study.objectives import Objective, monitor_of

log = logging.getLogger("tunecb")


def removable(
    trials: Sequence[Any], maximize: bool, keep: int, objectives: Sequence[Objective] = ()
) -> list[int]:
    """Numbers of the trials whose checkpoint may be deleted: finished, outside the ``keep``
    best, not the best, not on a multi-objective study's Pareto front (``objectives``), and
    not an attempt a rerun may still resume from. (A trial off the front never comes back
    to it: it stays dominated as trials are added, so this is as stable as the top K.)

    >>> removable([], maximize=True, keep=2)
    []
    """
    if keep < 1:
        raise ValueError(f"keep={keep!r}: keep at least the best trial's checkpoint")
    finished = [
        t for t in trials if t.state in FINISHED and t.user_attrs.get(STOP_REASON) != DISCARDED
    ]
    ranked = sorted(finished, key=lambda t: rank_key(trial_record(t, None), maximize))
    protected = {t.number for t in ranked[:keep]} | _best(finished, maximize)
    if objectives:
        protected |= front_numbers(finished, objectives)
    ended = {
        n for t in trials if _finished_by_runner(t) for n in t.system_attrs.get(RETRY_HISTORY, ())
    }
    return [
        t.number
        for t in ranked[keep:]
        if t.number not in protected and (_finished_by_runner(t) or t.number in ended)
    ]


def enforce(study: optuna.Study, study_dir: StudyDir, keep: int | None) -> list[int]:
    """Delete the checkpoints :func:`removable` allows that are still on disk; return the
    numbers of the trials whose checkpoint this call removed. ``keep=None``: nothing."""
    if keep is None:
        return []
    started = time.perf_counter()
    trials = study.get_trials(deepcopy=False)
    objectives = study_objectives(study) or ()
    if objectives:
        maximize = monitor_of(objectives).maximize
    else:
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    removed = []
    for number in removable(trials, maximize, keep, objectives):
        path = study_dir.checkpoint(number)
        if not path.exists():
            continue
        try:
            study_dir.guard(path)  # a link that leaves the results folder: never through it
            if study_dir.checkpoint_removal(number) is None:
                _mark(study_dir, number, keep)
            path.unlink(missing_ok=True)
        except (OSError, ResultsError) as exc:
            log.warning("--keep-checkpoints %d: cannot remove %s (%s); kept", keep, path, exc)
            continue
        log.info("removed %s: trial %d is not among the %d best trials", path, number, keep)
        removed.append(number)
    log.debug("--keep-checkpoints %d: %d trials checked, %d checkpoints removed in %.1f ms",
              keep, len(trials), len(removed), 1e3 * (time.perf_counter() - started))  # fmt: skip
    return removed


def keeper(study_dir: StudyDir, keep: int | None) -> Callable[[optuna.Study], Any] | None:
    """What a worker runs after each trial it told (``None`` when keeping everything)."""
    if keep is None:
        return None
    return lambda study: enforce(study, study_dir, keep)


def removed_since(study_dir: StudyDir, since: float) -> list[int]:
    """Numbers of the trials whose checkpoint ``--keep-checkpoints`` removed at or after
    ``since`` (a ``time.time()``), by any process."""
    if not study_dir.trials.is_dir():
        return []
    numbers = []
    for folder in study_dir.trials.iterdir():
        if not folder.name.isdigit() or study_dir.checkpoint(int(folder.name)).exists():
            continue
        mark = study_dir.checkpoint_removal(int(folder.name))
        try:
            at = datetime.fromisoformat(mark["at"]).timestamp() if mark else None
        except (KeyError, TypeError, ValueError):
            at = None
        if at is not None and at >= since:
            numbers.append(int(folder.name))
    return sorted(numbers)


def _mark(study_dir: StudyDir, number: int, keep: int) -> None:
    path = study_dir.trial_json(number)
    data = read_json(path) or {"number": number}
    data[CHECKPOINT_REMOVED] = {
        "at": datetime.now(UTC).isoformat(),
        "keep_checkpoints": keep,
        "by": worker_id(),
    }
    write_json(path, data)


def _finished_by_runner(trial: Any) -> bool:
    """Whether tunecb's runner ended this trial itself (so no rerun will read its files). A
    paused trial (promotion pruner) did not end: its continuation copies its checkpoint."""
    if trial.user_attrs.get(STOP_REASON) == PAUSED:
        return False
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and (trial.user_attrs.get(STOP_REASON) in RUNNER_FAILED)


def _best(finished: Sequence[Any], maximize: bool) -> set[int]:
    """Optuna's best trial (every one tied with it): COMPLETE with the best value."""
    values = {t.number: monitor_value(t) for t in finished if t.state == TrialState.COMPLETE}
    values = {n: v for n, v in values.items() if v is not None}
    if not values:
        return set()
    best = (max if maximize else min)(values.values())
    return {n for n, v in values.items() if v == best}
