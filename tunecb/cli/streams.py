"""stdout and stderr as a good Unix tool treats them: a reader that goes away early
(``tunecb report ... | head -1``) ends the printing quietly, and a terminal that cannot show
a character (``PYTHONIOENCODING=ascii``, ``LC_ALL=C`` without UTF-8 mode) gets a stand-in,
never a ``UnicodeEncodeError``.

>>> "trained 3 · best 0.9 → trial 2 (données)".encode("ascii", errors=ERRORS)
b'trained 3 - best 0.9 -> trial 2 (donn\\\\xe9es)'
"""

from __future__ import annotations

import codecs
import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

ERRORS = "tunecb-ascii"
"""The error handler :func:`fit_encoding` gives a stream that cannot encode everything."""

# What tunecb itself prints beyond ASCII, in ASCII: separators, arrows, sparklines.
_STAND_INS = {
    "·": "-", "…": "...", "→": "->", "—": "-", "–": "-", "◀": "<", "▶": ">", "▲": "^",
    "▼": "v", "▁": "_", "▂": ".", "▃": "-", "▄": "=", "▅": "+", "▆": "*", "▇": "#", "█": "@",
    "✓": "ok", "✗": "x", "×": "x", "±": "+-", "≤": "<=", "≥": ">=",
}  # fmt: skip


def _stand_in(error: UnicodeError) -> tuple[str | bytes, int]:
    """An encoding error handler: tunecb's own symbols in ASCII; bytes that Python decoded
    with ``surrogateescape`` (a file name in an undeclared encoding) as they were; anything
    else as a ``\\xe9`` escape (a study name stays readable, and distinct)."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text = error.object[error.start : error.end]
    if all("\udc80" <= c <= "\udcff" for c in text):
        return bytes(ord(c) - 0xDC00 for c in text), error.end
    parts = []
    for char in text:
        stand_in = _STAND_INS.get(char)
        if stand_in is not None and stand_in.isascii():
            parts.append(stand_in)
        else:
            parts.append(char.encode("ascii", "backslashreplace").decode("ascii"))
    return "".join(parts), error.end


codecs.register_error(ERRORS, _stand_in)


def fit_encoding(*streams: Any) -> None:
    """Give each stream whose encoding is not a UTF one the :data:`ERRORS` handler (which
    also covers an encoding such as Latin-1 that lacks only some characters)."""
    for stream in streams:
        encoding = getattr(stream, "encoding", None) or "utf-8"
        try:
            utf = codecs.lookup(encoding).name.startswith("utf")
        except LookupError:
            utf = False
        if not utf and hasattr(stream, "reconfigure"):
            with contextlib.suppress(OSError, ValueError):  # a closed or detached stream
                stream.reconfigure(errors=ERRORS)


class PipeSafe:
    """A text stream that stops writing, quietly, once its reader is gone: every write
    through ``sys.stdout`` (ours, Keras' progress with ``--verbose``, a ``print`` in the
    study file) is covered, so a closed pipe never fails a trial or the command."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            gone(self._stream)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            gone(self._stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def pipe_safe() -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` as :class:`PipeSafe` streams while the block runs
    (a command of the CLI), restored after it."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = PipeSafe(sys.stdout), PipeSafe(sys.stderr)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):  # what is left, before the originals return
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        sys.stdout, sys.stderr = saved


def gone(stream: Any) -> None:
    """``tunecb search ... | head -3``: the reader has what it wanted, and the command goes
    on without printing there (a search keeps its trials; a report has nothing left to do).
    The stream's descriptor is pointed at ``/dev/null``, so no later write (ours, a
    library's, Python's flush at exit) fails again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stream.fileno())
    except (OSError, ValueError, AttributeError):  # no descriptor (a test's capture)
        pass
    finally:
        os.close(devnull)


def out_utf8(text: str) -> None:
    """Print data (CSV; an HTML page, which declares UTF-8) to stdout in UTF-8, whatever the
    terminal's encoding: a stand-in would change the data. Nothing once the reader is gone."""
    stream = sys.stdout
    buffer = getattr(stream, "buffer", None)
    try:
        if buffer is None or codecs.lookup(stream.encoding or "utf-8").name == "utf-8":
            print(text, flush=True)
        else:
            stream.flush()
            buffer.write(text.encode("utf-8", "surrogateescape") + b"\n")  # argv bytes
            buffer.flush()
    except BrokenPipeError:
        gone(stream)
