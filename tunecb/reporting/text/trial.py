"""One trial in detail, for ``tunecb report RESULTS --trial N``: state, value and best epoch,
the hyperparameters (full names, exact values), why it stopped, the whole error, the
checkpoint, and its learning curve as a table of epochs with unicode sparklines. Also as
JSON (the record and every epoch) and CSV (the epochs). No pandas, no TensorFlow.

>>> print(trial_text(study_records("results/digits"), 4, width=80))  # doctest: +SKIP
trial 4 of study 'digits' · rank 1 of 30 · COMPLETE
  val_accuracy  0.981 (maximize), best at epoch 17
  ...
"""

from __future__ import annotations

import csv
import io
import json
import math
import textwrap
from typing import Any

from tunecb.errors import ResultsError
from tunecb.escaping import csv_cell, printable
from tunecb.oracle.attrs import LR_SCHEDULE, N_PARAMS, SEED, WORKER
from tunecb.reporting.data.overview import finite_number
from tunecb.reporting.data.records import StudyRecords, trial_history
from tunecb.reporting.text.cells import cell, checkpoint_cell, column_numbers, number, number_ranges
from tunecb.reporting.text.terminal import fit_table
from tunecb.wording import duration_text, plural, short

SPARKS = "▁▂▃▄▅▆▇█"
MAX_EPOCH_ROWS = 20  # longer histories show evenly spread epochs, the best one among them
HISTORY_DIGITS = 4
BEST_MARK = "◀ best"


def find_trial(result: StudyRecords, number: int, name: str = "trial") -> tuple[int, dict]:
    """``(rank, record)`` of trial ``number``, or a :class:`ResultsError` that names the
    trials there are (``name``: how the caller calls the number, e.g. ``--trial``)."""
    for rank, record in enumerate(result.records, 1):
        if record["trial"] == number:
            return rank, record
    numbers = [r["trial"] for r in result.records]
    have = f"its trials are {number_ranges(numbers)}" if numbers else "it has no trial yet"
    raise ResultsError(f"{name} {number}: study {result.name!r} has no such trial; {have}")


def trial_text(result: StudyRecords, number: int, width: int | None = 80) -> str:
    """Trial ``number`` on the terminal, in ``width`` columns (``None``: no limit); text from
    the storage with its control characters made visible."""
    rank, record = find_trial(result, number)
    lines = [
        f"trial {number} of study {printable(repr(result.name))} · rank {rank} of "
        f"{len(result.records)} · "
        f"{record['state']}"
    ]
    fields = _fields(result, record)
    key_width = max(len(k) for k, _ in fields)
    indent = " " * (key_width + 4)
    for key, text in fields:
        key, text, first = printable(key), printable(text), True
        for paragraph in text.splitlines() or [""]:
            room = (width or 10**6) - len(indent)
            whole = key == "checkpoint"  # a path stays whole, to be copied
            for part in textwrap.wrap(paragraph, room, break_on_hyphens=False,
                                      break_long_words=not whole) or [""]:  # fmt: skip
                lines.append(f"  {key.ljust(key_width)}  {part}" if first else indent + part)
                first = False
    rows = trial_history(result, number)
    lines.append("")
    if not rows:
        running = record["state"] in ("RUNNING", "WAITING")
        lines.append("no epoch finished yet" if running else "no epoch recorded: it stopped "
                     "before its first epoch ended")  # fmt: skip
        return "\n".join(lines)
    lines += [printable(line) for line in history_lines(result, record, rows, width)]
    return "\n".join(lines)


