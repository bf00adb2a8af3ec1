"""Render report records as a terminal table, CSV, Markdown or JSON (strings, no printing).

>>> print(render([{"trial": 0, "state": "COMPLETE", "value": 0.5}], "markdown", ["trial", "value"]))
| rank | trial | value |
|---:|---:|---:|
| 1 | 0 | 0.5 |
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

FORMATS = ("table", "csv", "markdown", "json")


def render(records: list[dict[str, Any]], fmt: str, columns: list[str]) -> str:
    """``records`` (ranked) in format ``fmt``, with these ``columns``. A checkpoint that
    ``--keep-checkpoints`` removed reads ``removed (--keep-checkpoints K)``; in JSON it
    stays ``null`` and every object gets a ``checkpoint_removed`` key (when any has one)."""
    if fmt == "json":
        rows = [[r.get(c) for c in columns] for r in records]
        objects = [dict(zip(columns, map(_json_value, row), strict=False)) for row in rows]
        if any(r.get("checkpoint_removed") for r in records):
            for obj, record in zip(objects, records, strict=True):
                obj["checkpoint_removed"] = record.get("checkpoint_removed")
        return json.dumps(objects, indent=2)
    rows = [[checkpoint_cell(r) if c == "checkpoint" else r.get(c) for c in columns]
            for r in records]  # fmt: skip
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["rank", *columns])
        for rank, row in enumerate(rows, 1):
            writer.writerow([rank, *("" if v is None else v for v in row)])
        return out.getvalue().rstrip("\n")
    cells = [[str(rank), *(cell(v) for v in row)] for rank, row in enumerate(rows, 1)]
    header = ["rank", *columns]
    if fmt == "markdown":
        numeric = [_is_numeric_column(rows, i) for i in range(len(columns))]
        align = ["---:"] + ["---:" if n else ":---" for n in numeric]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        return "\n".join(lines)
    if fmt == "table":
        widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
        numeric = [True] + [_is_numeric_column(rows, i) for i in range(len(columns))]

        def line(items: list[str]) -> str:
            return "  ".join(
                s.rjust(w) if n else s.ljust(w)
                for s, w, n in zip(items, widths, numeric, strict=False)
            ).rstrip()

        return "\n".join([line(header), *(line(r) for r in cells)])
    raise ValueError(f"unknown format {fmt!r}; use one of {FORMATS}")


def checkpoint_cell(record: dict[str, Any]) -> str | None:
    """A record's checkpoint path, or what removed it.

    >>> checkpoint_cell({"checkpoint": None, "checkpoint_removed": {"keep_checkpoints": 3}})
    'removed (--keep-checkpoints 3)'
    """
    removed = record.get("checkpoint_removed")
    if record.get("checkpoint") is None and removed:
        return f"removed (--keep-checkpoints {removed.get('keep_checkpoints')})"
    return record.get("checkpoint")


def cell(value: Any) -> str:
    """A value as a table shows it: 6 significant digits, ``""`` for ``None``.

    >>> cell(0.123456789), cell(None), cell(3)
    ('0.123457', '', '3')
    """
    if value is None:
        return ""
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.4g}"
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _is_numeric_column(rows: list[list[Any]], index: int) -> bool:
    values = [r[index] for r in rows if r[index] is not None]
    return bool(values) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    )
