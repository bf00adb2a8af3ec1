"""Ctrl-C during a search: never lost, and told from a ``KeyboardInterrupt`` user code raised.

While :func:`watched` runs (the trial loop, in the main thread), SIGINT goes through a handler
that counts it and then does what the previous handler did (Python's raises
``KeyboardInterrupt``). The count is what makes Ctrl-C reliable: a ``KeyboardInterrupt``
raised inside ``model.fit`` can be lost on its way out (C++ code that clears Python errors:
seen as a search that ran on and exited 0), so :func:`check` (at every epoch's end and
between trials) raises it again. A ``KeyboardInterrupt`` is user code's own (:func:`from_code`)
only when no Ctrl-C is pending and it comes from a ``raise`` outside the installed libraries;
only that one fails its trial as user code, every other one stops the search, resumable.
Any other error is an interruption too (:func:`raise_if_interrupted`) when a Ctrl-C is
pending or a ``KeyboardInterrupt`` is in its chain: user code that wraps what stopped it
(``raise RuntimeError(...) from exc``), C code that meets the pending interrupt and raises
``SystemError``. SIGTERM and SIGHUP count the same way while the CLI turns them into an
interruption (a Python handler is installed for them). A signal that the process ignores
(SIGINT of a background job of a script, SIGHUP under ``nohup``) stays ignored.

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

_seen = 0  # signals the handler has counted
_answered = 0  # how many of them a KeyboardInterrupt that reached the trial loop answered
_last: tuple[Any, int] | None = None  # the handler that the last counted signal went to
_WATCHED = ("SIGINT", "SIGTERM", "SIGHUP")


def _on_signal(previous: Any) -> Any:
    def handler(signum: int, frame: Any) -> None:
        global _seen, _last
        _seen += 1
        _last = (previous, signum)
        if callable(previous):
            previous(signum, frame)
        else:
            raise KeyboardInterrupt

    handler.tunecb_watch = True  # type: ignore[attr-defined]
    return handler


@contextlib.contextmanager
def watched() -> Iterator[None]:
    """Count every SIGINT while the block runs, and SIGTERM and SIGHUP when a Python
    handler is installed for them (the CLI's, which stops the search as on Ctrl-C); in
    the main thread only. A signal still pending at the block's end is dropped.

    >>> with watched():
    ...     pending()
    False
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for name in _WATCHED:
        sig = getattr(signal, name, None)
        old = None if sig is None else signal.getsignal(sig)
        if callable(old) and not getattr(old, "tunecb_watch", False):
            # SIGINT's default handler raises KeyboardInterrupt; the others' defaults (kill
            # the process) are not Python handlers, and are left alone.
            previous[sig] = old
    for sig, old in previous.items():
        signal.signal(sig, _on_signal(old))
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        if previous:
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
    (A pending SIGTERM goes to its handler again, which raises the CLI's own kind.)

    >>> check()  # nothing pending
    """
    if not pending():
        return
    if _last is not None and callable(_last[0]) and _last[1] != signal.SIGINT:
        _last[0](_last[1], None)  # raises (the CLI's Terminated)
    raise KeyboardInterrupt("Ctrl-C (its KeyboardInterrupt was lost inside the fit)")


def interrupt_in_chain(exc: BaseException) -> KeyboardInterrupt | None:
    """The ``KeyboardInterrupt`` among ``exc``'s causes and contexts (``exc`` included).

    >>> try:
    ...     try:
    ...         raise KeyboardInterrupt
    ...     except BaseException as inner:
    ...         raise RuntimeError("data pipeline aborted") from inner
    ... except RuntimeError as exc:
    ...     type(interrupt_in_chain(exc)).__name__
    'KeyboardInterrupt'
    >>> interrupt_in_chain(ValueError("bad")) is None
    True
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, KeyboardInterrupt):
            return item
        todo += [item.__cause__, item.__context__]
    return None


def raise_if_interrupted(exc: BaseException) -> None:
    """Raise the interruption behind ``exc`` (an error that escaped a trial), if there is
    one: a pending Ctrl-C (or SIGTERM), or a ``KeyboardInterrupt`` in its chain that user
    code did not raise itself. Then the trial is not failed as its own: it runs again.

    >>> raise_if_interrupted(ValueError("bad"))  # no interrupt: the trial's own failure
    """
    found = interrupt_in_chain(exc)
    if found is not None and from_code(found):
        return
    if found is None and not pending():
        return
    check()  # a pending signal: raised as its handler raises it
    import copy

    raise copy.copy(found) from exc  # its kind kept (the CLI's Terminated exits 143)


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
