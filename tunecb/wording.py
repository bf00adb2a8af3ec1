"""How tunecb words numbers for a person: counts with their noun, byte sizes, durations and
numbers at a few significant digits. Imports nothing of tunecb; every layer may use it.

>>> plural(3, "trial"), size_text(3_565_158), duration_text(75), short(0.000123456)
('3 trials', '3.4 MiB', '1m 15s', '0.0001235')
"""

from __future__ import annotations

import math
import numbers
from typing import Any


def plural(n: float, word: str, many: str | None = None) -> str:
    """``n`` and ``word``, in the plural unless ``n`` is 1 (``many``: an irregular plural);
    a whole float prints as an integer, thousands get commas.

    >>> plural(1, "trial"), plural(2, "worker process"), plural(0, "row"), plural(1.0, "trial")
    ('1 trial', '2 worker processes', '0 rows', '1 trial')
    >>> plural(1234, "epoch"), plural(2.5, "trial"), plural(3, "was", "were")
    ('1,234 epochs', '2.5 trials', '3 were')
    """
    if isinstance(n, float) and n.is_integer():
        n = int(n)
    if many is None:
        many = word + ("es" if word.endswith(("s", "x", "sh")) else "s")  # not "epoches"
    number = f"{n:,}" if isinstance(n, int) else f"{n:.3g}"
    return f"{number} {word if n == 1 else many}"


def size_text(n_bytes: float) -> str:
    """``512 B``, ``3.4 MiB``... (powers of 1024, GiB at most).

    >>> size_text(512), size_text(1024), size_text(3_565_158), size_text(5 << 40)
    ('512 B', '1.0 KiB', '3.4 MiB', '5120.0 GiB')
    """
    size = float(n_bytes)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def duration_text(seconds: float | None) -> str:
    """``1h 02m``, ``4m 12s`` or ``8.5s``; ``-`` for ``None``.

    >>> duration_text(3725), duration_text(75), duration_text(8.46), duration_text(None)
    ('1h 02m', '1m 15s', '8.5s', '-')
    """
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def number(value: Any, digits: int) -> str:
    """A number at ``digits`` significant digits, without an exponent below a billion (a
    table's cell: ``""`` for ``None``).

    >>> number(0.912345, 4), number(0.000123456, 3), number(123456.7, 4), number(2.0, 4)
    ('0.9123', '0.000123', '123457', '2')
    >>> number(1e-7, 3), number(None, 4), number(float("nan"), 4), number(7, 3)
    ('1e-07', '', 'nan', '7')
    """
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if isinstance(value, int):
        return str(value)
    text = f"{value:.{digits}g}"
    if "e" in text and 1 <= abs(value) < 1e9:
        text = f"{value:.0f}"
    return text


def short(value: Any, digits: int = 4, missing: str = "-") -> str:
    """A value in a line of text: a real number that is not an integer at ``digits``
    significant digits (``:g``), anything else as it prints, ``missing`` for ``None``.

    >>> short(0.912345), short(1234567.0), short(None), short(None, missing="—"), short(64)
    ('0.9123', '1.235e+06', '-', '—', '64')
    >>> short(0.5, 6), short("relu"), short(float("nan"))
    ('0.5', 'relu', 'nan')
    """
    if value is None:
        return missing
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return f"{value:.{digits}g}"
    return str(value)
