"""A database storage that waits out a lost connection instead of failing the worker.

A PostgreSQL server that restarts (a crash, a failover, a maintenance restart) cuts every
connection; Optuna's ``RDBStorage`` then raises from the one call in flight, and the next calls
are refused until the server is back. In a search that is every worker's current report,
attribute or heartbeat: every worker died with it (``benchmarks/scale.py``: a 0.4 s restart
under 5 workers failed all 5 and left their trials RUNNING). :class:`ReconnectingRDBStorage`
retries a call that failed on the connection (SQLAlchemy's ``OperationalError``, or a
connection it invalidated); the pool's pre-ping replaces the dead connections. Any other error
is raised at once.

**The policy, and why.**

- *How long*: :data:`RECONNECT_S` (180 s) per outage, shared by all the calls and threads of
  a process. A failover takes 30-60 s (a standby promoted by Patroni, a managed database's
  failover; some take up to two minutes), and on a busy machine reconnecting takes longer
  still: 200 workers that reconnect at once on 2 cores waited more than 20 s, the earlier
  window (49 of them gave up, ``benchmarks/scale.py``). A worker that gives up too early
  loses its trial's training so far; one that waits too long only keeps its machine idle a
  little longer before the search says the database is gone. So the window is long.
- *How often*: exponential backoff with full jitter (a random wait between 0 and
  ``min(5 s, 0.25 s * 2**attempt)``): 200 workers that lost the server at the same instant
  do not knock again in lock-step, so the server that comes back sees tens of connections a
  second, not 200 at once (each one a password authentication that costs CPU).
- *After it*: for one grace period after an outage a process does not judge other trials
  stale (:meth:`ReconnectingRDBStorage._get_stale_trial_ids`): their workers could not beat
  during the outage either, and the first worker back would fail every live trial.
- *When the window ends*: the call raises; the worker stops with one line ("the storage
  failed during the search: ...", exit 1), and its trial is left to recovery, never failed
  as its own: queued again at once if the server answers, else left RUNNING for the others
  (its heartbeat stops: stale after the grace period; its process is gone: found dead on its
  machine) (:func:`tunecb.execution.loop.run_trials`). Only a call that gave up is told apart
  so (:func:`lost_for_good`): a database error of the user's own code fails its trial.

Each call of the storage is one transaction: a call cut by the restart was rolled back by the
server, so running it again is safe. The one ambiguous case is a commit that reached the
server but whose answer was lost; a retried ``create_new_trial`` could then create a second
trial (left RUNNING without heartbeat, for ``tunecb repair --release-running``).

>>> transient(ValueError("x"))
False
>>> all(0.0 <= backoff(attempt) <= _MAX_DELAY_S for attempt in range(20))
True
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import optuna

log = logging.getLogger("tunecb")

RECONNECT_S = 180.0  # how long the calls wait for the server to come back (per outage)
_FIRST_DELAY_S, _MAX_DELAY_S = 0.25, 5.0  # the backoff's first ceiling and its cap

# The RDBStorage methods a search calls (each one transaction).
_RETRIED = (
    "create_new_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
    "get_study_user_attrs", "get_study_system_attrs", "get_trial_user_attrs",
    "get_trial_system_attrs", "get_all_studies", "create_new_trial", "set_trial_param",
    "get_trial_param", "set_trial_state_values", "set_trial_intermediate_value",
    "set_trial_user_attr", "set_trial_system_attr", "get_trial_id_from_study_id_trial_number",
    "get_trial", "get_all_trials", "_get_trials", "get_best_trial", "record_heartbeat",
    # called directly by Optuna's cache in front of the storage (_CachedStorage)
    "_create_new_trial", "_set_trial_param", "_get_best_trial_id",
)  # fmt: skip


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is a lost or refused connection."""
    try:
        from sqlalchemy import exc as sa
    except ImportError:
        return False
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sa.OperationalError):
            return True
        if isinstance(seen, sa.DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(seen, sa.PendingRollbackError):  # a query retried on a lost connection
            return True  # (Optuna's _get_trials does): the rollback that follows frees it
        seen = seen.__cause__
    return False


def lost_for_good(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from, or during) is a storage call that
    gave up after its window (:func:`retrying`): not a fault of the trial, nor a database
    error of the user's own code (which fails only its trial)."""
    seen: set[int] = set()
    found: BaseException | None = exc
    while found is not None and id(found) not in seen:
        if getattr(found, "tunecb_storage_lost", False):
            return True
        seen.add(id(found))
        found = found.__cause__ or found.__context__
    return False


def backoff(attempt: int) -> float:
    """Seconds to wait before try ``attempt + 1`` (0 first): full jitter, a uniform draw
    below an exponential ceiling capped at :data:`_MAX_DELAY_S`."""
    return random.uniform(0.0, min(_MAX_DELAY_S, _FIRST_DELAY_S * 2 ** min(attempt, 16)))


def retrying(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` of a storage run again while it fails on the connection, until the
    storage's outage (``self._down_since``, shared by its calls and threads) is
    ``self.reconnect_s`` old: a server that stays away fails the search within that time,
    not that time per call. The first success after an outage sets ``self._up_since``."""

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        attempt = 0
        while True:
            try:
                result = method(self, *args, **kwargs)
            except Exception as exc:
                if not transient(exc):
                    raise
                now = time.monotonic()
                if getattr(self, "_down_since", None) is None:
                    self._down_since = now
                    log.info(  # info: a storage that stays away ends in ONE line
                        "lost the connection to the storage (%s); retrying for up to %.0f s",
                        type(exc.__cause__ or exc).__name__, self.reconnect_s,
                    )  # fmt: skip
                left = self._down_since + self.reconnect_s - now
                if left <= 0:
                    exc.tunecb_storage_lost = True  # type: ignore[attr-defined]
                    raise
                time.sleep(min(backoff(attempt), left))
                attempt += 1
            else:
                if getattr(self, "_down_since", None) is not None:
                    self._down_since, self._up_since = None, time.monotonic()
                return result

    return call


def opening(open_storage: Callable[[], Any], wait_s: float | None = None) -> Any:
    """``open_storage()``, run again while it fails on the connection, for up to ``wait_s``
    (default :data:`RECONNECT_S`), with the same backoff: a worker that starts while the
    server restarts (a replacement, a Dask task run again) waits for it as the running
    workers do. The launcher opens its storage without it: a wrong address fails in
    seconds there."""
    deadline = time.monotonic() + (RECONNECT_S if wait_s is None else wait_s)
    attempt = 0
    while True:
        try:
            storage = open_storage()
            if attempt and hasattr(storage, "_up_since"):  # opened after an outage: no
                storage._up_since = time.monotonic()  # stale judgement for a grace period
            return storage
        except Exception as exc:
            if not transient(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(min(backoff(attempt), max(0.0, deadline - time.monotonic())))
            attempt += 1


class ReconnectingRDBStorage(optuna.storages.RDBStorage):
    """Optuna's ``RDBStorage`` whose calls wait out a lost connection (see the module)."""

    reconnect_s: float = RECONNECT_S
    _down_since: float | None = None  # when the current outage began (time.monotonic)
    _up_since: float | None = None  # when the last one ended

    @retrying
    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """The trials whose heartbeat is older than the grace period, but none for one grace
        period after this process's last outage: no worker could beat during it, and the
        first one back would take every live trial for dead (they beat again as soon as
        their own calls get through; a trial whose worker died meanwhile is found after)."""
        grace = self.grace_period or 2 * (self.heartbeat_interval or 0)
        if self._up_since is not None and time.monotonic() - self._up_since < grace:
            return []
        return super()._get_stale_trial_ids(study_id)


for _name in _RETRIED:
    setattr(ReconnectingRDBStorage, _name, retrying(getattr(optuna.storages.RDBStorage, _name)))
