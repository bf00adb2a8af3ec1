"""Pareto dominance for multi-objective studies: the front, non-dominated ranks, the rung
decision of the Pareto pruner, and the hypervolume of a front. Plain Python, no Optuna.

Every function takes ``maximize``: one bool per objective (``True``: higher is better).

>>> vectors = [(0.9, 100), (0.8, 10), (0.7, 50), (0.95, 1000)]
>>> front(vectors, [True, False])
[True, True, False, True]
>>> ranks(vectors, [True, False])
[0, 0, 1, 0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Vector = Sequence[float]


def _costs(vector: Vector, maximize: Sequence[bool]) -> tuple[float, ...]:
    """``vector`` as costs (lower is better on every axis)."""
    return tuple(-v if up else v for v, up in zip(vector, maximize, strict=True))


def dominates(a: Vector, b: Vector, maximize: Sequence[bool]) -> bool:
    """Whether ``a`` is at least as good as ``b`` on every objective and better on one.

    >>> up, down = True, False
    >>> dominates((0.9, 10), (0.8, 10), [up, down]), dominates((0.9, 10), (0.9, 10), [up, down])
    (True, False)
    """
    ca, cb = _costs(a, maximize), _costs(b, maximize)
    return all(x <= y for x, y in zip(ca, cb, strict=True)) and ca != cb


def front(vectors: Sequence[Vector], maximize: Sequence[bool]) -> list[bool]:
    """Which vectors no other vector dominates (equal vectors are all on the front).

    Sorted by their costs, a vector can only be dominated by one before it, and if it is,
    then also by a front member before it: each vector is compared with the front so far
    only (fast for the usual small fronts: a 1,000-trial report).
    """
    costs = [_costs(v, maximize) for v in vectors]
    order = sorted(range(len(costs)), key=costs.__getitem__)
    on: list[bool] = [False] * len(costs)
    members: list[tuple[float, ...]] = []
    for i in order:
        c = costs[i]
        if any(m != c and all(x <= y for x, y in zip(m, c, strict=True)) for m in members):
            continue
        on[i] = True
        members.append(c)
    return on


def ranks(vectors: Sequence[Vector], maximize: Sequence[bool]) -> list[int]:
    """Each vector's non-dominated rank: 0 on the front, 1 on the front of the rest, ..."""
    result = [-1] * len(vectors)
    left = list(range(len(vectors)))
    rank = 0
    while left:
        on = front([vectors[i] for i in left], maximize)
        result_left = [i for i, o in zip(left, on, strict=True) if o]
        for i in result_left:
            result[i] = rank
        left = [i for i, o in zip(left, on, strict=True) if not o]
        rank += 1
    return result


def survives(
    own: Vector,
    others: Sequence[Vector],
    maximize: Sequence[bool],
    reduction: int = 3,
    startup: int = 3,
) -> bool:
    """The Pareto pruner's rung decision: whether a trial whose values at the rung are
    ``own`` goes on, given the values of the other trials that reached the rung.

    All of them are ranked by non-dominated sorting; the trial goes on when fewer than
    ``max(1, n // reduction)`` trials have a better rank than its own (the top fraction
    ``1/reduction``, with a whole front kept when it straddles the cut). Until ``startup``
    trials reached the rung, every trial goes on.

    >>> survives((0.5, 100), [(0.9, 10), (0.8, 50)], [True, False])
    False
    >>> survives((0.99, 100), [(0.9, 10), (0.8, 50)], [True, False])
    True
    >>> survives((0.5, 100), [(0.9, 10)], [True, False])
    True
    """
    vectors = [own, *others]
    if len(vectors) < startup:
        return True
    rank = ranks(vectors, maximize)
    better = sum(r < rank[0] for r in rank)
    return better < max(1, len(vectors) // reduction)


def rung_epochs(epochs: int, reduction: int = 3) -> list[int]:
    """The epochs at which the Pareto pruner judges a trial: a tenth of the budget (at
    least 1, as Hyperband's first rung), then times ``reduction``, before the last epoch.

    >>> rung_epochs(20), rung_epochs(5), rung_epochs(100)
    ([2, 6, 18], [1, 3], [10, 30, 90])
    """
    rung, found = max(1, epochs // 10), []
    while rung < epochs:
        found.append(rung)
        rung *= reduction
    return found


def hypervolume_2d(vectors: Sequence[Vector], maximize: Sequence[bool], ref: Vector) -> float:
    """The area two objectives' vectors dominate up to the reference point ``ref`` (a
    point worse than all of them on both axes); ``0.0`` when none is better than ``ref``.

    >>> hypervolume_2d([(0.9, 10), (0.8, 5)], [True, False], (0.0, 20))
    13.0
    """
    r = _costs(ref, maximize)
    points = sorted(
        c for c in (_costs(v, maximize) for v in vectors) if c[0] < r[0] and c[1] < r[1]
    )
    area, low = 0.0, r[1]
    for x, y in points:
        if y < low:
            area += (r[0] - x) * (low - y)
            low = y
    return area


def finite(vector: Sequence[float | None]) -> bool:
    """Whether every value is a finite number.

    >>> finite((1.0, 2)), finite((1.0, None)), finite((float("nan"), 1.0))
    (True, False, False)
    """
    return all(isinstance(v, int | float) and math.isfinite(v) for v in vector)
