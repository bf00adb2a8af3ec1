"""Paused trials' models kept in memory by the worker that paused them (promotion pruner), so
that this worker resumes one without building it, loading its backup and tracing it again.

A trial the promotion pruner pauses writes its backup as always (any worker, or this one
after a restart, resumes from it). Its worker also keeps the live model (Keras keeps the
traced ``train_function`` on it) with a copy of its variables and its optimizer's at the
pause (``variables.snapshot``: early stopping's ``restore_best_weights`` and the user's callbacks
may change them once the fit ends). When this worker claims the continuation of that very
pause (the backup on disk is still the one it wrote), the runner takes the model back, puts
the copy into it (``variables.put_back``) and fits on from the pause; everything else a resume
needs (the callbacks' states, the history and best checkpoint carried over, the epoch)
comes from the backup's small files as before.

Bounded: at most :data:`MAX_MODELS` models and :data:`MAX_BYTES` of variables (counted
twice: the live ones and the copy), the least recently paused out first. A model leaves
when its continuation takes it, when it is evicted, or when the search ends
(:meth:`KeptModels.clear`); with ``--worker-memory``, a worker above 3/4 of it keeps none
(:data:`tunecb.training.runner.KEEP_BELOW`).

>>> kept = KeptModels(max_models=2, max_bytes=100)
>>> for number in (1, 2, 3):
...     _ = kept.put(Kept(model=None, values=[], config=number, paused=number, epoch=1,
...                       nbytes=10))
>>> sorted(kept.held())   # the oldest went out
[2, 3]
>>> kept.take(config=3, paused=3).paused, kept.holds(3)
(3, False)
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tunecb.errors import ConfigError
from tunecb.training.variables import all_variables, variables_bytes

log = logging.getLogger("tunecb")

MAX_MODELS = 16
"""Models kept at most per worker. In a promotion search about one paused configuration in
``eta`` (3) is ever resumed; a kept small model costs its variables twice plus its traced
graphs: a worker that kept 20 two-layer MLPs (64-128-64-10, Adam) grew 11.2 MiB of RSS per
fit, one that kept none 8.3 MiB (TensorFlow's own growth), so ~3 MiB each, ~50 MiB for 16."""

ENV = "TUNECB_KEEP_PAUSED"
"""The environment variable that sets :data:`MAX_MODELS` (0: keep none; every resume reads
its backup, as before tunecb kept them)."""

MAX_BYTES = 512 * 2**20
"""Bytes of variables kept at most per worker (live and copy, optimizer state included): a
few large models, or the :data:`MAX_MODELS` small ones."""


@dataclass
class Kept:
    """One paused trial's model: ``values`` its variables at the pause (``variables.snapshot``),
    ``config`` its configuration (first attempt's number), ``paused`` the paused trial's
    number, ``epoch`` the epochs done; ``properties`` the multi-objective properties
    measured on it; ``nbytes`` what it holds (:func:`kept_bytes`); ``best_weights`` early
    stopping's best weights, which a resume from the backup reads from the checkpoint."""

    model: Any
    values: list[np.ndarray]
    config: int
    paused: int
    epoch: int
    nbytes: int
    properties: dict[str, float] = field(default_factory=dict)
    best_weights: list | None = None  # early stopping's (restore_best_weights) at the pause


def kept_bytes(values: list[np.ndarray]) -> int:
    """What keeping a model with this snapshot costs: its variables twice (live and copy).

    >>> kept_bytes([np.zeros(4, "float32")])
    32
    """
    return 2 * variables_bytes(values)


class KeptModels:
    """The models of the trials this worker paused, by configuration, least recently
    paused first; at most ``max_models`` and ``max_bytes`` (0 models: none kept)."""

    def __init__(self, max_models: int = MAX_MODELS, max_bytes: int = MAX_BYTES) -> None:
        self.max_models = max_models
        self.max_bytes = max_bytes
        self._kept: OrderedDict[int, Kept] = OrderedDict()
        self.evicted = 0  # how many went out for room (tests, benchmarks)

    @classmethod
    def from_env(cls) -> KeptModels:
        """At most ``$TUNECB_KEEP_PAUSED`` models, else :data:`MAX_MODELS`.

        >>> os.environ[ENV] = "many"; KeptModels.from_env()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tunecb.errors.ConfigError: TUNECB_KEEP_PAUSED='many': ... or unset it
        >>> os.environ[ENV] = "0"; KeptModels.from_env().max_models
        0
        >>> del os.environ[ENV]
        """
        text = os.environ.get(ENV, "").strip()
        if not text:
            return cls()
        if not text.isdigit():
            raise ConfigError(
                f"{ENV}={text!r}: how many paused trials' models a worker keeps in memory; "
                "give an integer >= 0 (0: none) or unset it"
            )
        return cls(max_models=int(text))

    def fits(self, model: Any) -> bool:
        """Whether ``model`` (its variables and its optimizer's, kept twice) fits at all."""
        return 2 * variables_bytes(all_variables(model)) <= self.max_bytes

    def __len__(self) -> int:
        return len(self._kept)

    def put(self, kept: Kept) -> bool:
        """Keep ``kept`` (its configuration's older one goes); evict the least recently
        paused until within bounds. Whether it is kept (one larger than the bounds is not)."""
        self._kept.pop(kept.config, None)
        if self.max_models < 1 or kept.nbytes > self.max_bytes:
            return False
        self._kept[kept.config] = kept
        while len(self._kept) > self.max_models or self.nbytes() > self.max_bytes:
            config, old = self._kept.popitem(last=False)
            self.evicted += 1
            log.debug("paused trial %d's model leaves memory (room)", old.paused)
        return True

    def nbytes(self) -> int:
        return sum(k.nbytes for k in self._kept.values())

    def held(self) -> set[int]:
        """The numbers of the paused trials whose models are kept."""
        return {k.paused for k in self._kept.values()}

    def holds(self, paused: int) -> bool:
        """Whether paused trial ``paused``'s model is kept."""
        return any(k.paused == paused for k in self._kept.values())

    def take(self, config: int, paused: int) -> Kept | None:
        """Take configuration ``config``'s model out, if it is the one paused as trial
        ``paused`` (another one of the configuration is stale: dropped)."""
        kept = self._kept.pop(config, None)
        return kept if kept is not None and kept.paused == paused else None

    def clear(self) -> None:
        """Let every kept model go (the search ended)."""
        self._kept.clear()
