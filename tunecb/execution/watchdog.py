"""Ctrl-C and SIGTERM that always work while a trial runs in this process, also when its fit
is blocked inside C++ (a ``tf.py_function`` that never returns, a hung read in a
``tf.data`` pipeline).

Python runs a signal handler only when the main thread runs bytecode: a main thread
waiting in TensorFlow's C++ never does, and Ctrl-C went unanswered. Python's C-level
handler still writes the signal's number to the file that ``signal.set_wakeup_fd`` names.
While a trial runs (:func:`stuck_trial_guard`), a thread reads that file; after a signal
it waits ``GRACE_S`` for the trial to end the normal way (``KeyboardInterrupt`` out of
the fit, the loop fails and queues it again). If the trial is still running then, the
thread does it: ``on_stuck()`` (fail and queue the trial again, as on Ctrl-C), and the
process exits at once with 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM),
nothing lost: the trial reruns from its last backup with the same command.

Only in the main thread, and only for the signals Python handles (SIGINT, and SIGTERM and
SIGHUP while the CLI turns them into an interruption). Worker processes need none: their
supervisor kills a worker that does not stop within a second.

>>> with stuck_trial_guard(lambda: None):
...     pass
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator

log = logging.getLogger("tunecb")

GRACE_S = 5.0  # after a signal, how long a trial has to stop by itself
_WATCHED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Guard:
    def __init__(self, on_stuck: Callable[[], object], grace: float) -> None:
        self.on_stuck, self.grace = on_stuck, grace
        self.lock = threading.Lock()
        self.active = True
        self.done = threading.Event()

    def watch(self, reader: socket.socket, forward: int) -> None:
        """The thread: wait for a signal's byte, then for the trial to end by itself."""
        while not self.done.is_set():
            try:
                data = reader.recv(16)
            except OSError:
                return
            if not data:
                return
            if forward >= 0:  # the wakeup file someone else set (an event loop) still hears
                with contextlib.suppress(OSError):
                    os.write(forward, data)
            signums = [b for b in data if b in _WATCHED and callable(signal.getsignal(b))]
            if signums and not self.done.wait(self.grace):
                self._end(signums[-1])

    def _end(self, signum: int) -> None:
        with self.lock:
            if not self.active:
                return
            name = signal.Signals(signum).name
            log.warning(
                "the trial did not stop within %.0f s of %s (stuck inside its fit): it is "
                "queued again and this process exits. Run the same command again to continue "
                "the study.",
                self.grace, name,
            )  # fmt: skip
            with contextlib.suppress(BaseException):
                self.on_stuck()
            os._exit(128 + signum)

    def stop(self) -> None:
        with self.lock:
            self.active = False
        self.done.set()


@contextlib.contextmanager
def stuck_trial_guard(on_stuck: Callable[[], object], grace: float = GRACE_S) -> Iterator[None]:
    """While the block runs (a trial, in the main thread), a signal that the trial does not
    answer within ``grace`` seconds runs ``on_stuck()`` and ends the process (see above)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    try:
        forward = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except (ValueError, OSError):  # not possible here: go without
        reader.close()
        writer.close()
        yield
        return
    guard = _Guard(on_stuck, grace)
    thread = threading.Thread(
        target=guard.watch, args=(reader, forward), name="tunecb-watchdog", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        guard.stop()
        signal.set_wakeup_fd(forward, warn_on_full_buffer=False)
        with contextlib.suppress(OSError):
            writer.send(b"\0")  # wake the thread: it sees done and returns
        thread.join(timeout=1.0)
        reader.close()
        writer.close()
