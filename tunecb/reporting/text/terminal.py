"""The report table that fits a terminal: short parameter names, values at 4 significant
digits, the error clipped, and the columns that do not fit left out with a line that says so
(:func:`narrow_table`; :func:`fit_table` does the fitting for any table).

>>> short_names(["params_learning_rate", "params_units"])
{'params_learning_rate': 'lr', 'params_units': 'units'}
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

from tunecb.errors import first_line
from tunecb.escaping import printable
from tunecb.reporting.data.informative import param_ranks
from tunecb.reporting.data.records import TIES_NOTE, has_ties
from tunecb.reporting.text.cells import (
    cell,
    checkpoint_cell,
    clipped,
    column_numbers,
    flat,
    is_numeric_column,
    number,
)
from tunecb.wording import duration_text, plural

# The narrow table: its headers, and the order in which it gives its room away. These
# columns always show; then the hyperparameters that say much (filled in at least half the
# rows, more than one value; the ones that go with the ranking first), then the rest in this
# order, with the hyperparameters that say little (mostly empty, or one value) before the
# checkpoint.
NARROW_HEADERS = {"best_epoch": "best_ep", "stop_reason": "stop", "duration_s": "time"}
ALWAYS = ("rank", "trial", "state", "value", "best_epoch")
THEN = ("params_", "backend", "error", "checkpoint_problem", "stop_reason", "epochs",
        "duration_s", "params_:sparse", "checkpoint")  # fmt: skip
VALUE_DIGITS, PARAM_DIGITS = 4, 3  # significant digits of the objective and of parameters
ERROR_WIDTH, ERROR_MIN = 32, 16  # the error column: at most, and at least when clipped to fit
TEXT_WIDTH = 12  # a categorical parameter's value, at most
NAME_WIDTH = 12  # a longer short name keeps its first whole words and "…"
HIDDEN_NOTE = "--wide, or --format csv/json"


def narrow_table(
    records: list[dict[str, Any]], columns: list[str], width: int, root: str | None = None
) -> str:
    """The table in ``width`` terminal columns: short parameter names (the abbreviated ones
    listed under it), values at 4 significant digits and parameters at 3, the error's first
    line clipped with "…", checkpoints relative to the study folder ``root``. The columns
    that do not fit are left out, and a last line says which and how to see them.

    >>> rows = [{"trial": 3, "state": "FAIL", "value": None, "best_epoch": None,
    ...          "params_learning_rate": 0.000123456, "params_units_0": 48,
    ...          "duration_s": 4.25, "error": "ValueError: " + "x" * 90}]
    >>> print(narrow_table(rows, [*rows[0]], 74))
    rank  trial  state  value  best_ep        lr  units_0  error
       1      3  FAIL                   0.000123       48  ValueError: xxxxxx…
    short names: lr = learning_rate
    1 more column (time): --wide, or --format csv/json
    """
    sparse = ("error", "checkpoint_problem")  # left out when empty in the rows shown
    columns = [c for c in columns if c not in sparse or any(r.get(c) for r in records)]
    params = [c.removeprefix("params_") for c in columns if c.startswith("params_")]
    short = short_names(params)
    header: list[str] = ["rank"]
    numeric, priority, clip = [True], [0.0], {}
    ranks = param_ranks(records, [c for c in columns if c.startswith("params_")])
    measured = _objective_columns(records, columns)
    for i, column in enumerate(columns, 1):
        if column.startswith("params_"):
            header.append(short[column.removeprefix("params_")])
        else:
            header.append(NARROW_HEADERS.get(column, column))
        values = [r.get(column) for r in records]
        numeric.append(column in ("trial", "value", "best_epoch", "epochs", "duration_s") or (
            column.startswith("params_") and is_numeric_column([[v] for v in values], 0)
        ) or column in measured)  # fmt: skip
        priority.append(measured.get(column, _priority(column, ranks)))
        if column in ("error", "checkpoint_problem"):
            clip[i] = ERROR_MIN
    rows = [
        [str(rank), *(_narrow_cell(c, r, root, c in measured) for c in columns)]
        for rank, r in enumerate(records, 1)
    ]
    if "value" in columns:  # one number of decimals, the points lined up
        at = columns.index("value") + 1
        values = column_numbers([r.get("value") for r in records], VALUE_DIGITS)
        for row, text in zip(rows, values, strict=True):
            row[at] = text
    header = [printable(h) for h in header]  # names and values from the storage: shown,
    rows = [[printable(c) for c in row] for row in rows]  # never acted on by the terminal
    lines, hidden = fit_table(
        header, rows, width=width, numeric=numeric, priority=priority, clip=clip
    )
    shown = {columns[i - 1] for i in range(1, len(header)) if i not in hidden}
    renamed = [f"{short[p]} = {p}" for p in params if short[p] != p and f"params_{p}" in shown]
    if renamed:
        lines += textwrap.wrap(
            printable("short names: " + ", ".join(renamed)), width, subsequent_indent="  ",
            break_on_hyphens=False,
        )  # fmt: skip
    if has_ties(records):
        lines.append(TIES_NOTE)
    if hidden:
        count = plural(len(hidden), "more column")
        note = f"{count} ({', '.join(header[i] for i in hidden)}): {HIDDEN_NOTE}"
        lines.append(note if len(note) <= width else f"{count}: {HIDDEN_NOTE}")
    return "\n".join(lines)


def fit_table(
    header: list[str],
    rows: list[list[str]],
    *,
    width: int | None,
    numeric: list[bool],
    priority: list[float],
    clip: dict[int, int] | None = None,
    gap: int = 2,
) -> tuple[list[str], list[int]]:
    """The lines of a table that fits ``width`` characters, and the indices of the columns
    left out. Columns are kept by ``priority`` (0: always; then lower first, ties from the
    left) while they fit: after the first column of a priority that does not fit, the rest
    of that priority are left out too (the hyperparameters shown are the first ones), and
    the next priority is tried. A column in ``clip`` takes that many characters first, its
    cells cut with "…", and grows with the room left at the end. The kept columns stay in
    their order; ``width=None`` keeps all.

    >>> fit_table(["a", "bbbbbb", "c"], [["1", "222222", "3"]], width=6,
    ...           numeric=[True] * 3, priority=[0, 1, 2])
    (['a  c', '1  3'], [1])
    >>> fit_table(["a", "bbbbbb", "c"], [["1", "222222", "3"]], width=6,
    ...           numeric=[True] * 3, priority=[0, 1, 1])  # "c" would come after "bbbbbb"
    (['a', '1'], [1, 2])
    >>> fit_table(["a", "text"], [["1", "a long one"]], width=9, numeric=[True, False],
    ...           priority=[0, 1], clip={1: 4})
    (['a  text', '1  a lon…'], [])
    """
    natural = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    widths: dict[int, int] = {}
    used = -gap
    full: set[int] = set()  # priorities that had a column left out
    for i in sorted(range(len(header)), key=lambda i: (priority[i], i)):
        room = (width or 0) - used - gap
        if priority[i] in full:
            continue
        least = min(natural[i], clip[i]) if clip and i in clip else natural[i]
        if width is None or priority[i] == 0 or least <= room:
            widths[i] = natural[i] if width is None else least
        else:
            full.add(priority[i])
            continue
        used += gap + widths[i]
    for i in sorted(clip or {}, key=lambda i: (priority[i], i)):  # the room left: clipped ones
        if i in widths and width is not None:
            grow = max(min(natural[i] - widths[i], width - used), 0)
            widths[i] += grow
            used += grow
    kept = sorted(widths)

    def line(items: list[str]) -> str:
        parts = []
        for i in kept:
            text = clipped(items[i], widths[i])
            parts.append(text.rjust(widths[i]) if numeric[i] else text.ljust(widths[i]))
        return (" " * gap).join(parts).rstrip()

    hidden = [i for i in range(len(header)) if i not in widths]
    return [line(header), *(line(r) for r in rows)], hidden


def short_names(names: list[str]) -> dict[str, str]:
    """Short, unique column names for hyperparameters: a prefix all of them share is
    dropped, common words abbreviated (``learning_rate`` → ``lr``), long words cut to 4
    letters when the name is still long; a name whose short form would clash keeps more.

    >>> short_names(["model_learning_rate", "model_dropout_0", "model_units_0"])
    {'model_learning_rate': 'lr', 'model_dropout_0': 'drop_0', 'model_units_0': 'units_0'}
    >>> list(short_names(["units_0", "units_1", "initial_temperature", "activation"]).values())
    ['units_0', 'units_1', 'init_temp', 'act']
    >>> short_names(["dropout", "drop"])  # would clash: each keeps its own name
    {'dropout': 'dropout', 'drop': 'drop'}
    """
    prefix = _shared_prefix(names)
    stages = [
        {n: n for n in names},
        {n: n[len(prefix) :] for n in names},
        {n: _abbreviate(n[len(prefix) :]) for n in names},
    ]
    result = dict(stages[-1])
    for stage in stages[-2::-1]:  # clashes fall back to the less abbreviated forms
        counts: dict[str, int] = {}
        for short in result.values():
            counts[short] = counts.get(short, 0) + 1
        for name, short in result.items():
            if counts[short] > 1:
                result[name] = stage[name]
    return result if len(set(result.values())) == len(result) else {n: n for n in names}


ABBREVIATIONS = {
    "learning_rate": "lr", "batch_size": "batch", "weight_decay": "wd", "kernel_size": "kernel",
    "dropout": "drop", "activation": "act", "optimizer": "opt", "momentum": "mom",
    "number": "n", "num": "n", "hidden": "hid", "dimension": "dim", "embedding": "emb",
    "regularization": "reg", "regularizer": "reg", "epsilon": "eps", "normalization": "norm",
    "convolution": "conv", "filters": "filt", "channels": "ch", "sequence": "seq",
    "attention": "attn", "temperature": "temp", "initial": "init", "schedule": "sched",
    "patience": "pat", "factor": "fac", "neurons": "units",
}  # fmt: skip


def _abbreviate(name: str) -> str:
    for phrase, short in ABBREVIATIONS.items():
        if "_" in phrase:
            name = re.sub(rf"(?<![a-z0-9]){phrase}(?![a-z0-9])", short, name)
    tokens = [ABBREVIATIONS.get(t, t) for t in re.split(r"([_.\-/])", name)]
    text = "".join(tokens)
    if len(text) <= NAME_WIDTH:
        return text
    kept = ""  # the first whole words that fit, never a word cut in the middle
    for token in tokens:
        if len(kept) + len(token) > NAME_WIDTH - 1:
            break
        kept += token
    kept = kept.rstrip("_.-/")
    return (kept or text[: NAME_WIDTH - 1]) + "…"


def _shared_prefix(names: list[str]) -> str:
    """The part before a separator that every name starts with, when dropping it leaves
    each name starting with a letter (``units_0``, ``units_1`` keep theirs)."""
    if len(names) < 2:
        return ""
    common = names[0]
    for name in names[1:]:
        while not name.startswith(common):
            common = common[:-1]
    cut = max(common.rfind(s) for s in "_.-/") + 1
    prefix = common[:cut]
    if prefix and all(n[len(prefix) :][:1].isalpha() for n in names):
        return prefix
    return ""


def _priority(column: str, ranks: dict[str, tuple[bool, int]]) -> float:
    """0 for the columns always shown, then :data:`THEN`'s order; each hyperparameter its
    own step inside its group, by :func:`param_ranks`."""
    if column in ALWAYS:
        return 0
    if column in ranks:
        says_much, rank = ranks[column]
        key = "params_" if says_much else "params_:sparse"
        return 1 + THEN.index(key) + rank / (len(ranks) + 1)
    return 1 + THEN.index(column) if column in THEN else len(THEN) + 1


def _objective_columns(records: list[dict[str, Any]], columns: list[str]) -> dict[str, float]:
    """A multi-objective study's ``front`` and objective columns, and their priority: shown
    right after :data:`ALWAYS` (the front and each trial's objectives are what its report
    is for), but an objective that only repeats the ``value`` column (the monitor's) last."""
    names = next((r["objectives"] for r in records if r.get("objectives")), ())
    found = {}
    for column in ("front", *names):
        if column in columns:
            same = all(r.get(column) == r.get("value") for r in records)
            found[column] = len(THEN) + 1 if column in names and same else 0.5
    return found


def _narrow_cell(
    column: str, record: dict[str, Any], root: str | None, measured: bool = False
) -> str:
    value = record.get(column)
    if measured and isinstance(value, float):
        return number(value, VALUE_DIGITS)
    if column.startswith("params_"):
        if isinstance(value, float):
            return number(value, PARAM_DIGITS)
        return clipped(flat(cell(value)), TEXT_WIDTH)
    if column == "duration_s":
        return "" if value is None else duration_text(value).replace(" ", "")
    if column == "checkpoint":
        text = checkpoint_cell(record) or ""
        if root and text.startswith(root.rstrip("/") + "/"):
            return text[len(root.rstrip("/")) + 1 :]
        return text
    if column == "error":
        return clipped(first_line(value, 10_000), ERROR_WIDTH) if value else ""
    return flat(cell(value))