def _fields(result: StudyRecords, record: dict[str, Any]) -> list[tuple[str, str]]:
    trial = result.trials.get(record["trial"])
    attrs = trial.user_attrs if trial is not None else {}
    monitor = result.monitor or "value"
    value = record["value"]
    if finite_number(value):
        text = f"{cell(value)} ({result.direction})"
        if record.get("best_epoch") is not None:
            text += f", best at epoch {record['best_epoch']}"
        if record["state"] == "PRUNED":
            text += "; the best it reached before it was pruned"
    elif value is None:
        text = {"FAIL": "none: the trial failed", "RUNNING": "none yet: it is running"}.get(
            record["state"], "none"
        )
    else:
        text = f"{value} (not a finite number)"
    fields = [(monitor, text)]
    if result.objectives:  # a multi-objective study: every value, and the front
        shown = ", ".join(f"{o.name} {cell(record.get(o.name))}" for o in result.objectives)
        where = "on the Pareto front" if record.get("front") else "not on the Pareto front"
        fields.append(("objectives", f"{shown}; {where}"))
    epochs = record.get("epochs") or 0
    if result.epochs:
        trained = f"{epochs} of {plural(result.epochs, 'epoch')}"
    else:
        trained = plural(epochs, "epoch")
    if record["state"] in ("RUNNING", "WAITING"):
        fields.append(("trained", f"{trained} so far"))
    else:
        fields.append(("trained", f"{trained}; stopped: {record.get('stop_reason') or '-'}"))
    params = {k.removeprefix("params_"): v for k, v in record.items() if k.startswith("params_")}
    fields.append(("params", "\n".join(f"{k} = {_exact(v)}" for k, v in params.items()) or "none"))
    ran = duration_text(record["duration_s"]) if record.get("duration_s") is not None else "-"
    if trial is not None and trial.datetime_start is not None:
        ran += f", started {trial.datetime_start:%Y-%m-%d %H:%M:%S}"
    if attrs.get(WORKER):
        ran += f" by worker {attrs[WORKER]}"
    if record.get("backend"):
        ran += f", on {record['backend']}"
    fields.append(("ran", ran))
    model = []
    if isinstance(attrs.get(N_PARAMS), int):
        model.append(plural(attrs[N_PARAMS], "weight"))
    if attrs.get(SEED) is not None:
        model.append(f"seed {attrs[SEED]}")
    if attrs.get(LR_SCHEDULE) not in (None, "none"):
        model.append(f"lr schedule {attrs[LR_SCHEDULE]}")
    if model:
        fields.append(("model", ", ".join(model)))
    removed = record.get("checkpoint_removed")
    checkpoint = checkpoint_cell(record)
    if checkpoint and removed:
        checkpoint = f"{checkpoint}, by {removed.get('by', '?')} at {removed.get('at', '?')}"
    if checkpoint and record.get("checkpoint_problem"):
        checkpoint += f" ({record['checkpoint_problem']})"
    fields.append(("checkpoint", checkpoint or "none on disk"))
    fields.extend(_carried_on(result, record))
    if record.get("error"):
        fields.append(("error", str(record["error"])))
    return fields


def _carried_on(result: StudyRecords, record: dict[str, Any]) -> list[tuple[str, str]]:
    """What ``evaluate``, ``retrain`` and ``rerun`` wrote for the trial."""
    from tunecb.results import read_json

    found: list[tuple[str, str]] = []
    tests = {k.removeprefix("test_"): v for k, v in record.items() if k.startswith("test_")}
    if tests:
        found.append(("test", ", ".join(f"{k} {_short(v)}" for k, v in tests.items())))
    if result.study_dir is None:
        return found
    number = record["trial"]
    final = read_json(result.study_dir.final_json(number))
    if final:
        path = result.study_dir.final_model(number)
        text = f"{path} ({final.get('epochs')} epochs on {final.get('data')})"
        if final.get("test"):
            text += "; test " + ", ".join(
                f"{k.removeprefix('test_')} {_short(v)}" for k, v in final["test"].items()
            )
        found.append(("retrained", text))
    rerun = read_json(result.study_dir.rerun_json(number))
    if rerun:
        found.append(("rerun", _rerun_text(rerun)))
    return found


def _rerun_text(rerun: dict[str, Any]) -> str:
    """What ``rerun.json`` says, in a few words.

    >>> _rerun_text({"identical": False, "value": 0.9, "max_difference": 0.0,
    ...              "differing": ["latency"]})
    '0.9 as recorded; latency differ'
    """
    value = _exact(rerun.get("value"))
    if rerun.get("identical"):
        return f"identical ({value})"
    if rerun.get("differing") and not rerun.get("max_difference"):  # only other objectives
        return f"{value} as recorded; {', '.join(rerun['differing'])} differ"
    return f"{value}, differs by {_exact(rerun.get('max_difference'))}"


def _short(value: Any) -> str:
    return short(value)


