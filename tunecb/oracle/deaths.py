"""A trial whose process dies: run again, or failed for good after a stated number of deaths.

A worker killed from outside says nothing about its trial, and its trial runs again
(:func:`tunecb.oracle.attempts.fail_and_requeue`). But the kernel's out-of-memory killer
sends the same SIGKILL as an operator, and a configuration too large for the machine then
dies every time it runs: before this rule, the same parameters ran again forever.

The deaths of one configuration are counted along its attempts (Optuna's ``retry_history``
lineage). Each death is recorded on the attempt (``death``: how it died, the worker's last
resident memory, whether the cgroup's OOM killer acted, and whether it counts):

- SIGTERM, SIGINT, SIGHUP (an operator's or a scheduler's stop) never count: the trial
  always runs again;
- any other death counts (SIGKILL, a crash, a process found gone by a later run):
  the trial FAILs for good (stop reason ``killed``, counted in the budget, told to the
  sampler as failed) on its ``MAX_DEATHS``-th death, or already on its
  ``MAX_MEMORY_DEATHS``-th when the system says memory ran out (the cgroup's
  ``memory.events`` ``oom_kill`` counter moved while it ran, or its last resident memory
  was at least ``NEAR_LIMIT`` of the memory it may use);
- an out-of-memory error raised inside the trial (TensorFlow's ``ResourceExhaustedError``
  / "OOM when allocating", JAX's "RESOURCE_EXHAUSTED: Out of memory", PyTorch's "CUDA out
  of memory", :data:`OOM_ERRORS`) is a memory death too (:func:`from_error`): its worker
  lives on, but the trial is queued again the first time (the memory may have been
  another trial's, on a shared GPU), and FAILs as ``killed`` on the ``MAX_MEMORY_DEATHS``-th.

The cost: an operator who SIGKILLs the same configuration ``MAX_DEATHS`` times fails it.

The sampler learns it (:func:`tell_sampler`): TPE ignores FAIL trials, and would propose
the same region again, each proposal costing up to ``MAX_DEATHS`` more deaths. So a
configuration failed for good is also added as a finished prior trial with its parameters,
marked infeasible (a positive constraint, which Optuna 5's TPE and NSGA-II read from every
trial, whether or not the study states constraints). It is marked as a warm-start prior is
(:mod:`tunecb.oracle.warm`): stop reason ``warm_start``, ``warm_start`` ``{"from":
"killed", "number": n}``; so it is not counted in the budget, not shown by the report, and
never the best. Its value, which those samplers do not read for an infeasible trial, is
the worst the study has seen. Samplers that read values only (random, QMC, CMA-ES, GP) get
no such trial.

>>> death = Death("SIGKILL", rss_mb=23_500.0, oom=True)
>>> death.counts, death.memory
(True, True)
>>> failure_reason([death, death])
'killed 2 times (SIGKILL), last at 22.9 GiB RSS, the OOM killer acted: out of memory?'
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass
from typing import Any

import optuna

from tunecb.oracle import attrs

MAX_DEATHS = 3  # deaths of one configuration that fail it for good
MAX_MEMORY_DEATHS = 2  # ... when the system says memory ran out
NEAR_LIMIT = 0.9  # of the memory a process may use: resident memory that close is a cause
# Deaths by these signals are an operator's or a scheduler's stop: they never count.
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")


@dataclass(frozen=True)
class Death:
    """How one attempt's process died, as far as this machine can tell.

    ``how``: ``SIGKILL``, ``exit code 1``, ``its process is gone`` (found by a later run),
    ``out of memory`` (an error raised in the trial); ``rss_mb``: its resident memory last
    seen; ``oom``: the cgroup's OOM killer acted while it ran (``None``: unknown);
    ``limit_mb``: the memory it could use (``None``: unknown); ``error``: the first line of
    the out-of-memory error it raised.
    """

    how: str
    rss_mb: float | None = None
    oom: bool | None = None
    limit_mb: float | None = None
    error: str | None = None

    @property
    def counts(self) -> bool:
        """Whether this death counts towards failing the configuration."""
        return self.how not in STOP_SIGNALS

    @property
    def memory(self) -> bool:
        """Whether the system says memory ran out (the OOM killer, or RSS near the limit).

        >>> Death("SIGKILL", rss_mb=950.0, limit_mb=1000.0).memory
        True
        """
        if self.oom or self.error:
            return True
        return bool(self.rss_mb and self.limit_mb and self.rss_mb >= NEAR_LIMIT * self.limit_mb)

    def record(self) -> dict[str, Any]:
        """What is stored on the dead attempt (user attr ``death``)."""
        return {**asdict(self), "counts": self.counts, "memory": self.memory}


def earlier_deaths(study: optuna.Study, trial: Any) -> list[Death]:
    """The counted deaths of ``trial``'s earlier attempts (its ``retry_history``)."""
    found = []
    history = trial.system_attrs.get(attrs.RETRY_HISTORY, ())
    for number in history:
        record = attempt(study, number).user_attrs.get(attrs.DEATH)
        if isinstance(record, dict) and record.get("counts"):
            known = {k: record.get(k) for k in ("how", "rss_mb", "oom", "limit_mb", "error")}
            found.append(Death(**known))
    return found


