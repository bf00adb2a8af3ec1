"""Render report records as a terminal table, CSV, Markdown or JSON (strings, no printing).

The terminal table fits a given width (:func:`tunecb.reporting.text.terminal.narrow_table`); CSV,
JSON, Markdown and the wide table keep every column whole.

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

from tunecb.escaping import csv_cell, markdown_cell, printable
from tunecb.reporting.text.cells import cell, checkpoint_cell, flat, is_numeric_column
from tunecb.reporting.text.terminal import narrow_table

FORMATS = ("table", "csv", "markdown", "json")


def render(
    records: list[dict[str, Any]],
    fmt: str,
    columns: list[str],
    *,
    width: int | None = None,
    root: str | None = None,
) -> str:
    """``records`` (ranked) in format ``fmt``, with these ``columns``. A checkpoint that
    ``--keep-checkpoints`` removed reads ``removed (--keep-checkpoints K)``; in JSON it
    stays ``null`` and every object gets a ``checkpoint_removed`` key (when any has one).

    ``width``: the table fits that many terminal columns (:func:`narrow_table`; ``root``, the
    study folder, shortens the checkpoint paths); ``None``: every column in full."""
    if fmt == "table" and width is not None:
        return narrow_table(records, columns, width, root)
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
        writer.writerow(["rank", *map(csv_cell, columns)])
        for rank, row in enumerate(rows, 1):
            writer.writerow([rank, *("" if v is None else csv_cell(v) for v in row)])
        return out.getvalue().rstrip("\n")
    cells = [[str(rank), *(cell(v) for v in row)] for rank, row in enumerate(rows, 1)]
    header = ["rank", *map(printable, columns)]
    if fmt == "markdown":
        numeric = [is_numeric_column(rows, i) for i in range(len(columns))]
        align = ["---:"] + ["---:" if n else ":---" for n in numeric]
        lines = ["| " + " | ".join(map(markdown_cell, header)) + " |", "|" + "|".join(align) + "|"]
        lines += ["| " + " | ".join(map(markdown_cell, row)) + " |" for row in cells]
        return "\n".join(lines)
    if fmt == "table":
        cells = [[flat(c) for c in row] for row in cells]  # one line per row, nothing cut
        widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]
        numeric = [True] + [is_numeric_column(rows, i) for i in range(len(columns))]

        def line(items: list[str]) -> str:
            return "  ".join(
                s.rjust(w) if n else s.ljust(w)
                for s, w, n in zip(items, widths, numeric, strict=False)
            ).rstrip()

        return "\n".join([line(header), *(line(r) for r in cells)])
    raise ValueError(f"unknown format {fmt!r}; use one of {FORMATS}")


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
