"""A study as a ranked table: storage and trial files → plain records → pandas DataFrame.

No TensorFlow here, and pandas only at the last step, so ``tunecb report`` starts fast.

>>> df = study_report("results/digits")  # doctest: +SKIP
>>> df.columns[:7].tolist()  # doctest: +SKIP
['trial', 'state', 'value', 'best_epoch', 'epochs', 'stop_reason', 'duration_s']
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunecb.errors import ResultsError, StorageError
from tunecb.oracle import promotions
from tunecb.oracle.attrs import (
    DISCARDED,
    ERROR,
    GIVEN,
    OBJECTIVES,
    STOP_REASON,
    STUDY_EPOCHS,
    STUDY_MONITOR,
    WARM_FROM,
    WARM_START_REASON,
)
from tunecb.oracle.budget import retried
from tunecb.oracle.front import front_numbers, study_objectives
from tunecb.oracle.promotions import is_side
from tunecb.oracle.ranking import rank_key, trial_record
from tunecb.reporting.data.integrity import checkpoint_problem
from tunecb.results import StudyDir, read_history, read_json
from tunecb.storage import judged
from tunecb.storage.urls import JOURNAL_NAME, redact, redact_text
from tunecb.study.objectives import Objective, monitor_of

if TYPE_CHECKING:
    import optuna
    import pandas

BASE_COLUMNS = ["trial", "state", "value", "best_epoch", "epochs", "stop_reason", "duration_s"]


@dataclass(frozen=True)
class StudyRecords:
    """A study's trials as plain dicts, ranked, with what is needed to read them."""

    name: str
    direction: str
    monitor: str | None
    study_dir: StudyDir | None
    records: list[dict[str, Any]]
    epochs: int | None = None  # the epoch budget of every trial, when tunecb ran the study
    trials: dict[int, Any] = field(default_factory=dict)  # number → optuna FrozenTrial
    objectives: tuple[Objective, ...] | None = None  # a multi-objective study's
    warm_start: dict[str, Any] | None = None  # --warm-start's source (tunecb.oracle.warm)


def mark_front(
    records: list[dict[str, Any]], trials: list[Any], objectives: tuple[Objective, ...]
) -> None:
    """Give each record of a multi-objective study its ``front`` mark, one column per
    objective (the values at its best epoch; a pruned trial's at the epoch it stopped at)
    and the names of those columns (``objectives``, not a column)."""
    on = front_numbers(trials, objectives)
    names = tuple(o.name for o in objectives)
    for record, trial in zip(records, trials, strict=True):
        values = trial.user_attrs.get(OBJECTIVES) or {}
        record["front"] = record["trial"] in on
        record.update({name: values.get(name) for name in names})
        record["objectives"] = names


def open_report_study(
    path: str | Path | None = None,
    storage: str | None = None,
    study_name: str | None = None,
) -> tuple[optuna.Study, StudyDir | None, dict[str, Any]]:
    """The Optuna study behind a results folder, or behind ``storage`` + ``study_name``."""
    import optuna

    from tunecb.storage.urls import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_dir = StudyDir(Path(path)) if path is not None else None
    meta: dict[str, Any] = {}
    if study_dir is not None:
        if not study_dir.root.is_dir():
            raise ResultsError(
                f"results folder {str(study_dir.root)!r} does not exist; "
                "pass the folder `tunecb search` wrote, e.g. results/<study>"
            )
        meta = read_json(study_dir.study_json) or {}
        if storage is None:
            stored = meta.get("storage")
            if stored and "***" in stored:
                raise StorageError(
                    f"{study_dir.root} uses storage {stored!r}; pass it with its password: "
                    "--storage URL"
                )
            storage = stored
            if storage is None and not (study_dir.root / JOURNAL_NAME).is_file():
                raise ResultsError(
                    f"{str(study_dir.root)!r} holds no tunecb study (no {JOURNAL_NAME} or "
                    f"study.json); pass the folder `tunecb search` wrote, or --storage URL"
                )
        study_name = study_name or meta.get("name")
    elif storage is None:
        raise StorageError("report needs a results folder, or --storage URL --study-name NAME")
    if (
        storage is not None
        and "://" not in storage
        and not Path(storage.removeprefix("journal:")).is_file()
    ):
        raise StorageError(f"--storage {redact(storage)!r}: no such journal file")
    opened = open_storage(storage, study_dir.root if study_dir else Path("."))
    shown = redact(storage) if storage else str(study_dir.root / JOURNAL_NAME)
    try:
        # names only: the summaries would deep-copy every trial (a third of a 1,000-trial report)
        names = [n for n in optuna.get_all_study_names(opened) if not is_side(n)]
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"storage {shown!r}: cannot read it: {redact_text(reason)}") from exc
    if study_name is None:
        if len(names) != 1:
            raise StorageError(
                f"storage {shown!r} holds {len(names)} studies; pick one with "
                f"--study-name from {sorted(names)}"
            )
        study_name = names[0]
    if study_name not in names:
        raise StorageError(
            f"--study-name {study_name!r}: no such study in {shown!r}; it has {sorted(names)}"
        )
    study = optuna.load_study(study_name=study_name, storage=opened)
    return study, study_dir, meta


