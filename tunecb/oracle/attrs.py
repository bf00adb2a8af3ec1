"""What tunecb stores on Optuna trials and studies, named once: user-attribute keys, stop
reasons, the finished states and the ``host:pid`` worker id. Every other module imports
these names; the strings are what studies already written hold, so they never change.

>>> parse_worker("node-1:4242")
('node-1', 4242)
>>> parse_worker("not a worker") is None
True
>>> NOT_COUNTED
('worker_died', 'interrupted', 'discarded', 'warm_start')
"""

from __future__ import annotations

import os
import socket

from optuna.trial import TrialState

from tunecb.storage.stale import FAILED_TRIAL, RETRY_HISTORY  # noqa: F401 (re-exported)

# Trial user attrs. The runner's outcome (tunecb.oracle.outcome.TrialOutcome) is stored
# field by field under its own names, the objective as ``best_value``.
WORKER = "worker"  # ``host:pid`` of the process that ran the trial
# when that process started (tunecb.oracle.attempts.process_start), so that a later process
# with the same pid (a container's entrypoint is PID 1 every time) knows the owner is gone
WORKER_START = "worker_start"
STOP_REASON = "stop_reason"  # one of STOP_REASONS
ERROR = "error"
BEST_VALUE = "best_value"  # the best monitored value (Optuna's value of a PRUNED trial is its last)
BEST_EPOCH = "best_epoch"
EPOCHS_RUN = "epochs_run"
CHECKPOINT = "checkpoint"  # the best checkpoint, relative to the study folder
DURATION = "duration_s"
N_PARAMS, SEED, LR_SCHEDULE = "n_params", "seed", "lr_schedule"
RESUMED_FROM = "resumed_from_epoch"  # the epoch a rerun resumed from its backup
# The built model's constraint violation, when the study states constraints (max_params=,
# constraint=): > 0 infeasible (the trial never trained), <= 0 feasible. The default
# sampler reads it (tunecb.oracle.attempts.violation) to learn where models are infeasible.
CONSTRAINT = "constraint"
# A multi-objective trial's values, {name: value} in the study's order (at its best epoch);
# and per rung epoch, the values the Pareto pruner judged it by ("pareto_rung_<epoch>").
OBJECTIVES = "objectives"
PARETO_RUNG = "pareto_rung_"
VERSIONS = "versions"  # {"backend": name, name: version, ...}
DATA = "data"  # the data function's fingerprint (also a study attr: the first trial's)
TRAINING = "training"  # the settings that shaped the training (rerun reads them)
TRIAL_STUDY_SHA = "study_sha256"  # the study file's hash when the trial ran
STUDY_IN_CODE = "study_in_code"  # True: declared in a script or notebook, not a study file
# A configuration the user gave to run first (--enqueue): {"from": "FILE line N", "params"}
GIVEN = "given"
WARM_START = "warm_start"  # {"from": folder or URL, "number": n, "epoch"}: a copied trial
# ... or {"from": "killed", "number": n}: the prior that tells the sampler trial n's
# configuration kept killing its process (tunecb.oracle.deaths.tell_sampler)
KILLED_PRIOR = "killed"

# RETRY_HISTORY, FAILED_TRIAL (imported above): Optuna's system attrs on a rerun trial (as
# its RetryHeartbeatStaleTrialCallback writes them): the numbers of the attempts it reruns,
# first first; the attempt it directly reruns.
# How an attempt's process died (tunecb.oracle.deaths.Death.record), and what a later run
# needs to judge a death it finds: the worker's resident memory (MiB) while the trial ran,
# the cgroup's OOM-kill count when it started.
DEATH, RSS_MB, OOM_KILLS = "death", "rss_mb", "oom_kills"
# System attr of a continuation of a paused trial (tunecb.oracle.promotions): the number of
# the paused attempt it resumes (it is also the last entry of its retry_history).
PROMOTED_FROM = "promoted_from"
# User attr of a continuation resumed from the model its worker kept in memory since the
# pause (tunecb.training.kept_models), not from the backup; absent otherwise.
RESUMED_IN_MEMORY = "resumed_in_memory"

