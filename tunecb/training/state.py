"""The state protocol of a trial's callbacks (as KerasTuner's ``get_state``/``set_state``):
each stateful callback says what it must remember to go on exactly where it stopped, as a
JSON-serialisable dict, and takes such a dict back. A trial's backup is
``{name: callback.get_state()}``; restoring it is the reverse (:func:`restore_states`).

``set_state`` is called after ``fit`` has called every ``on_train_begin`` (which resets
Keras' callbacks), before the first resumed epoch.

>>> class Counter:
...     def __init__(self):
...         self.n = 0
...     def get_state(self):
...         return {"n": self.n}
...     def set_state(self, state):
...         self.n = state["n"]
>>> a, b = Counter(), Counter()
>>> a.n = 3
>>> restore_states({"counter": b}, collect_states({"counter": a})); b.n
3
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger("tunecb")


@runtime_checkable
class Stateful(Protocol):
    """An object whose state a backup saves and a resume puts back."""

    def get_state(self) -> dict[str, Any]:
        """What this object must remember, JSON-serialisable."""
        ...

    def set_state(self, state: dict[str, Any]) -> None:
        """Take back a state from :meth:`get_state` (of this or another instance)."""
        ...


def collect_states(objects: dict[str, Stateful]) -> dict[str, dict[str, Any]]:
    """``{name: obj.get_state()}``."""
    return {name: obj.get_state() for name, obj in objects.items()}


def restore_states(objects: dict[str, Stateful], states: dict[str, dict[str, Any]]) -> None:
    """Give each object its saved state; an object without one keeps its fresh state."""
    for name, obj in objects.items():
        if name in states:
            obj.set_state(states[name])
        else:
            log.debug("no saved state for %s; it starts fresh", name)
