"""What tunecb stores on Optuna trials and studies: user-attribute keys, stop reasons, the
finished states and the ``host:pid`` worker id, named once.

>>> parse_worker("node-1:4242")
('node-1', 4242)
>>> parse_worker("not a worker") is None
True
"""

from __future__ import annotations

import os
import socket

from optuna.trial import TrialState

WORKER = "worker"  # user attr: ``host:pid`` of the process that ran the trial
STOP_REASON = "stop_reason"
ERROR = "error"

# Stop reasons of trials that do not use a unit of the budget: their process died or was
# interrupted (the trial runs again under a new number), or it was started past the budget.
WORKER_DIED, INTERRUPTED, DISCARDED = "worker_died", "interrupted", "discarded"
NOT_COUNTED = (WORKER_DIED, INTERRUPTED, DISCARDED)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

# Study user attrs written when the study is created.
STUDY_MONITOR, STUDY_EPOCHS, STUDY_SHA = "monitor", "epochs", "study_sha256"


def worker_id(pid: int | None = None) -> str:
    """``host:pid`` of this process (or of ``pid`` on this host)."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def parse_worker(text: object) -> tuple[str, int] | None:
    """``(host, pid)`` of a worker id, or ``None`` when it is not one."""
    host, _, pid = str(text or "").rpartition(":")
    return (host, int(pid)) if host and pid.isdigit() else None


def on_this_host(text: object) -> int | None:
    """The pid of a worker id of this machine, else ``None``."""
    parsed = parse_worker(text)
    return parsed[1] if parsed and parsed[0] == socket.gethostname() else None
