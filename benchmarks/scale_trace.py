"""Where a slow per-epoch report of ``benchmarks/scale.py`` spent its time, and what the
machine was doing then.

Each worker splits every report + pruning decision (:func:`sched_ms`, from the thread's
``/proc/thread-self/schedstat``) into

- ``cpu``: the thread ran (tunecb's, Optuna's and the driver's own work),
- ``runq``: the thread was runnable but waited for a core (the machine's queue),
- ``other``: the thread slept: a reply from the database server (its work, its own wait for
  a core, a lock), a lock of this process;

and the parent samples the machine twice a second (:class:`Timeline`): runnable processes
(``procs_running`` of ``/proc/stat``), the load average, how many workers were starting
(forked, trial not begun), the server's active backends and their wait events
(``pg_stat_activity``). :func:`trace` joins them for the reports slower than
:data:`SLOW_MS`, and gives the p99 of the reports of the steady state: outside every
worker's start (fork to its first trial) and every server outage.

>>> split([(0.0, 150.0, 2.0, 100.0, 40.0)], [], [], [])["slow"]["n"]
1
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
from typing import Any

SLOW_MS = 100.0  # the goal for a report's p99
AFTER_OUTAGE_S = 30.0  # a report this soon after a server outage ended is "after" it


def sched_ms() -> tuple[float, float]:
    """(on a core, waiting for a core) of this thread so far, in ms (nan when the kernel
    has no schedstat).

    >>> len(sched_ms())
    2
    """
    try:
        with open("/proc/thread-self/schedstat") as handle:
            run_ns, wait_ns = handle.read().split()[:2]
        return int(run_ns) / 1e6, int(wait_ns) / 1e6
    except (OSError, ValueError):
        return math.nan, math.nan


def machine_now() -> dict[str, float]:
    """Runnable and blocked processes (``/proc/stat``) and the 1-minute load average."""
    found = {"running": math.nan, "blocked": math.nan, "load1": math.nan}
    try:
        with open("/proc/stat") as handle:
            for line in handle:
                if line.startswith("procs_running"):
                    found["running"] = int(line.split()[1])
                elif line.startswith("procs_blocked"):
                    found["blocked"] = int(line.split()[1])
        with open("/proc/loadavg") as handle:
            found["load1"] = float(handle.read().split()[0])
    except (OSError, ValueError):
        pass
    return found


class Timeline:
    """The machine and the server, sampled every ``every_s`` by the benchmark's parent."""

    def __init__(self, dsn: dict | None, every_s: float = 0.5) -> None:
        self.dsn, self.every_s, self.next_at = dsn, every_s, 0.0
        self.samples: list[dict] = []
        self._conn: Any = None

    def sample(self, now: float, starting: int, live: int) -> None:
        if now < self.next_at:
            return
        self.next_at = now + self.every_s
        row = {"t": now, "starting": starting, "live": live, **machine_now()}
        row.update(self._server())
        self.samples.append(row)

    def _server(self) -> dict:
        if self.dsn is None:
            return {}
        try:
            if self._conn is None:
                import psycopg2

                self._conn = psycopg2.connect(connect_timeout=1, **self.dsn)
                self._conn.autocommit = True
            with self._conn.cursor() as cur:
                cur.execute(
                    "SELECT coalesce(wait_event_type, 'CPU'), count(*) FROM pg_stat_activity "
                    "WHERE state = 'active' AND backend_type = 'client backend' "
                    "AND pid <> pg_backend_pid() GROUP BY 1"
                )
                waits = dict(cur.fetchall())
            return {"pg_active": sum(waits.values()), "pg_waits": waits}
        except Exception:  # the server restarts: no sample, a new connection next time
            self.close()
            return {"pg_active": None}

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # already gone
                self._conn.close()
            self._conn = None


def _at(samples: list[dict], t: float) -> dict | None:
    """The sample nearest before ``t``."""
    found = None
    for row in samples:
        if row["t"] > t:
            break
        found = row
    return found


