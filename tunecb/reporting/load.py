"""Load a trial's best model from its self-contained checkpoint; never rebuilds from code.

>>> model = load_best("results/digits")              # doctest: +SKIP
>>> second = load_best("results/digits", rank=2)     # doctest: +SKIP
>>> model7 = load_best("results/digits", trial=7)    # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunecb.errors import ConfigError, ResultsError
from tunecb.reporting.records import study_records

if TYPE_CHECKING:
    import keras


def best_checkpoint(path: str | Path, rank: int = 1, trial: int | None = None) -> Path:
    """The checkpoint file of row ``rank`` of the report (1 = best), or of ``trial``."""
    records = study_records(path).records
    if trial is not None:
        matches = [r for r in records if r["trial"] == trial]
        if not matches:
            raise ResultsError(f"trial={trial}: {path} has no such trial (it has {len(records)})")
        record = matches[0]
    else:
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ConfigError(f"rank={rank!r}: use 1 for the best trial, 2 for the next, ...")
        if rank > len(records):
            raise ResultsError(f"rank={rank}: {path} has only {len(records)} trials")
        record = records[rank - 1]
    removed = record.get("checkpoint_removed")
    if not record["checkpoint"] and removed:
        keep = removed.get("keep_checkpoints")
        raise ResultsError(
            f"trial {record['trial']} of {path}: its checkpoint was removed by "
            f"--keep-checkpoints {keep} (only the {keep} best trials keep theirs); "
            "pick a kept one with rank= or trial="
        )
    if not record["checkpoint"]:
        raise ResultsError(
            f"trial {record['trial']} ({record['state']}, {record['stop_reason']}) of {path} "
            "has no checkpoint; pick another with rank= or trial="
        )
    return Path(record["checkpoint"])


def load_best(
    path: str | Path,
    rank: int = 1,
    *,
    trial: int | None = None,
    custom_objects: dict[str, Any] | None = None,
    compile: bool = True,
) -> keras.Model:
    """The model of the best trial (or ``rank``-th best, or trial number ``trial``) of the
    study in results folder ``path``, loaded with ``safe_mode=True``, compiled as trained,
    ready to ``evaluate``. ``custom_objects`` is passed to Keras for custom layers."""
    checkpoint = best_checkpoint(path, rank, trial)
    from tunecb.training.backends import import_quietly

    keras = import_quietly()  # on the backend Keras picks here: any can load any checkpoint
    return keras.saving.load_model(
        checkpoint, custom_objects=custom_objects, compile=compile, safe_mode=True
    )
