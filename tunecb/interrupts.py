"""Tell a Ctrl-C from a ``KeyboardInterrupt`` that user code raised.

A ``KeyboardInterrupt`` from Ctrl-C (or from tunecb stopping a worker) is raised wherever
the process happened to be; one that user code raised comes from a ``raise`` statement
outside the installed libraries. Only the latter fails its trial as user code; every other
one stops the search, resumable. No signal handler is installed for this: the process
handles SIGINT exactly as Python does.

>>> def build():
...     raise KeyboardInterrupt
>>> try:
...     build()
... except KeyboardInterrupt as exc:
...     from_code(exc)
True
"""

from __future__ import annotations

from tunecb.errors import is_library_file


def from_code(exc: BaseException) -> bool:
    """Whether ``exc`` (a ``KeyboardInterrupt``) was raised by a ``raise`` statement in
    user code, not by a signal."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    import linecache

    code = tb.tb_frame.f_code
    line = linecache.getline(code.co_filename, tb.tb_lineno).strip()
    return line.startswith("raise") and not is_library_file(code.co_filename)