def study_records(
    path: str | Path | None = None,
    *,
    storage: str | None = None,
    study_name: str | None = None,
) -> StudyRecords:
    """Every trial of the study as a plain record, best first."""
    study, study_dir, meta = open_report_study(path, storage, study_name)
    objectives = study_objectives(study)
    maximize = monitor_of(objectives).maximize if objectives else study.direction.name == "MAXIMIZE"
    trials = study.get_trials(deepcopy=False)
    rerun = retried(trials)
    # discarded: never ran; warm_start: copied from another study (--warm-start). One row
    # per configuration: a paused attempt that was continued shows in its latest (promotion
    # pruner), with the epochs each segment reached ("rungs").
    hidden = (DISCARDED, WARM_START_REASON)
    shown_once, rungs = promotions.continued(trials), promotions.segments(trials)
    kept = [
        t for t in trials
        if t.user_attrs.get(STOP_REASON) not in hidden and t.number not in shown_once
    ]  # fmt: skip
    records = [trial_record(t, study_dir, t.number in rerun) for t in kept]  # discarded: never ran
    if rungs:
        for record in records:
            record["rungs"] = rungs.get(record["trial"])
    for record, trial in zip(records, kept, strict=True):
        record["error"] = trial.user_attrs.get(ERROR) or judged.explain(trial.system_attrs)
        record["given"] = (trial.user_attrs.get(GIVEN) or {}).get("from")  # --enqueue's
    for record in records:  # a cheap zip check of each checkpoint file, no model loaded
        record["checkpoint_problem"] = checkpoint_state(record["checkpoint"])
    if study_dir is not None:
        for record in records:
            record.update(held_out_metrics(study_dir, record["trial"]))
    if objectives:
        mark_front(records, kept, objectives)
    records.sort(key=lambda r: (not r.get("front", False), rank_key(r, maximize)))
    return StudyRecords(
        name=study.study_name,
        direction="maximize" if maximize else "minimize",
        monitor=meta.get("monitor") or study.user_attrs.get(STUDY_MONITOR),
        study_dir=study_dir,
        records=records,
        epochs=meta.get("epochs") or study.user_attrs.get(STUDY_EPOCHS),
        trials={t.number: t for t in kept},
        objectives=objectives,
        warm_start=study.user_attrs.get(WARM_FROM),
    )


def study_report(
    path: str | Path | None = None,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    top: int | None = None,
) -> pandas.DataFrame:
    """The trials of a study ranked by the objective (index: rank from 1).

    Columns: trial, state, value, best_epoch, epochs, stop_reason, duration_s, one
    ``params_<name>`` per hyperparameter, checkpoint (empty for a study tunecb did not run).

    >>> tunecb.report("results/digits", top=5)  # doctest: +SKIP
    """
    result = study_records(path, storage=storage, study_name=study_name)
    frame = to_dataframe(result.records, top)
    if result.warm_start:  # --warm-start's source: frame.attrs["warm_from"]["from"]
        frame.attrs[WARM_FROM] = {k: v for k, v in result.warm_start.items() if k != "url"}
    return frame


def to_dataframe(records: list[dict[str, Any]], top: int | None = None) -> pandas.DataFrame:
    import pandas as pd

    rows = records[:top] if top is not None else records
    frame = pd.DataFrame(rows, columns=columns(records))
    for column in frame.columns:  # an integer parameter some trials lack stays integer
        values = [r[column] for r in rows if r.get(column) is not None]
        some = column.startswith("params_") and 0 < len(values) < len(rows)
        if some and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            frame[column] = pd.array([r.get(column) for r in rows], dtype="Int64")
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="rank")
    return frame