def attempt(study: optuna.Study, number: int) -> Any:
    """Trial ``number`` of the study as its storage holds it now (frozen).

    >>> study = optuna.create_study()
    >>> attempt(study, study.ask().number).state.name
    'RUNNING'
    """
    storage = study._storage
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return storage.get_trial(trial_id)


def fails_for_good(deaths: list[Death]) -> bool:
    """Whether these counted deaths (the last one included) end the configuration.

    >>> fails_for_good([Death("SIGKILL")] * 2), fails_for_good([Death("SIGKILL")] * 3)
    (False, True)
    """
    limit = MAX_MEMORY_DEATHS if any(d.memory for d in deaths) else MAX_DEATHS
    return len(deaths) >= limit


def failure_reason(deaths: list[Death]) -> str:
    """The one line a configuration failed for good with, e.g. ``killed 3 times (SIGKILL),
    last at 812 MiB RSS: out of memory, or killed from outside?``."""
    errors = [d.error for d in deaths if d.error]
    if len(errors) == len(deaths):  # all raised inside the trial: its process lived on
        return f"out of memory {len(deaths)} times ({errors[-1]}): too large for its memory?"
    hows = ", ".join(sorted({d.how for d in deaths}))
    text = f"killed {len(deaths)} times ({hows})"
    if errors:
        text += f", out of memory ({errors[-1]})"
    last = deaths[-1]
    if last.rss_mb:
        text += f", last at {_size(last.rss_mb)} RSS"
        if last.limit_mb:
            text += f" of {_size(last.limit_mb)}"
    if any(d.oom for d in deaths):
        return f"{text}, the OOM killer acted: out of memory?"
    if any(d.memory for d in deaths):
        return f"{text}: out of memory?"
    return f"{text}: out of memory, a crash in native code, or killed from outside?"


def tell_sampler(study: optuna.Study, trial: Any, reason: str) -> None:
    """Tell ``study``'s sampler that ``trial``'s configuration (failed for good as killed,
    for ``reason``) is infeasible: a finished prior trial with its parameters, a positive
    constraint and the study's worst value, not counted and never the best (see the module
    docstring). Nothing when the sampler reads no constraints from trials."""
    if not trial.params or not _reads_constraints(study.sampler):
        return
    study.add_trial(
        optuna.trial.create_trial(
            params=trial.params,
            distributions=trial.distributions,
            values=_worst_values(study),
            user_attrs={
                attrs.WARM_START: {"from": attrs.KILLED_PRIOR, "number": trial.number},
                attrs.STOP_REASON: attrs.WARM_START_REASON,
                attrs.ERROR: reason,
            },
            system_attrs={_CONSTRAINTS: [1.0]},  # Optuna 4's form; Optuna 5 reads it too
        )
    )


_CONSTRAINTS = "constraints"  # optuna.study._constrained_optimization._CONSTRAINTS_KEY


def _reads_constraints(sampler: Any) -> bool:
    """Whether ``sampler`` learns from the constraints stored on trials: Optuna 5's TPE
    and NSGA-II always, Optuna 4's only with a ``constraints_func``."""
    if not isinstance(sampler, optuna.samplers.TPESampler | optuna.samplers.NSGAIISampler):
        return False
    optuna5 = hasattr(optuna.trial.FrozenTrial, "constraints")
    return optuna5 or getattr(sampler, "_constraints_func", None) is not None


def _worst_values(study: optuna.Study) -> list[float]:
    """Per objective, the worst finite value of the study's own COMPLETE trials (0.0
    before one)."""
    import math

    own = [
        t.values
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if attrs.WARM_START not in t.user_attrs and t.values
    ]
    worst = []
    for i, direction in enumerate(study.directions):
        seen = [v[i] for v in own if math.isfinite(v[i])]
        pick = min if direction == optuna.study.StudyDirection.MAXIMIZE else max
        worst.append(pick(seen) if seen else 0.0)
    return worst


