"""The order of a study's trials, shared by the report and ``--keep-checkpoints``:
COMPLETE trials by the objective, then PRUNED ones by their best value, then FAIL, RUNNING
and WAITING; and one trial as a plain record (no pandas).
"""

from __future__ import annotations

import math
from typing import Any

from tunecb.oracle import attrs as keys
from tunecb.oracle.outcome import COMPLETE, FAIL, PRUNED
from tunecb.results import StudyDir

_STATE_ORDER = {COMPLETE: 0, PRUNED: 1, FAIL: 2, "RUNNING": 3, "WAITING": 4}


def trial_record(trial: Any, study_dir: StudyDir | None, rerun: bool = False) -> dict[str, Any]:
    """One trial as a report record (``study_dir=None``: no file is read, no checkpoint).
    ``checkpoint_removed`` (not a column) is ``--keep-checkpoints``' mark when it removed
    the trial's checkpoint (``{"at", "keep_checkpoints", "by"}``), else ``None``."""
    attrs = trial.user_attrs
    value = attrs.get(keys.BEST_VALUE)
    if keys.BEST_VALUE not in attrs:  # (a multi-objective trial has no single ``value``)
        value = trial.value
    epochs = attrs.get(keys.EPOCHS_RUN)
    if epochs is None and trial.intermediate_values:
        epochs = max(trial.intermediate_values)
    duration = attrs.get(keys.DURATION)
    if duration is None and trial.duration is not None:
        duration = round(trial.duration.total_seconds(), 3)
    checkpoint = None
    if study_dir is not None and attrs.get(keys.CHECKPOINT):
        file = study_dir.root / attrs[keys.CHECKPOINT]
        checkpoint = str(file) if file.is_file() else None
    removed = None
    if study_dir is not None and checkpoint is None:
        removed = study_dir.checkpoint_removal(trial.number)
    record = {
        "trial": trial.number,
        "state": trial.state.name,
        "value": value,
        "best_epoch": attrs.get(keys.BEST_EPOCH),
        "epochs": epochs,
        "stop_reason": attrs.get(
            keys.STOP_REASON,
            keys.WORKER_DIED
            if rerun and trial.state.name == FAIL
            else _default_reason(trial.state.name),
        ),
        "duration_s": duration,
    }
    for name, param in trial.params.items():
        record[f"params_{name}"] = param
    record["backend"] = backend_text(attrs.get(keys.VERSIONS))
    record["checkpoint"] = checkpoint
    record["checkpoint_removed"] = removed
    return record


def backend_text(versions: Any) -> str | None:
    """``"jax 0.10.2"`` from a trial's recorded versions (trials recorded before the backend
    was: TensorFlow, the only one then); ``None`` when nothing was recorded.

    >>> backend_text({"backend": "jax", "jax": "0.10.2"}), backend_text({"tensorflow": "2.21"})
    ('jax 0.10.2', 'tensorflow 2.21')
    """
    if not isinstance(versions, dict):
        return None
    name = versions.get("backend") or ("tensorflow" if "tensorflow" in versions else None)
    if name is None:
        return None
    return f"{name} {versions.get(name, '?')}"


def _default_reason(state: str) -> str | None:
    return {COMPLETE: keys.COMPLETED, PRUNED: keys.PRUNED, FAIL: keys.FAILED}.get(state)


def rank_key(record: dict[str, Any], maximize: bool) -> tuple:
    """The report's order: COMPLETE by the objective, then PRUNED by their best value, then
    FAIL, RUNNING, WAITING; ties by trial number (a total order).

    >>> rank_key({"state": "PRUNED", "value": 0.9, "trial": 1}, True) > rank_key(
    ...     {"state": "COMPLETE", "value": 0.1, "trial": 2}, True)
    True
    """
    value = record["value"]
    missing = value is None or not math.isfinite(value)
    score = 0.0 if missing else (-value if maximize else value)
    return (_STATE_ORDER.get(record["state"], 5), missing, score, record["trial"])
