"""Text from a results folder made safe for where it is shown: a terminal, a Markdown page, a
spreadsheet. A parameter value, a parameter's name or an error message comes from the study's
storage, which may be someone else's; none may drive a terminal (escape sequences that set
the window title or clear the screen), inject HTML into a rendered Markdown page, or start a
formula in a spreadsheet. (The HTML page escapes with :func:`html.escape` itself.)

>>> printable("\\x1b]0;pwned\\x07"), markdown_cell("<b>a|b</b>"), csv_cell("=1+1")
('\\\\x1b]0;pwned\\\\x07', '&lt;b&gt;a\\\\|b&lt;/b&gt;', "'=1+1")
"""

from __future__ import annotations

import html
import re
from typing import Any

# C0 controls but newline and tab (layout, which the tables flatten themselves), DEL, C1
# controls (0x9b is a one-byte CSI on some terminals), and the bidirectional overrides and
# isolates that reorder what a terminal shows ("Trojan Source").
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\r": "\\r", "\x0b": "\\v", "\x0c": "\\f"}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # OWASP's CSV injection prefixes


def printable(text: str) -> str:
    r"""``text`` with every control character that a terminal would act on written as a
    visible escape (``\x1b``, ``\r``, ``\u202e``); newline and tab kept.

    >>> printable("a\x1b[2Jb"), printable("ok\n\tfine")
    ('a\\x1b[2Jb', 'ok\n\tfine')
    """
    if not _UNSAFE.search(text):
        return text
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def markdown_cell(text: str) -> str:
    """``text`` for a cell of a Markdown table: HTML escaped (Markdown renderers pass raw
    HTML through), ``|`` escaped (it would end the cell), newlines as ``<br>``, and control
    characters made visible.

    >>> markdown_cell('<img src=x onerror="alert(1)">')
    '&lt;img src=x onerror=&quot;alert(1)&quot;&gt;'
    """
    text = html.escape(printable(text), quote=True)
    return text.replace("|", "\\|").replace("\n", "<br>")


def csv_cell(value: Any) -> Any:
    """``value`` for a CSV cell: a string that a spreadsheet would read as a formula (it
    starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) gets a ``'`` in
    front, as OWASP advises; numbers, and strings that are plain numbers (``-0.5``), stay as
    they are. Control characters are made visible (the CSV may be printed on a terminal).

    >>> csv_cell("@SUM(A1:A9)"), csv_cell("-0.5"), csv_cell(-0.5), csv_cell("relu")
    ("'@SUM(A1:A9)", '-0.5', -0.5, 'relu')
    """
    if not isinstance(value, str):
        return value
    if value.startswith(_FORMULA_START) and not _is_number(value):
        value = "'" + value
    return printable(value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip() == text


__all__ = ["csv_cell", "markdown_cell", "printable"]