def _size(mb: float) -> str:
    return f"{mb / 1024:.1f} GiB" if mb >= 1024 else f"{mb:.0f} MiB"


def died_text(death: Death) -> str:
    """The error of a dead attempt that runs again, e.g. ``worker killed by SIGKILL at
    812 MiB RSS``."""
    if death.error:
        return f"out of memory ({death.error}); it runs again"
    text = death.how if death.how.startswith("its ") else f"worker {death.how}"
    if death.how.startswith("SIG"):
        text = f"worker killed by {death.how}"
    if death.rss_mb:
        text += f" at {_size(death.rss_mb)} RSS"
    return text + (" (the OOM killer acted)" if death.oom else "")


# Out-of-memory errors a trial raises (the text of a stored error holds one of these):
# TensorFlow's (GPU or host), JAX/XLA's, PyTorch's.
OOM_ERRORS = (
    "ResourceExhaustedError",
    "OOM when allocating",
    "RESOURCE_EXHAUSTED: Out of memory",
    "CUDA out of memory",
    "OutOfMemoryError",
    "WorkerMemoryExceeded",  # tunecb.training.memory_limit: past --worker-memory mid-trial
)


def from_error(error: str | None) -> Death | None:
    """The memory death an error raised inside a trial stands for (``error``: the stored
    text, :func:`tunecb.errors.describe_error`), ``None`` for any other error.

    >>> from_error("ResourceExhaustedError: OOM when allocating tensor\\nmore").error
    'ResourceExhaustedError: OOM when allocating tensor'
    >>> from_error("ValueError: bad shape") is None
    True
    """
    if not error or not any(pattern in error for pattern in OOM_ERRORS):
        return None
    first = error.strip().splitlines()[0]
    return Death("out of memory", error=first if len(first) <= 200 else first[:197] + "...")


# -- what the system says ------------------------------------------------------------------


def oom_kills() -> int | None:
    """The OOM killer's kills in this process's memory cgroup (cgroup v2 ``memory.events``,
    v1 ``memory.oom_control``), ``None`` where the system does not say.

    >>> isinstance(oom_kills(), int | None)
    True
    """
    for path, key in _cgroup_files(("memory.events", "memory.oom_control")):
        with contextlib.suppress(OSError, ValueError), open(path) as handle:
            for line in handle:
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    return None


def memory_limit_mb() -> float | None:
    """The memory this process's cgroup may use (``memory.max``), else the machine's."""
    for path, _ in _cgroup_files(("memory.max", "memory.limit_in_bytes")):
        with contextlib.suppress(OSError, ValueError):
            with open(path) as handle:
                text = handle.read().strip()
            if text != "max" and int(text) < 2**60:
                return int(text) / 2**20
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
    return None


def _cgroup_files(names: tuple[str, str]) -> list[tuple[str, str]]:
    """Candidate paths of a cgroup v2 file and its v1 twin, with the key each holds."""
    keys = {"memory.events": "oom_kill", "memory.oom_control": "oom_kill"}
    found = []
    with contextlib.suppress(OSError), open("/proc/self/cgroup") as handle:
        for line in handle:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controllers == "":
                found.append((f"/sys/fs/cgroup{path}/{names[0]}", keys.get(names[0], "")))
            elif "memory" in controllers.split(","):
                base = f"/sys/fs/cgroup/memory{path}/{names[1]}"
                found.append((base, keys.get(names[1], "")))
    found.append((f"/sys/fs/cgroup/{names[0]}", keys.get(names[0], "")))
    return found


def rss_of(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MiB (Linux ``/proc``), ``None`` when gone."""
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def note_start(trial: optuna.Trial) -> None:
    """Record on a starting trial what a later run needs to judge its death: the OOM
    killer's count now (and the memory it may use)."""
    kills = oom_kills()
    if kills is not None:
        trial.set_user_attr(attrs.OOM_KILLS, kills)


def found_dead(trial: Any, pid: int) -> Death:
    """The death of a RUNNING trial whose process ``pid`` a later run found gone: its last
    recorded memory, and whether the OOM killer acted since it started."""
    before, now = trial.user_attrs.get(attrs.OOM_KILLS), oom_kills()
    oom = None if before is None or now is None else now > before
    rss = trial.user_attrs.get(attrs.RSS_MB)
    return Death(f"its process {pid} is gone", rss if isinstance(rss, int | float) else None,
                 oom, memory_limit_mb())  # fmt: skip
