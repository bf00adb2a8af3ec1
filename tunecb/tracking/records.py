"""A finished trial's record for a tracker, read from tunecb's own files: its
``trial.json`` (written by the trial runner), its ``history.csv`` and its best checkpoint.
The live tracking of a search and ``tunecb sync`` read the same record.

>>> import tempfile
>>> folder = StudyDir(Path(tempfile.mkdtemp()))
>>> trial_record(folder, 0, {"state": "FAIL", "params": {"units": 8}}).params
{'units': 8}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunecb.oracle import attrs as keys
from tunecb.results import StudyDir, read_history, read_json
from tunecb.tracking._base import TrialRecord


def trial_record(study_dir: StudyDir, number: int, fallback: Any = None) -> TrialRecord:
    """Trial ``number``'s record; ``fallback`` (a dict, or an object with the trial's
    attrs) stands in for a ``trial.json`` that is missing."""
    data = read_json(study_dir.trial_json(number))
    if data is None:
        data = dict(fallback) if isinstance(fallback, dict) else _from_object(fallback)
    checkpoint: Path = study_dir.checkpoint(number)
    return TrialRecord(
        number=number,
        state=str(data.get("state") or "FAIL"),
        params=dict(data.get("params") or {}),
        value=data.get(keys.BEST_VALUE, data.get("value")),
        stop_reason=data.get(keys.STOP_REASON),
        seed=data.get(keys.SEED),
        best_epoch=data.get(keys.BEST_EPOCH),
        epochs_run=data.get(keys.EPOCHS_RUN),
        versions=dict(data.get(keys.VERSIONS) or {}),
        history=read_history(study_dir.history(number)),
        checkpoint=checkpoint if checkpoint.exists() else None,
        error=data.get(keys.ERROR),
    )


def _from_object(source: Any) -> dict[str, Any]:
    """A record's fields from a FrozenTrial (its user attrs) or a TrialOutcome."""
    if source is None:
        return {}
    fields = dict(getattr(source, "user_attrs", None) or {})
    state = getattr(source, "state", None)
    fields["state"] = getattr(state, "name", state)
    fields["params"] = getattr(source, "params", None) or {}
    for name in ("value", "stop_reason", "seed", "best_epoch", "epochs_run", "error"):
        if name not in fields and getattr(source, name, None) is not None:
            fields[name] = getattr(source, name)
    return fields
