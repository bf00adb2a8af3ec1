"""A tracker's client in a process of its own (W&B's): ``import wandb``, its runs and the
service they start cost about 1 s of CPU per search, which in the search's process took
the interpreter's lock from the fit (a Keras fit of a small model is mostly Python). Here
the search's process only sends each call (its arguments pickled) over a pipe and waits
for the answer in the tracker's thread; the child does the work, on another core.

One child (the tracker process) serves every tracker of a process (the launcher's and the
trial runner's, with ``--jobs 0``); it is started by the first tracker, or early by
:func:`prewarm` (``tunecb search --wandb``: it imports ``wandb`` and starts W&B's service
while the study file imports TensorFlow), and stopped when the last tracker closes (W&B's
service flushed first) or when the process exits. It ignores Ctrl-C (the search ends its
runs ``KILLED`` through it) and exits at once when the search's process is gone.

The processes the search starts afterwards (its ``--jobs`` workers) share it: it listens
on a Unix socket named, with its key, in :data:`ENV`, which their environment is given
(:func:`shared_env`; this process's own ``os.environ`` is never changed: a search run from
a notebook leaves it as it was, and no other thread or child of that process sees the
variable); a worker's trackers connect there (:class:`Connected`) instead of starting a
tracker process, and
``import wandb`` and W&B's service are paid once per search, not once per worker. A
worker that cannot connect (a Dask worker elsewhere, a tracker process gone) starts its
own. A worker that dies mid-trial leaves its open runs ended ``KILLED`` there (its rerun
continues them).

>>> raised("ConfigError", "--wandb p needs the wandb package")
ConfigError('--wandb p needs the wandb package')
"""

from __future__ import annotations

import atexit
import importlib
import itertools
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from multiprocessing import connection as mpc
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, ClassVar

from tunecb.errors import ConfigError
from tunecb.tracking._base import Kind, Pausing, TrackingError

log = logging.getLogger("tunecb")

STOP_WAIT = 30.0  # seconds the tracker process may take to flush and stop
ENV = "TUNECB_TRACKER_PROCESS"  # "<key hex>:<socket path>" of the search's tracker process
_ROOT = str(Path(__file__).resolve().parents[2])  # the folder that holds this tunecb
_RAISED: dict[str, type[Exception]] = {"ConfigError": ConfigError, "TrackingError": TrackingError}


class TrackerProcessError(Exception):
    """The tracker process failed a call (its message), or ended."""


def raised(name: str, message: str) -> Exception:
    """The exception to raise here for one the tracker process raised: tunecb's own kept
    (a missing extra stays a :class:`ConfigError`), any other as its message."""
    return _RAISED.get(name, TrackerProcessError)(message)


class _Channel:
    """Requests to a tracker process and their answers, one at a time; the trackers of this
    process that use it (the last one's release stops it)."""

    _guard: ClassVar[threading.Lock] = threading.Lock()  # the users counts, this process's

    def __init__(self, out: Connection, into: Connection) -> None:
        self._out, self._in = out, into
        self._lock = threading.Lock()  # one call at a time on the pipe
        self._ids = itertools.count()
        self.pid, self.users, self.used = os.getpid(), 0, False

    def alive(self) -> bool:
        raise NotImplementedError

    def stop(self, timeout: float = STOP_WAIT) -> None:
        raise NotImplementedError

    def request(self, *message: Any, wait: float | None = None) -> Any:
        """Send one request and return its answer (raises what the child raised)."""
        if not self._lock.acquire(timeout=-1 if wait is None else wait):
            raise TrackerProcessError("the tracker process is busy")
        try:
            self._out.send(message)
            status, value = self._in.recv()
        except (OSError, EOFError) as exc:
            raise TrackerProcessError(f"the tracker process ended ({exc or 'no answer'})") from None
        finally:
            self._lock.release()
        if status == "error":
            raise raised(*value)
        return value

    def open(self, factory: str, args: tuple, check: bool) -> tuple[int, str]:
        """A tracker ``factory(*args)`` in the child (``check``: ``factory.open``): its
        number and the URI to show."""
        number = next(self._ids)
        shown = self.request("open", number, factory, args, check)
        with _Channel._guard:
            self.users += 1
            self.used = True
        return number, shown

    def release(self, number: int) -> None:
        """Tracker ``number`` is done; the last one stops the process (or leaves it)."""
        try:
            self.request("close", number, wait=STOP_WAIT)  # (a call that hangs: stopped)
        except Exception as exc:
            log.debug("tracker process: tracker %d not closed: %s", number, exc)
        with _Channel._guard:
            self.users -= 1
            last = self.users <= 0
            if last and TrackerProcess._shared is self:
                TrackerProcess._shared = None
        if last:
            self.stop()


