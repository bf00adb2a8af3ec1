"""What tunecb stores on Optuna trials and studies, named once: user-attribute keys, stop
reasons, the finished states and the ``host:pid`` worker id. Every other module imports
these names; the strings are what studies already written hold, so they never change.

>>> parse_worker("node-1:4242")
('node-1', 4242)
>>> parse_worker("not a worker") is None
True
>>> NOT_COUNTED
('worker_died', 'interrupted', 'discarded')
"""

from __future__ import annotations

import os
import socket

from optuna.trial import TrialState

# Trial user attrs. The runner's outcome (tunecb.oracle.outcome.TrialOutcome) is stored
# field by field under its own names, the objective as ``best_value``.
WORKER = "worker"  # ``host:pid`` of the process that ran the trial
STOP_REASON = "stop_reason"  # one of STOP_REASONS
ERROR = "error"
BEST_VALUE = "best_value"  # the best monitored value (Optuna's value of a PRUNED trial is its last)
BEST_EPOCH = "best_epoch"
EPOCHS_RUN = "epochs_run"
CHECKPOINT = "checkpoint"  # the best checkpoint, relative to the study folder
DURATION = "duration_s"
N_PARAMS, SEED, LR_SCHEDULE = "n_params", "seed", "lr_schedule"
RESUMED_FROM = "resumed_from_epoch"  # the epoch a rerun resumed from its backup
VERSIONS = "versions"  # {"backend": name, name: version, ...}
DATA = "data"  # the data function's fingerprint (also a study attr: the first trial's)
TRAINING = "training"  # the settings that shaped the training (rerun reads them)
TRIAL_STUDY_SHA = "study_sha256"  # the study file's hash when the trial ran
STUDY_IN_CODE = "study_in_code"  # True: declared in a script or notebook, not a study file

# Optuna's system attrs on a rerun trial (as its RetryHeartbeatStaleTrialCallback writes
# them): the numbers of the attempts it reruns, first first; the attempt it directly reruns.
RETRY_HISTORY, FAILED_TRIAL = "retry_history", "failed_trial"

# Stop reasons the trial runner sets.
COMPLETED, EARLY_STOPPED, PRUNED, NAN, FAILED = (
    "completed", "early_stopped", "pruned", "nan", "failed",
)  # fmt: skip
RUNNER_FAILED = (FAILED, NAN)  # FAIL reasons of a trial that ran to its end in the runner
# Stop reasons of trials that do not use a unit of the budget: their process died or was
# interrupted (the trial runs again under a new number), or it was started past the budget.
WORKER_DIED, INTERRUPTED, DISCARDED = "worker_died", "interrupted", "discarded"
NOT_COUNTED = (WORKER_DIED, INTERRUPTED, DISCARDED)
STOP_REASONS = (COMPLETED, EARLY_STOPPED, PRUNED, NAN, FAILED, *NOT_COUNTED)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

# Study user attrs written when the study is created.
STUDY_MONITOR, STUDY_EPOCHS, STUDY_SHA = "monitor", "epochs", "study_sha256"
STUDY_FILE, STUDY_VERSION = "study_file", "tunecb_version"


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