def checkpoint_state(checkpoint: str | None) -> str | None:
    """``"unreadable: <why>"`` for a checkpoint file that is not a sound ``.keras`` zip
    (truncated, empty, overwritten, a member missing), else ``None``.

    >>> checkpoint_state(None), checkpoint_state("/nonexistent/best.keras")
    (None, 'unreadable: missing')
    """
    if checkpoint is None:
        return None
    problem = checkpoint_problem(checkpoint)
    return None if problem is None else f"unreadable: {problem}"


def held_out_metrics(study_dir: StudyDir, number: int) -> dict[str, Any]:
    """``tunecb evaluate``'s and ``tunecb retrain``'s test metrics of trial ``number``:
    ``test_<metric>`` of its best checkpoint, ``final_test_<metric>`` of its retrained
    ``final.keras`` (none when neither ran, or the data have no test split)."""
    found: dict[str, Any] = {}
    for path, prefix in (
        (study_dir.test_json(number), ""),
        (study_dir.final_json(number), "final_"),
    ):
        if path.is_file():
            for key, value in ((read_json(path) or {}).get("test") or {}).items():
                found[f"{prefix}{key}"] = value
    return found


def columns(records: list[dict[str, Any]]) -> list[str]:
    """The report's columns: ``backend`` only when the trials ran on more than one,
    ``checkpoint_problem`` only when a checkpoint file is unreadable, ``given`` (where a
    configuration given with ``--enqueue`` came from) only when a trial is one, ``error``
    (the whole message) only when a trial has one."""
    params = sorted({k for r in records for k in r if k.startswith("params_")})
    tests = sorted({k for r in records for k in r if k.startswith("test_")})
    tests += sorted({k for r in records for k in r if k.startswith("final_test_")})
    mixed = len({r.get("backend") for r in records if r.get("backend")}) > 1
    error = any(r.get("error") for r in records)
    rotten = any(r.get("checkpoint_problem") for r in records)
    given = any(r.get("given") for r in records)
    front = next((["front", *r["objectives"]] for r in records if r.get("objectives")), [])
    rungs = ["rungs"] if any("rungs" in r for r in records) else []
    return [
        *BASE_COLUMNS[:3], *front, *BASE_COLUMNS[3:], *rungs, *params, *tests,
        *(["backend"] if mixed else []), "checkpoint",
        *(["checkpoint_problem"] if rotten else []), *(["given"] if given else []),
        *(["error"] if error else []),
    ]  # fmt: skip


TIES_NOTE = "equal values are ranked by trial number"


def has_ties(records: list[dict[str, Any]]) -> bool:
    """Whether two trials of one state share a finite value in ``records`` (ranked): their
    order is then the trial number's, and a report says so (:data:`TIES_NOTE`).

    >>> has_ties([{"state": "COMPLETE", "value": 0.5}, {"state": "COMPLETE", "value": 0.5}])
    True
    """
    seen = set()
    for r in records:
        value = r.get("value")
        if isinstance(value, int | float) and math.isfinite(value):
            if (r.get("state"), value) in seen:
                return True
            seen.add((r.get("state"), value))
    return False


def trial_history(result: StudyRecords, number: int) -> list[dict[str, Any]]:
    """Trial ``number``'s epochs, one dict per epoch: the rows of its ``history.csv``
    (``epoch``, the logged metrics, ``learning_rate``; numbers as floats, ``None`` where
    empty), or, without that file (a study tunecb did not run), the values it reported to
    Optuna under the monitor's name (``value`` when unknown).

    >>> trial_history(study_records("results/digits"), 4)[0]  # doctest: +SKIP
    {'epoch': 1, 'accuracy': 0.62, 'loss': 1.41, 'val_accuracy': 0.87, ...}
    """
    if result.study_dir is not None:
        rows = read_history(result.study_dir.history(number))
        if rows:
            return rows
    trial = result.trials.get(number)
    reported = sorted(trial.intermediate_values.items()) if trial is not None else []
    name = result.monitor or "value"
    return [{"epoch": int(step), name: float(v)} for step, v in reported]