class TrackerProcess(_Channel):
    """The child that serves this process's trackers (see the module's text)."""

    _shared: ClassVar[_Channel | None] = None  # this process's: its own, or Connected

    def __init__(self, warm: str | None = None) -> None:
        requests, to_child = os.pipe()
        from_child, answers = os.pipe()
        self._folder = tempfile.mkdtemp(prefix="tunecb-tracker-")
        address, key = os.path.join(self._folder, "socket"), os.urandom(16)
        listening: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listening.bind(address)  # type: ignore[union-attr]
            listening.listen()  # type: ignore[union-attr]
        except OSError as exc:  # (a path too long): the workers start their own
            log.debug("tracker process: not shared: %s", exc)
            listening.close()  # type: ignore[union-attr]
            listening = None
        listen = None if listening is None else listening.fileno()
        fds = (requests, answers) if listen is None else (requests, answers, listen)
        code = (  # -P: not the working folder's modules (W&B's offline runs: ./wandb)
            f"import sys; sys.path.insert(0, {_ROOT!r}); from tunecb.tracking.remote import "
            f"serve; serve({requests}, {answers}, {warm!r}, {listen!r}, {key!r})"
        )
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-P", "-c", code], pass_fds=fds, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except BaseException:
            os.close(to_child)
            os.close(from_child)
            shutil.rmtree(self._folder, ignore_errors=True)
            raise
        finally:
            os.close(requests)
            os.close(answers)
            if listening is not None:
                listening.close()  # the child's now
        super().__init__(
            Connection(to_child, readable=False), Connection(from_child, writable=False)
        )
        self.address = "" if listening is None else f"{key.hex()}:{address}"  # shared_env
        atexit.register(self.stop)

    @classmethod
    def shared(cls, warm: str | None = None) -> _Channel:
        """This process's tracker process: the search's (:data:`ENV`), else one started
        here if none is running."""
        with cls._guard:
            current = cls._shared
            if current is None or current.pid != os.getpid() or not current.alive():
                # (a fork's copy is its parent's)
                current = cls._shared = Connected.to(os.environ.get(ENV)) or cls(warm)
            return current

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = STOP_WAIT) -> None:
        """Stop the child: once it flushed what it holds (never used: at once)."""
        if self.pid != os.getpid():
            return  # a forked copy: the parent's child
        atexit.unregister(self.stop)
        if self.proc.poll() is None:
            if self.used:
                try:
                    self.request("stop", wait=timeout)
                except Exception as exc:
                    log.debug("tracker process: not stopped cleanly: %s", exc)
            else:
                self.proc.kill()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        self._in.close()
        shutil.rmtree(self._folder, ignore_errors=True)


class Connected(_Channel):
    """A connection to the search's tracker process from one of its workers."""

    @classmethod
    def to(cls, where: str | None) -> Connected | None:
        """Connected to the tracker process at ``where`` (:data:`ENV`'s value); ``None``:
        none there (or this is the process that started it)."""
        if not where or ":" not in where:
            return None
        key, address = where.split(":", 1)
        try:
            link = mpc.Client(address, family="AF_UNIX", authkey=bytes.fromhex(key))
        except (OSError, ValueError, mpc.AuthenticationError) as exc:
            log.debug("tracker process at %s not reached: %s", address, exc)
            return None
        return cls(link, link)

    def alive(self) -> bool:
        return not self._out.closed

    def stop(self, timeout: float = STOP_WAIT) -> None:
        """Leave the tracker process (it stops with the search's last tracker)."""
        if self.pid == os.getpid() and not self._out.closed:
            self._out.close()


