"""What a person wants to know first about a study: best trial, states, epochs saved, time.

Plain numbers from the report records and the Optuna trials; no pandas, no TensorFlow.

>>> o = overview(study_records("results/digits"))  # doctest: +SKIP
>>> o.epochs_trained, o.epochs_budget  # doctest: +SKIP
(412, 900)
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tunecb.oracle import attrs as keys
from tunecb.reporting.data.records import StudyRecords
from tunecb.wording import duration_text, plural, size_text

THIS_PROCESS = "(one process)"  # trials that name no worker ran in the launcher


@dataclass(frozen=True)
class Overview:
    """A study summed up; ``None`` where the study cannot say (e.g. not run by tunecb)."""

    name: str
    monitor: str
    direction: str
    states: dict[str, int]
    best: dict[str, Any] | None  # the best record (rank 1 among COMPLETE trials)
    epochs_budget: int | None  # epochs every finished trial could have trained
    epochs_trained: int
    saved_by: dict[str, int] = field(default_factory=dict)  # stop reason → epochs not trained
    wall_s: float | None = None  # first trial start → last trial end
    compute_s: float = 0.0  # the trials' durations added up
    workers: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    checkpoints: int = 0
    checkpoint_bytes: int = 0
    checkpoints_removed: list[int] = field(default_factory=list)
    backends: dict[str, int] = field(default_factory=dict)  # "jax 0.10.2" → finished trials


def overview(result: StudyRecords) -> Overview:
    """Sum up a study's records (see :func:`tunecb.reporting.data.records.study_records`)."""
    records = result.records
    states = Counter(r["state"] for r in records)
    best = next(
        (r for r in records if r["state"] == "COMPLETE" and finite_number(r["value"])), None
    )
    finished = [r for r in records if r["state"] in ("COMPLETE", "PRUNED", "FAIL")]
    trained = sum(int(r["epochs"] or 0) for r in finished)
    budget = result.epochs * len(finished) if result.epochs else None
    saved: Counter[str] = Counter()
    if result.epochs:
        for r in finished:
            left = result.epochs - int(r["epochs"] or 0)
            if left > 0:
                saved[r["stop_reason"] or r["state"].lower()] += left
    starts, ends, workers = [], [], []
    for trial in result.trials.values():
        if trial.datetime_start is not None:
            starts.append(trial.datetime_start)
            ends.append(trial.datetime_complete or trial.datetime_start)
        workers.append(trial.user_attrs.get(keys.WORKER) or THIS_PROCESS)
    wall = (max(ends) - min(starts)).total_seconds() if starts else None
    unique = sorted(set(workers))
    hosts = sorted({w.rsplit(":", 1)[0] for w in unique if w != THIS_PROCESS})
    files, size = result.study_dir.checkpoint_usage() if result.study_dir else (0, 0)
    removed = sorted(r["trial"] for r in records if r.get("checkpoint_removed"))
    backends = Counter(r["backend"] for r in finished if r.get("backend"))
    return Overview(
        name=result.name,
        monitor=result.monitor or "value",
        direction=result.direction,
        states=dict(states),
        best=best,
        epochs_budget=budget,
        epochs_trained=trained,
        saved_by=dict(saved.most_common()),
        wall_s=wall,
        compute_s=sum(float(r["duration_s"] or 0.0) for r in finished),
        workers=unique,
        hosts=hosts,
        checkpoints=files,
        checkpoint_bytes=size,
        checkpoints_removed=removed,
        backends=dict(backends.most_common()),
    )


def finite_number(value: Any) -> bool:
    """A real, finite number (not ``None``, NaN or inf)."""
    return isinstance(value, int | float) and math.isfinite(value)


SAVED_BY = {
    keys.PRUNED: "pruning",
    keys.EARLY_STOPPED: "early stopping",
    keys.INFEASIBLE: "constraints",
    keys.NAN: "NaN stops",
    keys.FAILED: "failures",
    keys.WORKER_DIED: "dead workers",
    keys.KILLED: "repeated deaths",
    keys.TIME_LIMIT: "time limits",
    keys.INTERRUPTED: "interruptions",
}


def saved_text(info: Overview) -> str:
    """What each stop reason saved, e.g. ``pruning 493, early stopping 97`` (or ``""``)."""
    return ", ".join(f"{SAVED_BY.get(k, k)} {n:,}" for k, n in info.saved_by.items() if n)


