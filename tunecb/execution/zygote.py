"""``--jobs`` workers forked from a "zygote" that imported TensorFlow once, not spawned.

A spawned worker imports TensorFlow itself (~7 CPU s here); a worker forked from a process
that already imported it starts in well under a second, and shares those pages. The zygote
is a child of the launcher, started on the first worker of a TensorFlow search and ended
with it; it imports Keras and the modules a worker runs, nothing more (no TensorFlow
context, no thread pool: each worker still sets its own threads, as
:func:`tunecb.training.backends.prepare` does), and forks a worker on each request:

- **the worker is the launcher's child**, as a spawned one is: the zygote forks a middle
  process that forks the worker and exits at once, and the launcher, a *child subreaper*
  (``PR_SET_CHILD_SUBREAPER``) for that moment only, receives the orphan. It waits for it,
  sees its exit code, and its parent-death signal (``processes._stop_with_launcher``)
  follows the launcher, not the zygote. :class:`ForkedProcess` is the handle the
  supervisor uses (``pid``, ``sentinel``, ``exitcode``, ``join``, ``kill``);
- **the worker gets the launcher's environment, working directory, ``sys.path`` and
  ``sys.argv`` of now**, sent with the request and applied before anything of the worker
  runs. A variable a library may read while it is imported (:data:`IMPORT_TIME`) that
  differs from the zygote's spawns that worker instead;
- **threads**: TensorFlow itself starts none at import; the three threads there are
  OpenBLAS's servers (NumPy's and SciPy's, shut down by their own ``pthread_atfork``
  handler before a fork) and pyarrow's jemalloc background thread (jemalloc takes its locks
  around a fork, by its own ``pthread_atfork`` handlers). The zygote forks from its only
  Python thread. NumPy's global random state is seeded anew in each worker, as a fresh
  interpreter would;
- **it dies with the launcher** (a closed socket, and its own parent-death signal).

``TUNECB_WORKER_START=spawn`` turns it off; JAX and PyTorch, ``--gpus``, and machines
without ``pidfd_open`` (Linux < 5.4) spawn.

>>> mode() in MODES
True
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from tunecb.errors import ConfigError
from tunecb.execution.spawning import start_worker
from tunecb.execution.zygote_process import receive, send

log = logging.getLogger("tunecb")

SWITCH = "TUNECB_WORKER_START"
MODES = ("zygote", "spawn")
# Environment variables a library may read once, while it is imported in the zygote (Keras'
# backend and home, TensorFlow's and XLA's flags, BLAS and OpenMP thread counts, the
# dynamic loader, Python's own): a worker whose value differs is spawned.
IMPORT_TIME = ("TF_", "KERAS_", "CUDA_", "XLA_", "OMP_", "MKL_", "KMP_", "OPENBLAS_",
               "GOTO_", "BLIS_", "LD_", "PYTHON", "MALLOC", "HOME", "NVIDIA_")  # fmt: skip
READY_TIMEOUT_S = 600.0  # the zygote's imports, on a loaded machine
FORK_TIMEOUT_S = 120.0  # one fork (milliseconds): a zygote that takes longer is ended
PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 36, 37


def mode() -> str:
    """How ``--jobs`` workers start: ``$TUNECB_WORKER_START``, else ``"zygote"``.

    >>> os.environ[SWITCH] = "fork"; mode()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tunecb.errors.ConfigError: TUNECB_WORKER_START='fork': ... choose zygote or spawn
    >>> del os.environ[SWITCH]
    """
    value = os.environ.get(SWITCH, "").strip().lower() or "zygote"
    if value not in MODES:
        raise ConfigError(
            f"{SWITCH}={os.environ[SWITCH]!r}: workers start forked from a process that "
            "imported TensorFlow once (zygote) or each in a fresh interpreter (spawn); "
            "choose zygote or spawn"
        )
    return value


def supported() -> bool:
    """Whether this machine can hand a forked worker to the launcher (Linux 5.4+)."""
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "pidfd_open")
        and hasattr(os, "P_PIDFD")
        and hasattr(signal, "pidfd_send_signal")
    )


def import_time_env(env: dict[str, str]) -> dict[str, str]:
    """The part of ``env`` a library may read while it is imported.

    >>> import_time_env({"KERAS_BACKEND": "tensorflow", "TUNECB_X": "1"})
    {'KERAS_BACKEND': 'tensorflow'}
    """
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME)}


class Starts:
    """Starts the worker processes of one search: forked from a zygote where that is safe
    (a TensorFlow search without ``--gpus``, on Linux), spawned (``ctx``) otherwise."""

    def __init__(self, ctx: Any, backend: str, debug: bool = False) -> None:
        self.ctx = ctx
        self.debug = debug  # the zygote's import of Keras shown as it comes
        self.zygote: Zygote | None = None
        self.forking = backend == "tensorflow" and mode() == "zygote" and supported()

    def start(self, target: Callable[..., Any], args: tuple, name: str, *,
              channel: Any, env: dict[str, str]) -> Any:  # fmt: skip
        """Start ``target(*args, channel)`` in a worker process that sets ``env`` first
        (as ``processes.worker_main`` does; a forked one has it already); its handle."""
        wanted = {**os.environ, **env}
        if self.forking and "CUDA_VISIBLE_DEVICES" not in env:
            try:
                if self.zygote is None:
                    self.zygote = Zygote(wanted, show=self.debug)
                if import_time_env(wanted) == self.zygote.imported_with:
                    return self.zygote.fork(target, args, name, channel, wanted)
                log.debug("worker %s spawned: its environment differs from the zygote's", name)
            except ZygoteError as exc:
                log.warning("workers start in fresh interpreters from now on: %s", exc)
                self.close()
                self.forking = False
        return start_worker(self.ctx, target, args, name, channel=channel)

    def close(self) -> None:
        """End the zygote (the workers it forked are the launcher's, and live on)."""
        if self.zygote is not None:
            self.zygote.close()
            self.zygote = None


class ZygoteError(RuntimeError):
    """The zygote could not start a worker (its workers are spawned instead)."""


class Zygote:
    """The launcher's side of a zygote process (:func:`serve`), started with ``env``."""

    def __init__(
        self, env: dict[str, str], preload: tuple[str, ...] | None = None, show: bool = False
    ) -> None:
        import json

        self.imported_with = import_time_env(env)
        ours, theirs = socket.socketpair()
        code = (
            "import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
            "from tunecb.execution.zygote_process import serve; "
            "serve(int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4] == 'show')"
        )
        modules = json.dumps(preload)  # None: Keras and the worker's modules
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code, json.dumps(sys.path), str(theirs.fileno()), modules,
                 "show" if show else "filter"],
                stdin=subprocess.DEVNULL, env=env, pass_fds=(theirs.fileno(),),
            )  # fmt: skip
        except OSError as exc:
            ours.close()
            raise ZygoteError(f"the zygote did not start: {exc}") from exc
        finally:
            theirs.close()
        self.sock = ours
        self.lock = threading.Lock()
        try:  # its imports take seconds: Ctrl-C may come meanwhile
            ready = select.select([ours], [], [], READY_TIMEOUT_S)[0]
            reply = receive(ours)[0] if ready else ("failed", "no answer")
        except BaseException as exc:
            self.close(kill=True)
            if isinstance(exc, (OSError, EOFError)):
                raise ZygoteError(f"the zygote did not start: {exc}") from exc
            raise
        if reply[0] != "ready":
            self.close(kill=True)
            raise ZygoteError(f"the zygote did not start: {reply[1]}")
        log.debug("zygote (pid %d) ready", self.process.pid)

    def fork(self, target: Callable[..., Any], args: tuple, name: str, channel: Any,
             env: dict[str, str]) -> ForkedProcess:  # fmt: skip
        """A worker running ``target(*args, channel)``, forked from the zygote with the
        launcher's current state and ``env``; a child of this process."""
        import multiprocessing as mp

        import cloudpickle

        request = {
            "blob": cloudpickle.dumps((target, args)), "name": name, "env": env,
            "cwd": os.getcwd(), "path": list(sys.path), "argv": list(sys.argv),
            "launcher": os.getpid(), "authkey": bytes(mp.current_process().authkey),
        }  # fmt: skip
        fds = [] if channel is None else [channel.fileno()]
        with self.lock, _subreaper():
            try:
                send(self.sock, request, fds)
                if not select.select([self.sock], [], [], FORK_TIMEOUT_S)[0]:
                    raise OSError(f"no worker after {FORK_TIMEOUT_S:.0f} s")  # a stuck fork
                reply = receive(self.sock)[0]
            except (OSError, EOFError) as exc:
                self.close(kill=True)
                raise ZygoteError(f"the zygote is gone ({exc})") from exc
            if reply[0] != "started":
                raise ZygoteError(f"the zygote could not fork a worker: {reply[1]}")
            return ForkedProcess.adopt(reply[1], name)

    def close(self, kill: bool = False) -> None:
        """Stop the zygote: it exits at the end of its socket (``kill``: at once)."""
        with contextlib.suppress(OSError):
            self.sock.close()
        if kill:
            self.process.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class ForkedProcess:
    """A worker forked by the zygote and adopted by this process, with the parts of
    ``multiprocessing.Process`` the supervisor uses. Its ``sentinel`` is a pidfd: readable
    once it has exited; signals go through it, so never to a recycled pid."""

    def __init__(self, pid: int, pidfd: int, name: str) -> None:
        self.pid, self.sentinel, self.name = pid, pidfd, name
        self._code: int | None = None
        self._closer = weakref.finalize(self, os.close, pidfd)

    @classmethod
    def adopt(cls, pid: int, name: str) -> ForkedProcess:
        """The handle of ``pid``, checked to be this process's child (not reaped yet)."""
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as exc:
            raise ZygoteError(f"worker {pid} is gone before it was adopted ({exc})") from exc
        try:
            os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError as exc:  # not ours: the subreaper did not take it
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.close(pidfd)
            raise ZygoteError(f"worker {pid} was not handed to this process") from exc
        return cls(pid, pidfd, name)

    @property
    def exitcode(self) -> int | None:
        self._reap(block=False)
        return self._code

    def is_alive(self) -> bool:
        return self.exitcode is None

    def join(self, timeout: float | None = None) -> None:
        if timeout is not None and not select.select([self.sentinel], [], [], timeout)[0]:
            return
        self._reap(block=True)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def close(self) -> None:
        self._closer()

    def _signal(self, signum: int) -> None:
        if self._code is None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.sentinel, signum)

    def _reap(self, block: bool) -> None:
        if self._code is not None:
            return
        try:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:  # reaped by someone else (os.wait() in this process)
            self._code = 255
            return
        if pid:
            self._code = os.waitstatus_to_exitcode(status)


_SUBREAPING = threading.Lock()


@contextlib.contextmanager
def _subreaper() -> Iterator[None]:
    """While a worker is forked: orphans of this process's descendants become its
    children (the worker, whose middle parent exits at once)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    with _SUBREAPING:
        was = ctypes.c_int(0)
        libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(was), 0, 0, 0)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise ZygoteError(f"prctl(PR_SET_CHILD_SUBREAPER): errno {ctypes.get_errno()}")
        try:
            yield
        finally:
            if not was.value:
                libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
