"""TensorFlow's start-up notices, kept off the terminal in the processes tunecb owns.

On CPUs where TensorFlow turns oneDNN on by default (AVX512_VNNI, AMX: an AMD EPYC, a
recent Xeon), ``import tensorflow`` writes two notices to file descriptor 2 (twice) before it
reads ``TF_CPP_MIN_LOG_LEVEL``, so no setting hides them but ``TF_ENABLE_ONEDNN_OPTS=0``,
which turns oneDNN off::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1796545467.007005   21340 port.cc:153] oneDNN custom operations are on. ...

While TensorFlow is imported in the CLI, a worker or the zygote (:func:`tensorflow_filtered`,
or :func:`filtered` around an import), fd 2 goes through a small filter process that writes
back every line but exactly these (:data:`NOTICES`): a real error still reaches the user.
When the import raises, or the process dies during it (the filter then reads the end of its
pipe), everything is written back as it came. Nothing is filtered when the user asks for
TensorFlow's INFO lines (``TF_CPP_MIN_LOG_LEVEL=0``) or runs with ``--debug``.

>>> is_notice("WARNING: All log messages before absl::InitializeLog() is called are "
...           "written to STDERR")
True
>>> is_notice("E0000 00:00:17.5  21 cuda_dnn.cc:8] could not load cuDNN")
False
"""

from __future__ import annotations

import contextlib
import importlib.abc
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

# Whole lines, nothing less: any other line (an error, a crash's message) is written back.
NOTICES = (
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"I\d{4} \d\d:\d\d:\d+(?:\.\d+)? +\d+ port\.cc:\d+\] oneDNN custom operations are on\. "
    r"You may see slightly different numerical results due to floating-point round-off "
    r"errors from different computation orders\. To turn them off, set the environment "
    r"variable `TF_ENABLE_ONEDNN_OPTS=0`\.",
)
WAIT_S = 5.0  # for the filter to write back, after the import (it ends when its pipe does)

# The filter process: reads the pipe to its end, then the verdict ("ok": the import returned);
# without it (an exception, a death) writes everything back. Only the standard library.
_FILTER = """\
import os, re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
data = sys.stdin.buffer.read()
verdict = os.read(int(sys.argv[1]), 2)
if verdict == b"ok":
    notices = [re.compile(p.encode()) for p in sys.argv[2:]]
    data = b"".join(
        line for line in data.splitlines(keepends=True)
        if not any(n.fullmatch(line.rstrip(b"\\r\\n")) for n in notices)
    )
sys.stdout.buffer.write(data)
sys.stdout.buffer.flush()
"""

_lock = threading.Lock()
_active = False  # fd 2 is filtered already (one filter a process at a time)


def is_notice(line: str) -> bool:
    """Whether ``line`` (without its newline) is one of TensorFlow's start-up notices."""
    return any(re.fullmatch(notice, line) for notice in NOTICES)


def wanted() -> bool:
    """Whether to filter: not when the user asked for TensorFlow's INFO lines
    (``TF_CPP_MIN_LOG_LEVEL=0``) or for tunecb's debug logs (``--debug``; the ``tunecb``
    logger at DEBUG)."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() == "0":
        return False
    return not logging.getLogger("tunecb").isEnabledFor(logging.DEBUG)


@contextlib.contextmanager
def filtered(show: bool = False) -> Iterator[None]:
    """While the block runs, fd 2 goes through the filter (see the module doc); ``show``
    (``--debug``) or a filter already in place: as it is.

    >>> with filtered():
    ...     print("to stdout, as ever")
    to stdout, as ever
    """
    global _active
    with _lock:
        if show or _active or os.name != "posix" or not wanted():
            mine = False
        else:
            mine = _active = True
    if not mine:
        yield
        return
    try:
        with _redirected():
            yield
    finally:
        with _lock:
            _active = False


@contextlib.contextmanager
def _redirected() -> Iterator[None]:
    _flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all: nothing to filter
        yield
        return
    data_r, data_w = os.pipe()
    verdict_r, verdict_w = os.pipe()
    try:  # in a session of its own: a terminal's Ctrl-C is for the importing process
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _FILTER, str(verdict_r), *NOTICES],
            stdin=data_r, stdout=saved, pass_fds=(verdict_r,), start_new_session=True,
        )  # fmt: skip
    except OSError:  # no interpreter to start: show everything
        for fd in (saved, data_r, data_w, verdict_r, verdict_w):
            os.close(fd)
        yield
        return
    os.close(data_r)
    os.close(verdict_r)
    os.dup2(data_w, 2)
    os.close(data_w)
    returned = False
    try:
        yield
        returned = True
    finally:
        _flush()
        os.dup2(saved, 2)  # the pipe's last writer here: the filter reads its end
        os.close(saved)
        with contextlib.suppress(OSError):
            if returned:
                os.write(verdict_w, b"ok")
        os.close(verdict_w)
        # A process started during the import holds the pipe: the filter passes its lines
        # on until it ends, and is not waited for.
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=WAIT_S)


def _flush() -> None:
    for stream in (sys.stderr, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()


@contextlib.contextmanager
def tensorflow_filtered(show: bool = False) -> Iterator[None]:
    """While the block runs, an ``import tensorflow`` (whoever asks for it: a study file at
    its top, Keras) is :func:`filtered`; nothing is done when it is imported already, or
    with ``show``.

    >>> with tensorflow_filtered():
    ...     pass
    """
    if show or "tensorflow" in sys.modules or not wanted():
        yield
        return
    finder = _FilteredTensorFlow()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(finder)


class _FilteredTensorFlow(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` as the other finders do, its loader run :func:`filtered`.
    tunecb's own finders (a study file's lazy imports) wrap loaders themselves and are
    skipped here: they ask this one, and wrap its loader."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "tensorflow":
            return None
        for finder in list(sys.meta_path):
            if finder is self or type(finder).__module__.startswith("tunecb."):
                continue
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is None:
                continue
            if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _FilteredLoader(spec.loader)
            return spec
        return None


class _FilteredLoader(importlib.abc.Loader):
    """A loader whose module runs :func:`filtered`."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        with filtered():
            self.loader.exec_module(module)

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self.loader, name)