class RemoteTracker(Pausing):
    """A :class:`~tunecb.tracking._base.Tracker` whose calls run in the tracker process
    (``factory``: ``"module:Class"`` of the tracker there, built from ``uri`` and
    ``experiment``); the pause after a failed call is kept here."""

    def __init__(
        self, kind: Kind, uri: str, experiment: str, factory: str, check: bool = False,
        warm: str | None = None,
    ) -> None:  # fmt: skip
        self.kind, self.uri, self.experiment = kind, uri, experiment
        self._process = TrackerProcess.shared(warm)
        self._number, self.shown = self._process.open(factory, (uri, experiment), check)
        self._closed = False

    def _call(self, method: str, *args: Any) -> Any:
        return self._process.request("call", self._number, method, args)

    def start_search(self, name: str, previous: dict[str, Any] | None) -> str:
        return self._call("start_search", name, previous)

    def start_trial(self, parent: str, number: int, run_id: str | None) -> str:
        return self._call("start_trial", parent, number, run_id)

    def log_epochs(self, run_id: str, rows: list[dict[str, Any]]) -> None:
        self._call("log_epochs", run_id, rows)

    def finish_trial(self, run_id: str, record: Any, logged: int) -> None:
        self._call("finish_trial", run_id, record, logged)

    def end_search(self, parent: str, best: dict[str, Any] | None, report: Path | None) -> None:
        self._call("end_search", parent, best, report)

    def abort(self, parent: str, status: str) -> None:
        self._call("abort", parent, status)

    def recorded(self, parent: str) -> set[int]:
        return self._call("recorded", parent)

    def logged_epochs(self, run_id: str) -> int:
        return self._call("logged_epochs", run_id)

    def strays(self, parent: str, number: int) -> list[str]:
        return self._call("strays", parent, number)

    def discard(self, run_id: str) -> None:
        self._call("discard", run_id)

    def close(self) -> None:
        """This tracker is done (the tracker process stops with the last one)."""
        if not self._closed:
            self._closed = True
            self._process.release(self._number)


def shared_env() -> dict[str, str]:
    """The environment that lets a process started now (a ``--jobs`` worker) share this
    process's tracker process: :data:`ENV` while one started here runs, else nothing.

    >>> shared_env()  # no tracker process here
    {}
    """
    with _Channel._guard:
        process = TrackerProcess._shared
    if (
        isinstance(process, TrackerProcess) and process.address
        and process.pid == os.getpid() and process.alive()
    ):  # fmt: skip
        return {ENV: process.address}
    return {}


def prewarm(warm: str = "wandb") -> _Channel | None:
    """Start this process's tracker process now, importing ``warm`` (and starting W&B's
    service) while this process does other work (``None``: it could not start)."""
    try:
        return TrackerProcess.shared(warm)
    except OSError as exc:  # the search starts it again, and reports what fails
        log.debug("tracker process not started early: %s", exc)
        return None


def idle(process: _Channel | None) -> None:
    """Stop ``process`` if no tracker uses it (a search that failed before it opened one)."""
    if process is None:
        return
    with _Channel._guard:
        if process.users > 0:
            return
        if TrackerProcess._shared is process:
            TrackerProcess._shared = None
    process.stop()