def backend_line(info: Overview) -> str:
    """``on jax 0.10.2``, or the mix: ``MIXED backends: tensorflow 2.21.0 (3 trials), ...``.

    >>> backend_line(Overview("s", "v", "maximize", {}, None, None, 0,
    ...                       backends={"jax 0.10.2": 2, "tensorflow 2.21.0": 1}))
    'MIXED backends: jax 0.10.2 (2 trials), tensorflow 2.21.0 (1 trial)'
    """
    if not info.backends:
        return ""
    if len(info.backends) == 1:
        return f"on {next(iter(info.backends))}"
    return "MIXED backends: " + ", ".join(
        f"{b} ({plural(n, 'trial')})" for b, n in info.backends.items()
    )


def one_line(info: Overview) -> str:
    """The overview in one line, for the terminal (:func:`line_parts` joined by `` · ``).

    >>> one_line(overview(study_records("results/digits")))  # doctest: +SKIP
    'trained 310 of 900 epochs (34%; saved: pruning 493, early stopping 97) · ...'
    """
    return " · ".join(line_parts(info))


def line_parts(info: Overview) -> list[str]:
    """The pieces of :func:`one_line`, for a terminal to wrap between them.

    >>> for part in line_parts(Overview("s", "v", "maximize", {"COMPLETE": 1}, None, 3, 1,
    ...         wall_s=2.0, workers=[THIS_PROCESS], checkpoints=1, checkpoint_bytes=512)):
    ...     print(part)
    trained 1 of 3 epochs (33%)
    2.0s wall clock
    1 worker process
    checkpoints 1 file, 512 B
    """
    if info.epochs_budget:
        saved = saved_text(info)
        epochs = (
            f"trained {info.epochs_trained:,} of {plural(info.epochs_budget, 'epoch')} "
            f"({info.epochs_trained / info.epochs_budget:.0%}"
            + (f"; saved: {saved})" if saved else ")")
        )
    else:
        epochs = f"trained {plural(info.epochs_trained, 'epoch')}"
    workers = plural(len(info.workers), "worker process")
    parts = [epochs, f"{duration_text(info.wall_s)} wall clock", workers]
    if info.backends:
        parts.append(backend_line(info))
    disk = f"checkpoints {plural(info.checkpoints, 'file')}, {size_text(info.checkpoint_bytes)}"
    if info.checkpoints_removed:
        disk += f", {len(info.checkpoints_removed)} removed by --keep-checkpoints"
    return [*parts, disk]


def sources(result: StudyRecords) -> list[str]:
    """Where the trials came from, when not all from the sampler: the warm-start source
    (``--warm-start``) with the trials it added as prior knowledge (not listed) and those of
    its best that ran first, and the configurations given with ``--enqueue``.

    >>> records = [{"trial": 0, "given": "--warm-start-enqueue: o trial 7"},
    ...            {"trial": 2, "given": "--enqueue a.csv line 2"}, {"trial": 1}]
    >>> warm, given = sources(StudyRecords("s", "minimize", None, None, records, warm_start={
    ...     "from": "o", "study": "s", "added": 19, "queued": 1}))
    >>> for part in warm.split("; "):
    ...     print(part)
    warm start from o (study 's'): 19 of its trials as prior knowledge (not trained, not listed)
    its best 1 queued first: trial 0 (given)
    >>> given
    'given with --enqueue: trial 2'
    """
    warm, lines = result.warm_start, []
    queued = [r["trial"] for r in result.records if (r.get("given") or "").startswith(_WARM)]
    if warm:
        added = warm.get("added")
        prior = "none of its trials yet" if added is None else f"{added} of its trials"
        text = (f"warm start from {warm['from']} (study {warm['study']!r}): {prior} as prior "
                "knowledge (not trained, not listed)")  # fmt: skip
        if warm.get("queued"):
            text += f"; its best {warm['queued']} queued first: {_trials(queued)} (given)"
        lines.append(text)
    given = [r["trial"] for r in result.records
             if r.get("given") and not r["given"].startswith(_WARM)]  # fmt: skip
    if given:
        lines.append(f"given with --enqueue: {_trials(given)}")
    return lines


_WARM = "--warm-start-enqueue"


def _trials(numbers: list[int]) -> str:
    if not numbers:
        return "none run yet"
    return f"trial{'s' * (len(numbers) > 1)} {', '.join(map(str, sorted(numbers)))}"
