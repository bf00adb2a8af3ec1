"""Start a worker process that runs tunecb's code only, never the parent's ``__main__``.

``multiprocessing``'s ``spawn`` makes each child import the parent's main module again
(as ``__mp_main__``), so that functions pickled by reference to ``__main__`` resolve there.
A worker needs nothing from it: what it runs travels by value (the study of a script or a
notebook as a cloudpickle blob, :meth:`tunecb.study.declaration.LoadedStudy.portable`), so
re-running the user's script only hurts: a script without the
``if __name__ == "__main__":`` guard reaches ``tunecb.search`` again in every worker (which
dies: "start a new process before the current process has finished its bootstrapping"),
and ``python -m pkg.script`` does the same even with the guard (spawn runs it as
``__mp_main__``).

So :func:`start_worker` sends the worker's target and its arguments as one cloudpickle
blob (anything of ``__main__`` in them, a sampler class defined in the script, travels by
value) and, while the process starts, leaves the main module out of spawn's preparation
data (``init_main_from_path`` / ``init_main_from_name``). Everything else spawn sends is
kept: ``sys.path`` (a module beside the script stays importable in the worker), the
working directory, ``sys.argv``. The user's ``__main__`` module is not touched.

>>> import multiprocessing as mp
>>> p = start_worker(mp.get_context("spawn"), print, ("worker",), "example")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import pickle
import threading
from collections.abc import Callable, Iterator
from multiprocessing import spawn
from typing import Any

_MAIN_KEYS = ("init_main_from_path", "init_main_from_name")
_LOCK = threading.Lock()


def start_worker(ctx: Any, target: Callable[..., Any], args: tuple, name: str, *,
                 channel: Any = None) -> Any:  # fmt: skip
    """Start ``target(*args)`` (and ``channel``, a ``multiprocessing`` connection, last) in
    a new process of the spawn context ``ctx``, without importing the parent's
    ``__main__`` there; returns the started process."""
    import cloudpickle

    blob = cloudpickle.dumps((target, args))
    extra = () if channel is None else (channel,)
    process = ctx.Process(target=_run, args=(blob, *extra), name=name)
    with main_left_out():
        process.start()
    return process


def _run(blob: bytes, *channel: Any) -> Any:
    """The worker process's entry: unpickle the target and its arguments, and run them."""
    target, args = pickle.loads(blob)
    return target(*args, *channel)


@contextlib.contextmanager
def main_left_out() -> Iterator[None]:
    """While processes start (spawn), they do not import the parent's main module."""
    with _LOCK:
        original = spawn.get_preparation_data

        def prepared(name: str) -> dict[str, Any]:
            data = original(name)
            for key in _MAIN_KEYS:
                data.pop(key, None)
            return data

        spawn.get_preparation_data = prepared
        try:
            yield
        finally:
            spawn.get_preparation_data = original