def history_lines(
    result: StudyRecords, record: dict[str, Any], rows: list[dict[str, Any]], width: int | None
) -> list[str]:
    """The epochs as a table (the monitor first, the best epoch marked) and sparklines."""
    monitor = result.monitor or "value"
    names = list(dict.fromkeys(k for row in rows for k in row if k != "epoch"))
    if monitor not in names:
        monitor = names[0] if names else monitor
    losses = [n for n in ("loss", "val_loss") if n in names and n != monitor]
    rest = [n for n in names if n not in (monitor, *losses, "learning_rate")]
    order = [monitor, *losses, *rest, *(["learning_rate"] if "learning_rate" in names else [])]
    best = record.get("best_epoch")
    shown = _spread(rows, best, MAX_EPOCH_ROWS)
    marked = best is not None and any(r.get("epoch") == best for r in shown)
    header = ["epoch", monitor, *([""] if marked else []), *order[1:]]
    priority = [0, 0, *([0] if marked else []), *(1 if n in losses else 2 for n in order[1:])]
    columns = [column_numbers([r.get(n) for r in shown], HISTORY_DIGITS) for n in order]
    cells = []
    for i, row in enumerate(shown):
        mark = [BEST_MARK if row.get("epoch") == best else ""] if marked else []
        values = [column[i] for column in columns]
        cells.append([str(row.get("epoch", "")), values[0], *mark, *values[1:]])
    numeric = [True, True, *([False] if marked else []), *([True] * (len(order) - 1))]
    table, hidden = fit_table(header, cells, width=width, numeric=numeric, priority=priority)
    lines = ["  " + line for line in table]
    where = "--format csv"
    if result.study_dir is not None and result.study_dir.history(record["trial"]).is_file():
        where += f", or {result.study_dir.history(record['trial'])}"
    if len(shown) < len(rows):
        lines.append(f"  {len(shown)} of {len(rows)} epochs shown; all: {where}")
    if hidden:
        hidden_names = ", ".join(header[i] for i in hidden)
        lines.append(f"  {plural(len(hidden), 'more column')} ({hidden_names}): {where}")
    lines.append("")
    curves = [monitor, *losses]
    rates = [r.get("learning_rate") for r in rows if finite_number(r.get("learning_rate"))]
    if len(set(rates)) > 1:
        curves.append("learning_rate")
    label = max(len(n) for n in curves)
    for name in curves:
        values = [r.get(name) for r in rows]
        finite = [v for v in values if finite_number(v)]
        if not finite:
            continue
        stats = f"{number(finite[0], HISTORY_DIGITS)} → {number(finite[-1], HISTORY_DIGITS)}"
        room = (width or 10**6) - 2 - label - 2 - 2 - len(stats)
        spark = sparkline(values, max(4, min(room, 60)))
        lines.append(f"  {name.ljust(label)}  {spark}  {stats}")
    return lines


def sparkline(values: list[Any], width: int = 60) -> str:
    """``values`` as a line of unicode blocks from lowest to highest, at most ``width``
    long (longer series are averaged in buckets); ``·`` where a value is not finite.

    >>> sparkline([0.1, 0.5, 0.9, 0.95]), sparkline([2.0, 2.0]), sparkline([1, None, 3])
    ('▁▄██', '▄▄', '▁·█')
    >>> len(sparkline(list(range(200)), 50))
    50
    """
    if len(values) > width:
        buckets = [values[i * len(values) // width : (i + 1) * len(values) // width]
                   for i in range(width)]  # fmt: skip
        values = [_mean(b) for b in buckets]
    finite = [v for v in values if finite_number(v)]
    if not finite:
        return "·" * len(values)
    lo, hi = min(finite), max(finite)
    top = len(SPARKS) - 1
    out = []
    for v in values:
        if not finite_number(v):
            out.append("·")
        elif hi == lo:
            out.append(SPARKS[top // 2])
        else:
            out.append(SPARKS[round((v - lo) / (hi - lo) * top)])
    return "".join(out)


def trial_json(result: StudyRecords, number: int) -> str:
    """Trial ``number`` as JSON: its rank, its report record (every column, the whole
    error) and every epoch of its history; non-finite numbers are ``null``."""
    rank, record = find_trial(result, number)
    trial = result.trials.get(number)
    attrs = trial.user_attrs if trial is not None else {}
    extra = {k: attrs.get(k) for k in (WORKER, N_PARAMS, SEED, LR_SCHEDULE) if k in attrs}
    data = {
        "rank": rank,
        "trial": {**record, **extra},
        "history": trial_history(result, number),
    }
    return json.dumps(_finite(data), indent=2, default=str)


def history_csv(result: StudyRecords, number: int) -> str:
    """Trial ``number``'s epochs as CSV (one row per epoch, full precision)."""
    find_trial(result, number)
    rows = trial_history(result, number)
    names = list(dict.fromkeys(k for row in rows for k in row))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(map(csv_cell, names))  # history.csv's names come from the folder
    for row in rows:
        writer.writerow(["" if row.get(n) is None else csv_cell(row.get(n)) for n in names])
    return out.getvalue().rstrip("\n")


def _spread(rows: list[dict[str, Any]], best: Any, limit: int) -> list[dict[str, Any]]:
    """At most ``limit`` rows: the first, the last, the best epoch and evenly spread ones."""
    if len(rows) <= limit:
        return rows
    picks = {round(i * (len(rows) - 1) / (limit - 2)) for i in range(limit - 1)}
    picks |= {i for i, r in enumerate(rows) if r.get("epoch") == best}
    return [rows[i] for i in sorted(picks)]


def _exact(value: Any) -> str:
    """A parameter's value as sampled: floats in full (``repr``), text as text."""
    return repr(value) if isinstance(value, float) else str(value)


def _mean(values: list[Any]) -> float | None:
    finite = [v for v in values if finite_number(v)]
    return sum(finite) / len(finite) if finite else None


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
