"""Telling Optuna what happened to a trial: its outcome, or that it failed for a reason
that is not its own and runs again (its parameters queued under a new number), with the
rules that find such trials: a dead process on this machine, a stale heartbeat.

The one place that writes trial states; every executor goes through it.

>>> fail_and_requeue  # doctest: +ELLIPSIS
<function fail_and_requeue at ...>
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import optuna
from optuna.trial import TrialState

from tunecb.oracle import attrs, deaths
from tunecb.oracle.outcome import COMPLETE, PRUNED, TrialOutcome
from tunecb.storage import judged, stale, urls
from tunecb.storage.light_trials import LightTrials

log = logging.getLogger("tunecb")

# The attributes the budget (tunecb.oracle.budget) and the recovery rules read of every trial
_LIGHT = LightTrials((attrs.STOP_REASON, attrs.WORKER, attrs.WORKER_START), (attrs.RETRY_HISTORY,))


def light_trials(study: optuna.Study) -> list[Any]:
    """Every trial of the study with what the budget and the recovery rules read of it:
    its number, state, start, stop reason, worker and retry history (on a database, one
    light row per trial, only the unfinished and newly finished read again:
    :mod:`tunecb.storage.light_trials`; elsewhere the storage's own trials).

    >>> light_trials(optuna.create_study())
    []
    """
    return _LIGHT.read(study)


def tell(study: optuna.Study, trial: optuna.Trial, outcome: TrialOutcome) -> bool:
    """Tell Optuna the outcome's state (COMPLETE with the best value, PRUNED or FAIL).
    ``False`` when the trial was no longer ours to tell (see :func:`taken`). A trial that
    failed with an out-of-memory error is judged as a memory death instead (:func:`bury`)."""
    if outcome.state != COMPLETE and outcome.stop_reason == attrs.FAILED:
        death = deaths.from_error(outcome.error)
        if death is not None:
            return bury(study, trial.number, death) is not None
    try:
        if outcome.state == COMPLETE:
            study.tell(trial, outcome.values() or outcome.value)
        elif outcome.state == PRUNED:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, state=TrialState.FAIL)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as exc:
        if not taken(exc, trial.number):
            raise
        return False
    return True


def taken(exc: BaseException, number: int) -> bool:
    """Whether ``exc`` says that trial ``number`` was finished by another process while it
    ran here: its heartbeat came late (a machine too busy, a storage too slow), so another
    worker failed it as stale and queued its parameters again (Optuna's retry callback).
    Logged: the trial runs again under a new number; this worker goes on with the next."""
    text = str(exc)
    if not isinstance(exc, optuna.exceptions.UpdateFinishedTrialError) and not (
        isinstance(exc, ValueError) and text.startswith("Cannot tell a ")
    ):
        return False
    log.warning(
        "trial %d was failed by another worker while it ran here (its heartbeat came late: "
        "it runs again as a new trial; or its time limit passed with no epoch end in its "
        "grace): %s", number, text.splitlines()[0] if text else type(exc).__name__,
    )  # fmt: skip
    return True


def violation(trial: optuna.trial.FrozenTrial) -> tuple[float]:
    """The constraint violation the runner recorded on a finished trial (> 0: infeasible;
    <= 0, or none recorded: feasible): a constrained sampler's ``constraints_func``.

    >>> violation(optuna.trial.create_trial(value=1.0, user_attrs={attrs.CONSTRAINT: 0.5}))
    (0.5,)
    >>> violation(optuna.trial.create_trial(value=1.0))
    (0.0,)
    """
    value = trial.user_attrs.get(attrs.CONSTRAINT)
    return (float(value) if isinstance(value, int | float) else 0.0,)


def constraints_func(study: Any, max_params: int | None) -> Any:
    """:func:`violation` when the study (a :class:`tunecb.Study`) states constraints on its
    models (``max_params``, ``constraint=``), else ``None``: what :func:`make_sampler
    <tunecb.study.samplers_pruners.make_sampler>` takes to learn where models are infeasible."""
    constrained = max_params is not None or getattr(study, "constraint_fn", None) is not None
    return violation if constrained else None


def discard(study: optuna.Study, trial: optuna.Trial) -> None:
    """A trial asked past the budget (a race between workers): FAIL, not counted."""
    trial.set_user_attr(attrs.STOP_REASON, attrs.DISCARDED)
    study.tell(trial, state=TrialState.FAIL)


def fail_and_requeue(
    study: optuna.Study, number: int, reason: str, error: str, rule: str | None = None,
    **seen: Any,
) -> bool:  # fmt: skip
    """Mark RUNNING trial ``number`` FAIL for a reason that is not its own (``reason``:
    ``worker_died`` or ``interrupted``), its WAITING rerun queued first (a process killed
    between the two leaves both to the next recoverer: :mod:`tunecb.storage.stale`), with
    the verdict of ``rule`` (default: ``interrupted``, else ``released``) and what was
    ``seen`` (:mod:`tunecb.storage.judged`).
    Returns ``False`` when the trial was no longer RUNNING (another process got there
    first, or it finished): its rerun is then left to that process, or dropped."""
    attempt = _running(study, number)
    if attempt is None:
        return False
    rerun = stale.queue(study, attempt)
    if rerun is None:  # another recoverer is queueing its rerun: it fails it too
        return False
    if rule is None:
        rule = judged.INTERRUPTED if reason == attrs.INTERRUPTED else judged.RELEASED
    if fail(study, number, reason, error, judged.verdict(rule, **seen)) is None:
        _drop(study, attempt._trial_id, rerun)
        return False
    return True


def _running(study: optuna.Study, number: int) -> Any:
    trial = deaths.attempt(study, number)
    return trial if trial.state == TrialState.RUNNING else None


def _fail_state(storage: Any, trial_id: int) -> bool:
    """FAIL RUNNING trial ``trial_id``, no attribute written (its live worker, if any, may
    be writing its own); ``False`` when another process finished it first."""
    try:
        return bool(storage.set_trial_state_values(trial_id, state=TrialState.FAIL))
    except RuntimeError:  # finished meanwhile ("Trial#n has already finished")
        return False


def _drop(study: optuna.Study, attempt_id: int, rerun_id: int) -> None:
    """A rerun queued for an attempt that then finished by itself (not FAIL): discard it,
    unless a worker popped it already (that worker discards it: :func:`rerun_due`)."""
    storage = study._storage
    if storage.get_trial(attempt_id).state not in (TrialState.COMPLETE, TrialState.PRUNED):
        return  # failed by another recoverer: this is its rerun
    try:
        if storage.set_trial_state_values(rerun_id, state=TrialState.RUNNING):
            storage.set_trial_user_attr(rerun_id, attrs.STOP_REASON, attrs.DISCARDED)
            storage.set_trial_state_values(rerun_id, state=TrialState.FAIL)
    except RuntimeError:  # finished meanwhile
        return


def rerun_due(study: optuna.Study, trial: optuna.Trial) -> bool:
    """Whether the just-asked ``trial`` should run: not a rerun, or the one claimed rerun
    of a FAIL attempt, up its chain of attempts (:mod:`tunecb.storage.stale`). Otherwise
    the caller discards it: a second copy of one attempt (two recoverers queued one each),
    or the rerun of an attempt that finished by itself. An attempt still RUNNING is failed
    here: its recoverer stopped (or was killed) between queueing this rerun and failing it."""
    storage = study._storage
    child = storage.get_trial(trial._trial_id)
    attempt_id = stale.rerun_of(child.system_attrs)
    while attempt_id is not None:
        attempt = storage.get_trial(attempt_id)
        if attempt.state not in (TrialState.RUNNING, TrialState.FAIL):
            return False
        if stale.claim(study, attempt_id, child) != child._trial_id:
            return False
        if attempt.state == TrialState.RUNNING:
            popped = judged.verdict(judged.POPPED, rerun=child.number)
            if judged.write(storage, attempt_id, popped):  # lost: another one finished it
                _fail_state(storage, attempt_id)
            attempt = storage.get_trial(attempt_id)
            if attempt.state != TrialState.FAIL:
                return False
        child, attempt_id = attempt, stale.rerun_of(attempt.system_attrs)
    return True


def fail(
    study: optuna.Study, number: int, reason: str, error: str, verdict: dict | None = None
) -> Any:
    """Mark RUNNING trial ``number`` FAIL (``stop_reason`` ``reason``; ``verdict``: who
    failed it from outside, and why, :mod:`tunecb.storage.judged`); the frozen trial, or
    ``None`` when it was not RUNNING."""
    storage = study._storage
    trial = _running(study, number)
    if trial is None:
        return None
    trial_id = trial._trial_id
    if verdict is not None and not judged.write(storage, trial_id, verdict):
        return None  # finished meanwhile
    try:  # another worker may finish or fail it meanwhile (two recover the same dead trial)
        storage.set_trial_user_attr(trial_id, attrs.STOP_REASON, reason)
        storage.set_trial_user_attr(trial_id, attrs.ERROR, error)
        if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
            return None
    except RuntimeError:  # finished meanwhile ("Trial#n has already finished")
        return None
    return storage.get_trial(trial_id)


def bury(study: optuna.Study, number: int, death: deaths.Death) -> str | None:
    """RUNNING trial ``number`` died (``death``): fail it and queue it again, or fail it for
    good (``killed``) when its configuration died often enough (:mod:`.deaths`). Returns
    ``"requeued"``, ``"failed"``, or ``None`` when it was no longer RUNNING."""
    storage = study._storage
    trial = _running(study, number)
    if trial is None:
        return None
    trial_id = trial._trial_id
    counted = [*deaths.earlier_deaths(study, trial), death] if death.counts else []
    try:
        storage.set_trial_user_attr(trial_id, attrs.DEATH, death.record())
    except RuntimeError:  # finished meanwhile: another worker buried it first
        return None
    dead = judged.verdict(judged.DEAD, death=death.how)
    if counted and deaths.fails_for_good(counted):
        reason = deaths.failure_reason(counted)
        if fail(study, number, attrs.KILLED, reason, dead) is None:
            return None
        deaths.tell_sampler(study, trial, reason)  # TPE ignores FAIL trials
        return "failed"
    rerun = stale.queue(study, storage.get_trial(trial_id))  # first: see fail_and_requeue
    if rerun is None:
        return None
    if fail(study, number, attrs.WORKER_DIED, deaths.died_text(death), dead) is None:
        _drop(study, trial_id, rerun)
        return None
    return "requeued"


def fail_workers_trials(
    study: optuna.Study, workers: Iterable[str], reason: str, error: str
) -> list[int]:
    """:func:`fail_and_requeue` every RUNNING trial of these worker ids (``host:pid``)."""
    ids = set(workers)
    done = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get(attrs.WORKER) in ids and fail_and_requeue(
            study, trial.number, reason, error
        ):
            done.append(trial.number)
    return done


def bury_workers_trials(study: optuna.Study, worker: str, death: Any) -> dict[int, str]:
    """Every RUNNING trial of the dead ``worker`` (``host:pid``), judged by its
    :class:`~tunecb.oracle.deaths.Death`: ``{number: "requeued" or "failed"}``."""
    done = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get(attrs.WORKER) == worker:
            what = bury(study, trial.number, death)
            if what is not None:
                done[trial.number] = what
    return done


_RUNNING_HERE: dict[tuple[str, int], int] = {}  # (storage, trial id): searches of this process
_HERE_LOCK = threading.Lock()  # that run it (a ticket: that try to claim it, one per thread)


def _here_key(storage: Any, trial_id: int) -> tuple[str, int]:
    return urls.identity(storage), trial_id


@contextlib.contextmanager
def running_here(storage: Any, trial_id: int) -> Iterator[None]:
    """Within: the trial (or promotion ticket) ``trial_id`` of ``storage`` is run by a search
    of this process; registered before its claim is written (:func:`owner_runs`).

    >>> study = optuna.create_study()
    >>> with running_here(study._storage, 3):
    ...     _here_key(study._storage, 3) in _RUNNING_HERE
    True
    >>> _here_key(study._storage, 3) in _RUNNING_HERE
    False
    """
    key = _here_key(storage, trial_id)
    with _HERE_LOCK:
        _RUNNING_HERE[key] = _RUNNING_HERE.get(key, 0) + 1
    try:
        yield
    finally:
        with _HERE_LOCK:
            if _RUNNING_HERE[key] > 1:
                _RUNNING_HERE[key] -= 1
            else:
                del _RUNNING_HERE[key]


def owner_runs(storage: Any, claimed: Any) -> bool | None:
    """Whether the process of this machine that claimed ``claimed`` (a frozen trial, or a
    promotion ticket) still runs it; ``None`` when none did (another machine's, or not
    claimed yet). This process runs it only while a search of it does (:func:`running_here`):
    one that ended (a full disk, a lost storage) left it dead although its pid is alive (a
    notebook's next ``tunecb.search``). The one rule for trials and tickets alike.

    >>> study = optuna.create_study()
    >>> trial = study.ask()
    >>> claim(trial, attrs.worker_id())
    >>> frozen = study.trials[0]
    >>> with running_here(study._storage, frozen._trial_id):
    ...     owner_runs(study._storage, frozen)
    True
    >>> owner_runs(study._storage, frozen)
    False
    """
    pid = attrs.on_this_host(claimed.user_attrs.get(attrs.WORKER))
    if pid is None:
        return None
    if pid == os.getpid():
        return _here_key(storage, claimed._trial_id) in _RUNNING_HERE
    return owner_alive(pid, claimed.user_attrs.get(attrs.WORKER_START))


def claim(trial: optuna.Trial, worker: str) -> None:
    """Record that this process (``worker``: its ``host:pid``) runs ``trial``, with the
    moment it started, which tells it from a later process with the same pid."""
    trial.set_user_attr(attrs.WORKER, worker)
    start = attrs.process_start()
    if start is not None:
        trial.set_user_attr(attrs.WORKER_START, start)
    deaths.note_start(trial)  # what a later run needs to judge this trial's death, if it dies


def recover_dead_trials(study: optuna.Study) -> list[int]:
    """Fail and queue again the RUNNING trials whose process, on this machine, no longer
    exists (a search killed with SIGKILL, a crash, a reboot), also when another process
    has its pid now (this one: a container's entrypoint is PID 1 every run). Trials of
    other machines are left to their own processes (or to the database heartbeat).
    A configuration that died too often is failed for good instead
    (:mod:`tunecb.oracle.deaths`): those are in :func:`recover_dead_trials_judged`."""
    return [n for n, what in recover_dead_trials_judged(study).items() if what == "requeued"]


def recover_dead_trials_judged(study: optuna.Study) -> dict[int, str]:
    """:func:`recover_dead_trials`, with what was done to each trial found dead:
    ``{number: "requeued" or "failed"}`` (failed for good: it died too often)."""
    done = {}
    for trial in light_trials(study):
        if trial.state != TrialState.RUNNING:
            continue
        if owner_runs(study._storage, trial) is not False:
            continue
        pid = attrs.on_this_host(trial.user_attrs.get(attrs.WORKER))
        trial = study._storage.get_trial(trial._trial_id)  # whole: its last memory record
        if trial.state != TrialState.RUNNING:
            continue
        what = bury(study, trial.number, deaths.found_dead(trial, pid))
        if what is not None:
            done[trial.number] = what
    return done


UNCLAIMED_S = 60.0  # a RUNNING trial unclaimed this long after its start lost its worker


def recover_unclaimed(study: optuna.Study, trials: list[Any]) -> bool:
    """Fail and queue again the RUNNING trials that no worker claimed (:func:`claim`)
    within :data:`UNCLAIMED_S` of their start: their worker died between asking for them
    and claiming them, so no pid, owner or heartbeat would ever free them (the study would
    stay short of its budget, or wait for them forever). ``True`` when there are unclaimed
    trials (queued again now, or still young): the caller looks again before it stops."""
    import time

    found = False
    for trial in trials:
        if trial.state != TrialState.RUNNING or attrs.WORKER in trial.user_attrs:
            continue
        found = True
        start = trial.datetime_start
        if start is None or time.time() - start.timestamp() < UNCLAIMED_S:
            continue
        error = f"its worker died before it claimed it (unclaimed for {UNCLAIMED_S:.0f} s)"
        age = time.time() - start.timestamp()
        fail_and_requeue(study, trial.number, attrs.WORKER_DIED, error, judged.UNCLAIMED,
                         unclaimed_s=age)  # fmt: skip
    return found


def unchecked_owners(study: optuna.Study) -> list[tuple[int, str]]:
    """The RUNNING trials whose process this machine cannot check, with their owner's
    ``host:pid``: those of other machines, when the storage has no heartbeat that would
    find them dead (a journal file)."""
    if heartbeat_interval(study) is not None:
        return []
    found = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get(attrs.WORKER)
        if attrs.parse_worker(owner) is not None and attrs.on_this_host(owner) is None:
            found.append((trial.number, str(owner)))
    return found


def release_running(study: optuna.Study) -> tuple[list[int], list[tuple[int, str]]]:
    """Fail and queue again every RUNNING trial (``tunecb repair --release-running``), as
    a dead worker's, except those whose process runs on this machine. The user says the
    other machines' runs are dead; a run that is not would fail to record its trial.
    Returns the trials released, and the ones left with their live owner."""
    released, alive = [], []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get(attrs.WORKER)
        if owner_runs(study._storage, trial):
            alive.append((trial.number, str(owner)))
            continue
        error = f"released by tunecb repair --release-running (its process {owner or '?'})"
        if fail_and_requeue(study, trial.number, attrs.WORKER_DIED, error):
            released.append(trial.number)
    return released, alive


def owner_alive(pid: int, start: object) -> bool:
    """Whether the process of this machine that claimed a trial (``pid``, started at
    ``start``: :func:`attrs.process_start`, ``None`` when not recorded) still runs: a process
    with that pid that started at another moment is another process.

    >>> owner_alive(os.getpid(), attrs.process_start()), owner_alive(os.getpid(), "0-1")
    (True, False)
    """
    if not _alive(pid):
        return False
    if start is None:  # recorded by an older tunecb: the pid is all we know
        return True
    now = attrs.process_start(pid)
    return now is None or now == start


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def heartbeat_interval(study: optuna.Study) -> int | None:
    """The storage's heartbeat interval (database storages opened with one), else None."""
    return getattr(study._storage, "get_heartbeat_interval", lambda: None)()


def grace_period(study: optuna.Study) -> float | None:
    """How long a trial's heartbeat may be silent before it is stale (the storage's grace
    period, else Optuna's default: two heartbeat intervals); ``None`` without a heartbeat."""
    interval = heartbeat_interval(study)
    if interval is None:
        return None
    backend = getattr(study._storage, "_backend", study._storage)
    return getattr(backend, "grace_period", None) or 2 * interval


def fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's ``fail_stale_trials``, only for storages with a heartbeat, but each stale
    trial's rerun queued *before* its FAIL (Optuna fails them all, then queues them: a
    worker that died between left FAILs without rerun, 46 with 200 workers on PostgreSQL).
    A worker killed at any point leaves the trial RUNNING (stale: the next worker fails it,
    its rerun found by its claim) or FAIL with its rerun queued.
    Each one's heartbeat is read again just before (it may have beaten since the scan),
    judged by :func:`tunecb.storage.judged.stale` (a restarted server gives its workers
    time to beat again), and the verdict written on it."""
    interval = heartbeat_interval(study)
    if interval is None:
        return
    storage = study._storage
    backend = getattr(storage, "_backend", storage)
    grace = grace_period(study)
    found = storage._get_stale_trial_ids(study._study_id)
    beats = judged.heartbeats_seen(backend, found)  # read again, all at once
    for trial_id in found:
        seen = beats.get(trial_id)
        if seen and not judged.stale(seen["last_beat_s"], grace, seen.get("server_up_s")):
            continue  # it beat since, or the server has not been up long enough
        attempt = storage.get_trial(trial_id)
        if attempt.state != TrialState.RUNNING:
            continue
        rerun = stale.queue(study, attempt)
        if rerun is None:  # another worker is recovering it
            continue
        verdict = judged.verdict(judged.STALE, grace_s=float(grace), **(seen or {}))
        if not judged.write(storage, trial_id, verdict) or not _fail_state(storage, trial_id):
            _drop(study, trial_id, rerun)


class Heartbeat:
    """Records the trial's heartbeat in a background thread while it runs, when the
    storage has a heartbeat (an RDB storage opened with ``heartbeat_interval``)."""

    def __init__(self, storage: Any, trial_id: int) -> None:
        interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        if self.interval:
            self.storage.record_heartbeat(self.trial_id)
            self._thread = threading.Thread(target=self._beat, name="tunecb-heartbeat", daemon=True)
            self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as exc:  # the storage is away: the trial goes on; say so
                log.debug("heartbeat failed: %s", exc)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
