"""How one value reads in a report: table cells, numbers at a given precision, clipped and
flattened text, lines of parts that fit a width. Shared by the tables, the trial view, the
HTML page and the search summary; plain strings, no printing.

>>> cell(0.123456789), number(0.000123456, 3), clipped("ValueError: boom", 8)
('0.123457', '0.000123', 'ValueEr…')
"""

from __future__ import annotations

import math
import textwrap
from typing import Any

from tunecb.escaping import printable
from tunecb.wording import number


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
    """A value as a table shows it: 6 significant digits, ``""`` for ``None``, text with
    its control characters made visible (:func:`tunecb.escaping.printable`).

    >>> cell(0.123456789), cell(None), cell(3), cell("\x1b[2J")
    ('0.123457', '', '3', '\\\\x1b[2J')
    """
    if value is None:
        return ""
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.4g}"
    return printable(str(value))


def is_numeric_column(rows: list[list[Any]], index: int) -> bool:
    values = [r[index] for r in rows if r[index] is not None]
    return bool(values) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    )


def column_numbers(values: list[Any], digits: int, most: int = 6) -> list[str]:
    """One column's numbers with the same decimals, enough for ``digits`` significant digits
    in each, so that the points line up; each at its own :func:`number` when that would take
    more than ``most`` decimals. Text and ``None`` pass through :func:`cell`.

    >>> column_numbers([0.984, 0.97623, None, 0.891], 4)
    ['0.9840', '0.9762', '', '0.8910']
    >>> column_numbers([0.0123, 2.3], 4), column_numbers([3, 12], 4)
    (['0.01230', '2.30000'], ['3', '12'])
    >>> column_numbers([1.5e-9, 0.5], 4)
    ['1.5e-09', '0.5']
    """
    floats = [v for v in values if isinstance(v, float) and math.isfinite(v)]
    if not floats:
        return [number(v, digits) if isinstance(v, int | float) else cell(v) for v in values]
    decimals = max(digits - 1 - math.floor(math.log10(abs(v))) if v else 0 for v in floats)
    if decimals > most or max(abs(v) for v in floats) >= 1e9:
        return [number(v, digits) if isinstance(v, int | float) else cell(v) for v in values]
    decimals = max(decimals, 0)
    return [
        f"{v:.{decimals}f}"
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        else cell(v)
        for v in values
    ]


def clipped(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the last one "…" when cut.

    >>> clipped("ValueError: boom", 8), clipped("short", 8)
    ('ValueEr…', 'short')
    """
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def flat(text: str) -> str:
    r"""``text`` on one line: runs of white space, newlines included, become one space.

    >>> flat("Traceback:\n  boom")
    'Traceback: boom'
    """
    return " ".join(text.split()) if "\n" in text or "\t" in text else text


def wrap_parts(parts: list[str], width: int | None, sep: str = " · ") -> list[str]:
    """``parts`` joined by ``sep`` on lines of at most ``width`` characters, broken between
    parts (a part too long by itself is wrapped at its spaces); ``None``: one line.

    >>> wrap_parts(["trained 12 of 12 epochs", "9.1s wall clock", "1 worker process"], 42)
    ['trained 12 of 12 epochs · 9.1s wall clock', '1 worker process']
    """
    if width is None:
        return [sep.join(parts)]
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + len(sep) + len(part) <= width:
            lines[-1] += sep + part
        else:
            lines += textwrap.wrap(part, width, break_on_hyphens=False) or [""]
    return lines


def number_ranges(numbers: list[int]) -> str:
    """Trial numbers as ranges: ``0-3, 5, 7-9``.

    >>> number_ranges([0, 1, 2, 3, 5, 7, 8, 9]), number_ranges([4]), number_ranges([])
    ('0-3, 5, 7-9', '4', '')
    """
    spans: list[list[int]] = []
    for n in sorted(set(numbers)):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
