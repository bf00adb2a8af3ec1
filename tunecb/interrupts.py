"""Ctrl-C during a search: never lost, and told from a ``KeyboardInterrupt`` user code raised.

While :func:`watched` runs (the trial loop, in the main thread), SIGINT goes through a handler
that counts it and then does what the previous handler did (Python's raises
``KeyboardInterrupt``). The count is what makes Ctrl-C reliable: a ``KeyboardInterrupt``
raised inside ``model.fit`` can be lost on its way out (C++ code that clears Python errors:
seen as a search that ran on and exited 0), so :func:`check` (at every epoch's end and
between trials) raises it again. A ``KeyboardInterrupt`` is user code's own (:func:`from_code`)
only when no Ctrl-C is pending and it comes from a ``raise`` outside the installed libraries;
only that one fails its trial as user code, every other one stops the search, resumable.
A SIGINT that the process ignores (a background job of a script) stays ignored.

>>> def build():
...     raise KeyboardInterrupt
>>> try:
...     build()
... except KeyboardInterrupt as exc:
...     from_code(exc)
True
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from tunecb.errors import is_library_file

_seen = 0  # SIGINTs the handler has counted
_answered = 0  # how many of them a KeyboardInterrupt that reached the trial loop answered


def _on_sigint(previous: Any) -> Any:
    def handler(signum: int, frame: Any) -> None:
        global _seen
        _seen += 1
        if callable(previous):
            previous(signum, frame)
        else:
            raise KeyboardInterrupt

    handler.tunecb_watch = True  # type: ignore[attr-defined]
    return handler


@contextlib.contextmanager
def watched() -> Iterator[None]:
    """Count every SIGINT while the block runs (in the main thread; elsewhere, and when
    SIGINT is ignored, nothing changes); a Ctrl-C still pending at its end is dropped.

    >>> with watched():
    ...     pending()
    False
    """
    previous = signal.getsignal(signal.SIGINT)
    if (
        threading.current_thread() is not threading.main_thread()
        or not callable(previous)
        or getattr(previous, "tunecb_watch", False)
    ):
        yield
        return
    signal.signal(signal.SIGINT, _on_sigint(previous))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        answered()


def pending() -> bool:
    """Whether a Ctrl-C arrived that no ``KeyboardInterrupt`` has answered yet."""
    return _seen > _answered


def answered() -> None:
    """Every Ctrl-C so far has been acted on (the search stopped)."""
    global _answered
    _answered = _seen


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a Ctrl-C is pending: its own was lost on the way.

    >>> check()  # nothing pending
    """
    if pending():
        raise KeyboardInterrupt("Ctrl-C (its KeyboardInterrupt was lost inside the fit)")


def from_code(exc: BaseException) -> bool:
    """Whether ``exc`` (a ``KeyboardInterrupt``) was raised by a ``raise`` statement in
    user code, not by a Ctrl-C."""
    if pending():
        return False
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    import linecache

    code = tb.tb_frame.f_code
    line = linecache.getline(code.co_filename, tb.tb_lineno).strip()
    return line.startswith("raise") and not is_library_file(code.co_filename)