def serve(
    requests: int, answers: int, warm: str | None, listening: int | None = None,
    key: bytes = b"",
) -> None:  # fmt: skip
    """The tracker process's loop (its requests on file descriptor ``requests``; the
    workers' connections on the socket ``listening``, authenticated with ``key``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the search ends the runs
    inbox, outbox = Connection(requests, writable=False), Connection(answers, readable=False)
    calls = threading.Lock()  # one call at a time, whoever sends it
    if listening is not None:
        threading.Thread(target=_accept, args=(listening, key, calls), daemon=True).start()
    if warm:
        _warm(warm)
    _answer(inbox, outbox, calls, primary=True)


def _accept(listening: int, key: bytes, calls: threading.Lock) -> None:
    """Serve each worker that connects, in a thread of its own."""
    server = socket.socket(fileno=listening)
    while True:
        try:
            sock, _ = server.accept()
        except OSError:
            return
        link = Connection(sock.detach())
        threading.Thread(target=_worker, args=(link, key, calls), daemon=True).start()


def _worker(link: Connection, key: bytes, calls: threading.Lock) -> None:
    try:
        mpc.deliver_challenge(link, key)
        mpc.answer_challenge(link, key)
    except (OSError, EOFError, mpc.AuthenticationError):
        link.close()
        return
    _answer(link, link, calls, primary=False)


_WORKERS: list[dict[int, Any]] = []  # the trackers of each worker connected (under calls)


def _answer(inbox: Connection, outbox: Connection, calls: threading.Lock, primary: bool) -> None:
    """Answer one process's requests until it goes. The search's own (``primary``) gone:
    exit, as if this died with it; a worker gone, or still there when the search stops
    this process: its runs still open here end ``KILLED`` (W&B's teardown would end them
    as finished)."""
    trackers: dict[int, Any] = {}
    if not primary:
        with calls:
            _WORKERS.append(trackers)
    while True:
        try:
            what, *rest = inbox.recv()
        except (EOFError, OSError):
            if primary:
                os._exit(1)
            with calls:
                _abandoned(trackers)
                _WORKERS[:] = [other for other in _WORKERS if other is not trackers]
            inbox.close()
            return
        with calls:
            if what == "stop" and primary:
                for others in _WORKERS:
                    _abandoned(others)
            answer = _call(trackers, what, rest, primary)
        try:
            outbox.send(answer)
        except OSError:
            continue  # gone: seen at the next recv
        if what == "stop" and primary:  # W&B wrote everything: no interpreter shutdown
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)


def _call(trackers: dict[int, Any], what: str, rest: list[Any], primary: bool) -> tuple[str, Any]:
    try:
        value = None
        if what == "open":
            number, factory, args, check = rest
            module, name = factory.split(":")
            cls = getattr(importlib.import_module(module), name)
            trackers[number] = cls.open(*args) if check else cls(*args)
            value = trackers[number].shown
        elif what == "call":
            number, method, args = rest
            value = getattr(trackers[number], method)(*args)
        elif what == "close":
            trackers.pop(rest[0], None)
        elif what == "stop" and primary:
            _teardown()
        return ("ok", value)
    except Exception as exc:
        return ("error", (type(exc).__name__, str(exc) or type(exc).__name__))


def _abandoned(trackers: dict[int, Any]) -> None:
    """A worker's runs still open here end ``KILLED`` (a rerun continues them)."""
    for tracker in list(trackers.values()):
        abort = getattr(tracker, "abort", None)
        if abort is None:
            continue
        try:
            abort(None, "KILLED")
        except Exception as exc:
            log.debug("tracker process: a dead worker's runs not ended: %s", exc)
    trackers.clear()


def _warm(module: str) -> None:
    """Import ``module`` early; for W&B, start its service too (what a first run would)."""
    try:
        imported = importlib.import_module(module)
        if module == "wandb" and os.environ.get("WANDB_MODE") != "disabled":
            imported.setup()
    except Exception as exc:  # the tracker's own opening reports it
        log.debug("tracker process: %s not warmed: %s", module, exc)


def _teardown() -> None:
    """Let W&B finish writing (its service flushes and stops), if it was used."""
    wandb = sys.modules.get("wandb")
    if wandb is not None:
        wandb.teardown()