# Stop reasons the trial runner sets.
COMPLETED, EARLY_STOPPED, PRUNED, NAN, FAILED = (
    "completed", "early_stopped", "pruned", "nan", "failed",
)  # fmt: skip
# A PRUNED trial whose built model broke the study's constraints: it never trained (no
# epoch, no checkpoint). It uses a unit of the budget (n_trials counts configurations) and
# is neither a failure nor a success for the fail-fast and "every trial failed" rules.
INFEASIBLE = "infeasible"
# A PRUNED trial that the promotion pruner paused at a rung: its backup is kept, and a free
# worker resumes it (a new trial, the same configuration) once it ranks high enough there.
PAUSED = "paused"
RUNNER_FAILED = (FAILED, NAN)  # FAIL reasons of a trial that ran to its end in the runner
# Stop reasons of trials that do not use a unit of the budget: their process died or was
# interrupted (the trial runs again under a new number), or it was started past the budget.
WORKER_DIED, INTERRUPTED, DISCARDED = "worker_died", "interrupted", "discarded"
# A COMPLETE trial copied from an earlier study (--warm-start): prior knowledge, never run.
WARM_START_REASON = "warm_start"
NOT_COUNTED = (WORKER_DIED, INTERRUPTED, DISCARDED, WARM_START_REASON)
# A FAIL whose configuration killed its process too often (tunecb.oracle.deaths): counted.
KILLED = "killed"
# A trial that ran past --trial-timeout or --epoch-timeout: COMPLETE with its best so far
# when it stopped at an epoch end, FAIL when its process had to be ended (no epoch ended).
TIME_LIMIT = "time_limit"
STOP_REASONS = (
    COMPLETED, EARLY_STOPPED, PRUNED, NAN, FAILED, *NOT_COUNTED, INFEASIBLE, KILLED, TIME_LIMIT,
    PAUSED,
)  # fmt: skip

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

# Study user attrs written when the study is created.
STUDY_MONITOR, STUDY_EPOCHS, STUDY_SHA = "monitor", "epochs", "study_sha256"
STUDY_FILE, STUDY_VERSION = "study_file", "tunecb_version"
# The study file hash whose search-space diff was shown (tunecb.oracle.space.notice).
SPACE_NOTED = "space_noted"
WARM_FROM = "warm_from"  # {"from": results folder, "study": name}: --warm-start's source
STUDY_OBJECTIVES = "objectives"  # "val_accuracy:max,params:min" of a multi-objective study


def worker_id(pid: int | None = None) -> str:
    """``host:pid`` of this process (or of ``pid`` on this host)."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


_TOKEN: list[str] = []  # this process's stand-in start where /proc is missing


def process_start(pid: int | None = None) -> str | None:
    """When process ``pid`` (default: this one) started, as a token that differs between
    two processes that had the same pid: its start time in clock ticks after boot (Linux
    ``/proc/<pid>/stat``), with the boot's id. Without ``/proc``, a random token for this
    process, ``None`` for another (unknown).

    >>> process_start() == process_start(os.getpid()) != None
    True
    """
    pid = os.getpid() if pid is None else pid
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
        ticks = stat[stat.rindex(b")") + 2 :].split()[19].decode()
    except (OSError, ValueError, IndexError):
        if pid != os.getpid():
            return None
        if not _TOKEN:
            import secrets

            _TOKEN.append(f"token-{secrets.token_hex(8)}")
        return _TOKEN[0]
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            boot = handle.read().strip()[:8]
    except OSError:
        boot = "boot"
    return f"{boot}-{ticks}"


def parse_worker(text: object) -> tuple[str, int] | None:
    """``(host, pid)`` of a worker id, or ``None`` when it is not one."""
    host, _, pid = str(text or "").rpartition(":")
    return (host, int(pid)) if host and pid.isdigit() else None


def on_this_host(text: object) -> int | None:
    """The pid of a worker id of this machine, else ``None``."""
    parsed = parse_worker(text)
    return parsed[1] if parsed and parsed[0] == socket.gethostname() else None
