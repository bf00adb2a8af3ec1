"""The zygote process of :mod:`tunecb.execution.zygote`: it imports Keras and the modules a
worker runs once, then forks a worker on each request of the launcher, through a middle
process that exits at once (the worker becomes the launcher's child), and the worker takes
the launcher's environment, working directory, ``sys.path`` and ``sys.argv`` of the
request before anything of its own runs. Also the messages of the socket between the two.

>>> import socket
>>> ours, theirs = socket.socketpair()
>>> send(ours, ("ready", 1)); receive(theirs)
(('ready', 1), [])
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import struct
import sys
import time
from typing import Any

# What a worker imports anyway: imported once, in the zygote, after Keras.
PRELOAD = (
    "tunecb.execution.processes", "tunecb.execution.worker", "tunecb.training.runner",
    "tunecb.study.study_file", "tunecb.storage.urls", "tunecb.storage.reconnect",
    "tunecb.study.samplers_pruners", "tunecb.oracle.attempts", "tunecb.oracle.retention",
    "tunecb.study.data",
)  # fmt: skip
PR_SET_PDEATHSIG, PR_SET_NAME = 1, 15
NAME = b"tunecb-zygote"  # its name in ps and /proc/<pid>/comm; a worker takes its own


def send(sock: socket.socket, message: Any, fds: list[int] = ()) -> None:
    """Send ``message`` (pickled, its length first) and the file descriptors ``fds``."""
    data = pickle.dumps(message)
    socket.send_fds(sock, [struct.pack("!Q", len(data))], list(fds))
    sock.sendall(data)


def receive(sock: socket.socket) -> tuple[Any, list[int]]:
    """The next message of :func:`send` and the file descriptors that came with it."""
    head, fds, _, _ = socket.recv_fds(sock, 8, 4)
    if not head:
        raise EOFError("the other end closed")
    head += _exactly(sock, 8 - len(head))
    return pickle.loads(_exactly(sock, struct.unpack("!Q", head)[0])), fds


def _exactly(sock: socket.socket, size: int) -> bytes:
    parts = []
    while size:
        part = sock.recv(min(size, 1 << 20))
        if not part:
            raise EOFError("the other end closed")
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def serve(fd: int, preload: list[str] | None = None, show: bool = False) -> None:
    """The zygote: import Keras (its start-up notices filtered unless ``show``) and the
    worker's modules (or the modules ``preload`` names), then fork a worker for each
    request on the socket ``fd``, until the launcher closes it (or dies)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the launcher's
    _die_with_parent()
    sock = socket.socket(fileno=fd)
    try:
        _preload(preload, show)
    except BaseException as exc:
        send(sock, ("failed", f"{type(exc).__name__}: {exc}"))
        os._exit(1)
    send(sock, ("ready", os.getpid()))
    while True:
        try:
            request, fds = receive(sock)
        except (EOFError, OSError):
            break
        try:
            reply = ("started", _fork(request, fds, sock))
        except Exception as exc:
            reply = ("failed", f"{type(exc).__name__}: {exc}")
        finally:
            for each in fds:
                os.close(each)
        send(sock, reply)
    os._exit(0)


def _die_with_parent() -> None:
    import ctypes

    _name(NAME)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:
        os._exit(1)


def _preload(modules: list[str] | None, show: bool) -> None:
    import importlib

    if modules is None:
        from tunecb.training.backends import import_quietly

        import_quietly(show)
    for name in PRELOAD if modules is None else modules:
        importlib.import_module(name)


def _fork(request: dict, fds: list[int], sock: socket.socket) -> int:
    """Fork a middle process that forks the worker, says its pid, and exits (the worker
    goes to the launcher, the subreaper); returns the worker's pid."""
    read, write = os.pipe()
    middle = os.fork()
    if middle == 0:
        try:
            os.close(read)
            pid = os.fork()
            if pid == 0:
                os.close(write)
                _become_worker(request, fds, sock)
            os.write(write, struct.pack("!i", pid))
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read(4)
    os.waitpid(middle, 0)  # once reaped, its orphan has its new parent
    if len(said) != 4:
        raise OSError("the middle process could not fork")
    return struct.unpack("!i", said)[0]


def _become_worker(request: dict, fds: list[int], sock: socket.socket) -> None:
    """In the forked worker: take the launcher's state, wait to be its child, run."""
    code = 1
    try:
        sock.close()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.path[:], sys.argv[:] = request["path"], request["argv"]
        _fresh_process_state(request)
        _wait_for_parent(request["launcher"])
        code = _run(request["blob"], fds)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _name(name: bytes) -> None:
    """This process's name in ps and ``/proc/<pid>/comm`` (15 bytes at most)."""
    import ctypes

    ctypes.CDLL(None).prctl(PR_SET_NAME, ctypes.c_char_p(name[:15]), 0, 0, 0)


def _fresh_process_state(request: dict) -> None:
    """What a fresh interpreter would have: its own NumPy random state, its name."""
    import multiprocessing as mp

    _name(request["name"].encode())
    process = mp.current_process()
    process.name, process.authkey = request["name"], request["authkey"]
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def _wait_for_parent(launcher: int) -> None:
    """Until the middle process has exited and this one is the launcher's; a worker
    handed to anyone else (the launcher died) exits."""
    middle = os.getppid()
    while os.getppid() == middle and middle != launcher:
        time.sleep(0.001)
    if os.getppid() != launcher:
        os._exit(130)


def _run(blob: bytes, fds: list[int]) -> int:
    """Run the worker's target as ``multiprocessing`` would; its exit code."""
    from multiprocessing.connection import Connection

    target, args = pickle.loads(blob)
    channels = tuple(Connection(fd, readable=False) for fd in fds)
    try:
        target(*args, *channels)
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        sys.stderr.write(str(exc.code) + "\n")
        return 1
    return 0
