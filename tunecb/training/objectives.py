"""The values of a multi-objective trial: the built model's properties, measured once before
its first epoch, and the per-epoch metrics read at its result epoch.

The properties under fixed names (:data:`tunecb.study.objectives.PROPERTIES`):

- ``params``: the parameter count (``model.count_params()``);
- ``size_mb``: the size of the model's weights, in MB (10**6 bytes): what its ``.keras``
  file holds besides the optimizer state and a few KB of configuration;
- ``latency_ms``: inference latency, measured the same way for every trial on the training
  backend: ``predict_on_batch`` of a fixed batch of :data:`LATENCY_BATCH` training samples,
  :data:`WARMUP` calls first (tracing, compiling), then the median of :data:`REPEATS`.

A trial's result epoch is its best epoch on the monitor (the first-listed metric): the
epoch its checkpoint holds; every other metric is read from that epoch's row of its
``history.csv``.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunecb.errors import ModelError
from tunecb.results import read_history
from tunecb.study.objectives import Objective
from tunecb.training.variables import variables_bytes

LATENCY_BATCH, WARMUP, REPEATS = 32, 3, 15


def measure(model: Any, data: Any, objectives: Sequence[Objective], where: str) -> dict[str, float]:
    """The properties among ``objectives`` of the built ``model``, by name. A user function
    that fails or returns no finite number raises :class:`ModelError` (``where``: the study
    file): the study is broken, not this trial."""
    found: dict[str, float] = {}
    for o in objectives:
        if o.per_epoch:
            continue
        if o.measure is not None:
            found[o.name] = _user_value(o, model, where)
        elif o.name == "params":
            found[o.name] = float(model.count_params())
        elif o.name == "size_mb":
            found[o.name] = weights_bytes(model) / 1e6
        elif o.name == "latency_ms":
            found[o.name] = latency_ms(model, data)
    return found


def _user_value(o: Objective, model: Any, where: str) -> float:
    name = getattr(o.measure, "__name__", "function")
    try:
        value = o.measure(model)  # type: ignore[misc]
    except Exception as exc:
        raise ModelError(
            f"objective {o.name!r}: {name}(model) in {where} raised {type(exc).__name__}: {exc}"
        ) from exc
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ModelError(
            f"objective {o.name!r}: {name}(model) in {where} returned {value!r}; "
            "return a finite number"
        )
    return float(value)


def weights_bytes(model: Any) -> int:
    """Bytes of the model's weights (no optimizer state)."""
    return variables_bytes(model.weights)


def latency_ms(model: Any, data: Any) -> float:
    """The median milliseconds of ``predict_on_batch`` on a fixed batch of training inputs."""
    batch = _batch(data)
    for _ in range(WARMUP):
        model.predict_on_batch(batch)
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        model.predict_on_batch(batch)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _batch(data: Any) -> Any:
    """The first :data:`LATENCY_BATCH` training inputs (a dataset's first batch)."""
    x = data.x
    if x is None:
        element = next(iter(data.train))
        x = element[0] if isinstance(element, tuple) else element
    if isinstance(x, dict):
        return {k: v[:LATENCY_BATCH] for k, v in x.items()}
    return x[:LATENCY_BATCH]


def values_at(
    objectives: Sequence[Objective],
    properties: dict[str, float],
    row: dict[str, Any] | None,
) -> dict[str, float | None]:
    """Every objective's value: the properties, and the metrics in ``row`` (one epoch's
    logs or ``history.csv`` row; ``None`` where missing or not finite).

    >>> from tunecb.study.objectives import parse_objectives
    >>> values_at(parse_objectives("val_accuracy:max,params:min"), {"params": 10.0},
    ...           {"val_accuracy": 0.5})
    {'val_accuracy': 0.5, 'params': 10.0}
    """
    found: dict[str, float | None] = {}
    for o in objectives:
        value = properties.get(o.name) if not o.per_epoch else (row or {}).get(o.name)
        finite = isinstance(value, int | float) and math.isfinite(value)
        found[o.name] = float(value) if finite else None
    return found


def best_row(history: Path, monitor: str, maximize: bool, last_epoch: int | None = None) -> Any:
    """The row of ``history.csv`` with the best finite monitored value (the first of equal
    ones) among epochs ``<= last_epoch``; ``None`` when there is none."""
    best = None
    for row in read_history(history):
        value, loss = row.get(monitor), row.get("loss")
        if last_epoch is not None and (row.get("epoch") or 0) > last_epoch:
            continue
        if not _finite(value) or ("loss" in row and not _finite(loss)):
            continue
        if best is None or (value > best[monitor] if maximize else value < best[monitor]):
            best = row
    return best


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def row_of(history: Path, epoch: int | None) -> dict[str, Any] | None:
    """The ``history.csv`` row of ``epoch`` (1 is the first), or ``None``."""
    if epoch is None:
        return None
    return next((r for r in read_history(history) if r.get("epoch") == epoch), None)


def trial_values(
    objectives: Sequence[Objective],
    properties: dict[str, float],
    history: Path,
    best_epoch: int | None,
) -> tuple[dict[str, float | None] | None, str | None]:
    """A finished trial's values at its best epoch (``None`` without one), and the error
    text when one of them is not a finite number there."""
    if best_epoch is None:
        return None, None
    values = values_at(objectives, properties, row_of(history, best_epoch))
    missing = [name for name, value in values.items() if value is None]
    if not missing:
        return values, None
    return values, f"objective {missing[0]} has no finite value at epoch {best_epoch}"