def _med(values: list[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return round(statistics.median(values), 1) if values else math.nan


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _overlaps(start: float, end: float, windows: list) -> bool:
    return any(start < b and end > a for a, b in windows)


def split(
    reports: list[tuple], starts: list, outages: list, samples: list[dict],
    asks: list | None = None, t0: float = 0.0,
) -> dict:  # fmt: skip
    """The reports (``(start, wall, cpu, runq, report_ms)``, ms, start on
    ``time.monotonic``) outside every outage: their p99 in the steady state (outside every
    worker's start window too) and overall, and the slow ones' time split and context."""
    asks = asks or []
    outside = [r for r in reports if not _overlaps(r[0], r[0] + r[1] / 1000, outages)]
    steady = [r for r in outside if not _overlaps(r[0], r[0] + r[1] / 1000, starts)]
    slow = [r for r in outside if r[1] > SLOW_MS]

    def shares(rows: list[tuple]) -> dict:
        wall = sum(r[1] for r in rows) or math.nan
        cpu = sum(r[2] for r in rows if not math.isnan(r[2]))
        runq = sum(r[3] for r in rows if not math.isnan(r[3]))
        return {
            "n": len(rows), "wall_ms_p50": _pct([r[1] for r in rows], 0.5),
            "cpu_share": round(cpu / wall, 3), "runq_share": round(runq / wall, 3),
            "other_share": round(max(0.0, wall - cpu - runq) / wall, 3),
            "cpu_ms_p50": _med([r[2] for r in rows]), "runq_ms_p50": _med([r[3] for r in rows]),
            "other_ms_p50": _med([r[1] - r[2] - r[3] for r in rows]),
            "report_ms_p50": _med([r[4] for r in rows]),
        }  # fmt: skip

    def context(rows: list[tuple]) -> dict:
        at = [_at(samples, r[0]) for r in rows]
        at = [a for a in at if a is not None]
        in_start = sum(1 for r in rows if _overlaps(r[0], r[0] + r[1] / 1000, starts))
        asking = [sum(1 for a, b in asks if a <= r[0] < b) for r in rows]
        after = [(b, b + AFTER_OUTAGE_S) for _, b in outages]
        return {
            "after_outage": sum(1 for r in rows if _overlaps(r[0], r[0] + r[1] / 1000, after)),
            "running_p50": _med([a["running"] for a in at]),
            "load1_p50": _med([a["load1"] for a in at]),
            "starting_p50": _med([a["starting"] for a in at]),
            "asking_p50": _med(asking),
            "pg_active_p50": _med([a.get("pg_active") for a in at]),
            "overlapping_a_start": in_start,
        }

    by_10s: dict[int, int] = {}
    for r in slow:
        key = int((r[0] - t0) // 10 * 10)
        by_10s[key] = by_10s.get(key, 0) + 1
    return {
        "p99_outside_ms": _pct([r[1] for r in outside], 0.99),
        "p99_steady_ms": _pct([r[1] for r in steady], 0.99),
        "p50_steady_ms": _pct([r[1] for r in steady], 0.5),
        "n_steady": len(steady),
        "all": {**shares(outside), **context(outside)},
        "slow": {**shares(slow), **context(slow)},
        "slow_by_10s": dict(sorted(by_10s.items())),
        "machine_running_p50": _med([s["running"] for s in samples]),
    }


def now() -> float:
    """The clock the workers and the parent share (``time.monotonic``)."""
    return time.monotonic()


def pid_of(data: Any) -> int | None:
    """The postmaster's pid from a data folder's ``postmaster.pid``."""
    try:
        return int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def server_cpu_s(data: Any) -> float:
    """CPU seconds of the server of data folder ``data``: its postmaster's (with the
    backends it reaped) and its live children's; not other servers of the machine.
    ``nan`` when it is not running."""
    postmaster = pid_of(data)
    if postmaster is None:
        return math.nan
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        rest = _stat(int(entry))
        if rest is None:
            continue
        if int(entry) == postmaster:
            total += sum(int(v) for v in rest[11:15]) / tick  # its own and reaped backends
        elif int(rest[1]) == postmaster:
            total += sum(int(v) for v in rest[11:13]) / tick
    return total


class ServerCpu:
    """A server's CPU seconds across restarts: each postmaster's last reading is kept when a
    new one replaces it (call :meth:`sample` before a stop and now and then)."""

    def __init__(self, data: Any) -> None:
        self.data, self.done, self.pid, self.last = data, 0.0, None, 0.0
        self.start = self.sample()

    def sample(self) -> float:
        pid, value = pid_of(self.data), server_cpu_s(self.data)
        if pid != self.pid:
            self.done += self.last
            self.pid, self.last = pid, 0.0
        if not math.isnan(value):
            self.last = value
        return self.done + self.last

    def used(self) -> float:
        return self.sample() - self.start
