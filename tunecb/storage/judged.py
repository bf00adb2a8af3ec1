"""Who failed a trial from outside, and why: a verdict written on the attempt it fails.

A trial's own run says how it ended (its ``stop_reason``). A trial failed by another
process (its heartbeat stale, its process dead, interrupted, never claimed, its rerun
popped while it still ran, released by ``tunecb repair``) said nothing itself: with 200
workers on PostgreSQL, 7 of 8 configurations failed for good carried no reason, and no record
said which worker failed them or on what evidence (issue 24). Every such path now writes
:data:`JUDGED` (a system attr) on the attempt before it fails it: the rule, the judge's
``host:pid``, its wall-clock time, and what it saw (the heartbeat's age on the server's
clock, the grace period, how long the server had been up, the dead pid).
:func:`explain` turns it into one line for a report.

The stale rule itself is :func:`stale`: a heartbeat is judged against the grace period
counted from the later of the last beat and the server's start (plus the reconnect
backoff's cap: a worker cut by the restart needs that long to knock again), so no worker
(one that saw the outage, or a replacement that opened the storage after it) takes a live
trial for dead because the server itself was away.

>>> v = verdict(STALE, last_beat_s=7.5, grace_s=6)
>>> v["rule"], sorted(v)
('stale heartbeat', ['at', 'by', 'grace_s', 'last_beat_s', 'rule'])
>>> explain({JUDGED: {**v, "by": "vm:12"}})
'failed by vm:12 (stale heartbeat: last beat 7.5 s before, grace 6 s)'
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

log = logging.getLogger("tunecb")

JUDGED = "tunecb_failed_by"  # system attr on an attempt failed from outside: the verdict
STALE = "stale heartbeat"
DEAD = "dead process"
INTERRUPTED = "interrupted"
UNCLAIMED = "unclaimed"
POPPED = "rerun popped while it ran"  # its recoverer stopped between queueing and failing
RELEASED = "released"  # tunecb repair --release-running, or its worker lost the storage
RESTART_SLACK_S = 5.0  # a worker cut by a restart knocks again within this (reconnect's cap)


def verdict(rule: str, **seen: Any) -> dict[str, Any]:
    """The record of one judgement by this process: ``rule``, ``by`` (``host:pid``),
    ``at`` (Unix time) and what it saw (``None`` values left out)."""
    found = {k: round(v, 3) if isinstance(v, float) else v for k, v in seen.items()}
    record = {"rule": rule, "by": f"{socket.gethostname()}:{os.getpid()}", "at": time.time()}
    return {**record, **{k: v for k, v in found.items() if v is not None}}


def write(storage: Any, trial_id: int, record: dict[str, Any]) -> bool:
    """Write ``record`` on RUNNING trial ``trial_id``; ``False`` when it finished meanwhile
    (another process got there first, or its own worker told its result)."""
    try:
        storage.set_trial_system_attr(trial_id, JUDGED, record)
    except RuntimeError:  # Optuna's UpdateFinishedTrialError ("has already finished")
        return False
    log.info("trial id %d failed from outside: %s", trial_id, _text(record))
    return True


def explain(system_attrs: dict[str, Any]) -> str | None:
    """One line for a trial failed from outside, ``None`` for any other trial."""
    record = system_attrs.get(JUDGED)
    if not isinstance(record, dict):
        return None
    return f"failed by {record.get('by', '?')} ({_text(record)})"


def _text(record: dict[str, Any]) -> str:
    parts = []
    if "last_beat_s" in record:
        parts.append(f"last beat {record['last_beat_s']:g} s before")
    if "grace_s" in record:
        parts.append(f"grace {record['grace_s']:g} s")
    if "server_up_s" in record:
        parts.append(f"server up {record['server_up_s']:g} s")
    for key in ("pid", "error"):
        if key in record:
            parts.append(f"{key} {record[key]}")
    rule = str(record.get("rule", "?"))
    return f"{rule}: {', '.join(parts)}" if parts else rule


def stale(last_beat_s: float | None, grace_s: float, server_up_s: float | None = None) -> bool:
    """Whether a trial whose last heartbeat is ``last_beat_s`` old (server clock) is stale,
    the server having been up ``server_up_s`` (``None``: unknown): its worker missed the
    grace period counted from the later of its last beat and the moment it could beat again.

    >>> stale(30.0, 6.0), stale(5.0, 6.0)
    (True, False)
    >>> stale(40.0, 6.0, server_up_s=8.0), stale(40.0, 6.0, server_up_s=12.0)
    (False, True)
    """
    if last_beat_s is None:
        return False
    silent = last_beat_s
    if server_up_s is not None:
        silent = min(silent, server_up_s - RESTART_SLACK_S)
    return silent > grace_s


def heartbeats_seen(backend: Any, trial_ids: list[int]) -> dict[int, dict[str, float]]:
    """What the database says now of these trials' heartbeats, in one query: per trial id
    with a heartbeat row, ``last_beat_s`` (its age on the server's clock, as Optuna judges
    it) and, on PostgreSQL, ``server_up_s`` (since the server started); ``{}`` without a
    database. Waits out a lost connection as the storage's own calls do."""
    if getattr(backend, "engine", None) is None or not trial_ids:
        return {}
    if hasattr(backend, "reconnect_s"):
        from tunecb.storage.reconnect import retrying

        return retrying(_seen)(backend, trial_ids)
    return _seen(backend, trial_ids)


def _seen(backend: Any, trial_ids: list[int]) -> dict[int, dict[str, float]]:
    import sqlalchemy
    from optuna.storages._rdb import models

    engine = backend.engine
    table = models.TrialHeartbeatModel.__table__
    postgres = engine.dialect.name == "postgresql"
    columns = [table.c.trial_id, table.c.heartbeat, sqlalchemy.func.now()]
    if postgres:
        columns.append(sqlalchemy.func.pg_postmaster_start_time())
    query = sqlalchemy.select(*columns).where(table.c.trial_id.in_(trial_ids))
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    found = {}
    for row in rows:
        now = row[2]
        if isinstance(now, str):  # SQLite answers text
            from datetime import datetime

            now = datetime.fromisoformat(now)
        seen = {"last_beat_s": (now.replace(tzinfo=None) - row[1]).total_seconds()}
        if postgres and row[3] is not None:
            seen["server_up_s"] = (now - row[3]).total_seconds()
        found[row[0]] = seen
    return found
