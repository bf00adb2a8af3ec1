"""``tunecb evaluate``: test metrics of the best checkpoints (and of the retrained final
models) on the test split the data function returns as its third item. The search never
sees that split; the report shows what this writes.

>>> rows = evaluate("results/digits", top=3)      # doctest: +SKIP
>>> rows[0]["test"]                               # doctest: +SKIP
{'test_loss': 0.09, 'test_accuracy': 0.97}
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tunecb.errors import ConfigError, ResultsError
from tunecb.replay.source import TrialSource
from tunecb.results import StudyDir, read_json, write_json
from tunecb.study.data import Data
from tunecb.study.declaration import Study


def evaluate(
    path: str | Path,
    *,
    top: int | None = None,
    study: Study | str | Path | None = None,
    trial: int | None = None,
    best_on: str | None = None,
    within: dict[str, float] | list[str] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate the best checkpoints of the ``top`` best trials of results folder ``path``
    (default 1; a multi-objective study's front first), or of trial number ``trial``, or of
    the front member ``best_on=``/``within=`` choose (as :func:`tunecb.load_best` does), and
    their ``final.keras`` where ``retrain`` wrote one, on the study's test split; write
    ``test.json`` (and the test metrics into ``final.json``); return one row per trial:
    ``{"rank", "trial", "value", "test", "final_test"}``, and ``"objectives"`` (``{name:
    value}``) in a multi-objective study."""
    one = trial is not None or best_on is not None or bool(within)
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise ConfigError(f"--top {top!r}: expected a positive integer")
    if one and top is not None:
        raise ConfigError(
            f"--top {top} with --trial/--best-on/--within: give the K best trials or one trial"
        )
    front = {"best_on": best_on, "within": within}
    source = TrialSource.open(path, trial=trial, study=study, **front) if one else (
        TrialSource.open(path, rank=1, study=study)
    )  # fmt: skip
    source.start_backend()
    data = source.load_data()
    if data.test is None:
        fn = getattr(source.loaded.study.data_fn, "__name__", "data")
        raise ConfigError(
            f"the data function {fn}() in {source.loaded.path} returns no test split; return "
            "(train, validation, test) to evaluate on data the search never saw"
        )
    from tunecb.reporting.data.records import study_records

    kept = [r for r in study_records(path).records if r.get("checkpoint")]
    records = kept[: top or 1]
    if one:
        records = [r for r in kept if r["trial"] == source.number]
        if not records:
            raise ResultsError(
                f"trial {source.number} of {path} has no checkpoint to evaluate "
                f"({source.record['state']}, {source.record.get('stop_reason')})"
            )
    if not records:
        raise ResultsError(f"{path} has no trial with a checkpoint to evaluate")
    rows = []
    batch = source.settings.batch_size
    for record in records:
        number = record["trial"]
        test = evaluate_checkpoint(source.study_dir, number, data, batch)
        final = _evaluate_final(source.study_dir, number, data, batch)
        row = {"rank": kept.index(record) + 1, "trial": number, "value": record["value"],
               "test": test, "final_test": final}  # fmt: skip
        if record.get("objectives"):
            row["objectives"] = {name: record.get(name) for name in record["objectives"]}
        rows.append(row)
    return rows


def evaluate_checkpoint(
    study_dir: StudyDir, number: int, data: Data, batch_size: int | None
) -> dict[str, float] | None:
    """Trial ``number``'s best checkpoint on the test split (``None`` without one), also
    written to its ``test.json``."""
    path = study_dir.checkpoint(number)
    if data.test is None or not path.is_file():
        return None
    from tunecb.training.loading import load_model
    from tunecb.training.refit import evaluate_on_test

    model = load_model(path)
    metrics = evaluate_on_test(model, data, batch_size)
    write_json(
        study_dir.guard(study_dir.test_json(number)),
        {"trial": number, "model": path.name, "test": metrics, "data": data.fingerprint(),
         "at": time.time()},
    )  # fmt: skip
    return metrics


def _evaluate_final(
    study_dir: StudyDir, number: int, data: Data, batch_size: int | None
) -> dict[str, float] | None:
    path = study_dir.final_model(number)
    record = read_json(study_dir.final_json(number))
    if not path.is_file() or record is None:
        return None
    from tunecb.training.loading import load_model
    from tunecb.training.refit import evaluate_on_test

    model = load_model(path)
    metrics = evaluate_on_test(model, data, batch_size)
    write_json(study_dir.guard(study_dir.final_json(number)), {**record, "test": metrics})
    return metrics
