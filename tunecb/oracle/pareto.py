"""Pareto dominance for multi-objective studies: the front, non-dominated ranks, the rung
decisions of the Pareto pruner and of the promotion scheduler (MOASHA's count; the order:
rank, then the hypervolume a trial adds to its front), and the hypervolume of a front (any
number of objectives; also as it grew). No Optuna; numpy for the non-dominated sort.

Every function takes ``maximize``: one bool per objective (``True``: higher is better).

>>> vectors = [(0.9, 100), (0.8, 10), (0.7, 50), (0.95, 1000)]
>>> front(vectors, [True, False])
[True, True, False, True]
>>> ranks(vectors, [True, False])
[0, 0, 1, 0]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

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
    """Each vector's non-dominated rank: 0 on the front, 1 on the front of the rest, ...

    One dominance matrix (numpy), then the fronts peeled off it: a 1,000-trial rung in
    milliseconds, however many fronts it has.

    >>> ranks([(1, 1), (2, 2), (3, 3), (1, 3)], [False, False])
    [0, 1, 2, 1]
    """
    import numpy as np

    if not vectors:
        return []
    costs = np.array([_costs(v, maximize) for v in vectors], dtype=float)
    dominated_by = dominance(costs)  # [i, j]: i dominates j
    count = dominated_by.sum(axis=0)
    result = np.full(len(costs), -1)
    left = np.ones(len(costs), dtype=bool)
    rank = 0
    while left.any():
        now = left & (count == 0)
        result[now] = rank
        left &= ~now
        count -= dominated_by[now].sum(axis=0)
        rank += 1
    return result.tolist()


def dominance(costs: Any) -> Any:
    """``[i, j]``: whether cost vector ``i`` dominates ``j`` (lower is better everywhere)."""
    at_most = (costs[:, None, :] <= costs[None, :, :]).all(axis=-1)
    below = (costs[:, None, :] < costs[None, :, :]).any(axis=-1)
    return at_most & below


def crowding(vectors: Sequence[Vector]) -> list[float]:
    """NSGA-II's crowding distance of each vector among ``vectors`` (one front): the side
    lengths of the box its neighbours span, each divided by its objective's range among
    ``vectors`` (so the scale of an objective does not matter: parameters in the 1e5s
    weigh as much as an accuracy), infinite at an end of an axis.

    It depends on the points only, not on their order: equal vectors get one distance,
    and an objective on which all vectors are equal counts for none (no end to mark).

    >>> crowding([(0, 3), (1, 1), (3, 0)])
    [inf, 2.0, inf]
    >>> crowding([(0, 3e5), (1, 1e5), (3, 0)])  # the same, scaled
    [inf, 2.0, inf]
    """
    unique = sorted(set(map(tuple, vectors)))
    n = len(unique)
    distance = [0.0] * n
    if n <= 2:
        return [math.inf] * len(vectors)
    for axis in range(len(unique[0])):
        order = sorted(range(n), key=lambda i: unique[i][axis])
        low, high = unique[order[0]][axis], unique[order[-1]][axis]
        if high == low:
            continue
        for k in range(n):
            if unique[order[k]][axis] in (low, high):
                distance[order[k]] = math.inf  # every vector at an end, not one by index
                continue
            gap = unique[order[k + 1]][axis] - unique[order[k - 1]][axis]
            distance[order[k]] += gap / (high - low)
    at = {v: d for v, d in zip(unique, distance, strict=True)}
    return [at[tuple(v)] for v in vectors]


def contributions(vectors: Sequence[Vector], maximize: Sequence[bool], ref: Vector) -> list[float]:
    """The hypervolume up to ``ref`` each vector alone adds to ``vectors`` (one front; a
    vector equal to another adds nothing), rounded to 12 significant digits of the front's
    hypervolume so that equal shares compare equal. Two objectives: each vector's box
    between its neighbours (one sort); more: each left out in turn.

    >>> contributions([(0.9, 10), (0.5, 1), (0.9, 10)], [True, False], (0.4, 20))
    [0.0, 0.9, 0.0]
    >>> contributions([(1, 2, 1), (2, 1, 1)], [False] * 3, (3, 3, 3))
    [2.0, 2.0]
    """
    costs = [_costs(v, maximize) for v in vectors]
    r = _costs(ref, maximize)
    total = hypervolume(vectors, maximize, ref)
    if total <= 0:
        return [0.0] * len(vectors)
    digits = 11 - math.floor(math.log10(total))
    unique = sorted(set(costs))
    if len(r) == 2 and all(b[1] < a[1] for a, b in itertools.pairwise(unique)):
        box = {}
        for k, (x, y) in enumerate(unique):
            right = unique[k + 1][0] if k + 1 < len(unique) else r[0]
            top = unique[k - 1][1] if k else r[1]
            box[(x, y)] = max(0.0, right - x) * max(0.0, top - y)
        added = [0.0 if costs.count(c) > 1 else box[c] for c in costs]
    else:
        added = [total - hypervolume([*vectors[:i], *vectors[i + 1 :]], maximize, ref)
                 for i in range(len(vectors))]  # fmt: skip
    return [round(a, digits) for a in added]


def place(own: int, vectors: Sequence[Vector], maximize: Sequence[bool]) -> int:
    """``vectors[own]``'s place (0: best) at a rung, as the Pareto pruner and the promotion
    scheduler rank the trials there: by non-dominated rank; within its rank by the
    hypervolume it adds to that front (SMS-EMOA's measure, up to :func:`reference` of all
    ``vectors``: what the search's hypervolume loses least without); ties go to ``own``.

    Unlike NSGA-II's crowding distance (MOASHA's order), a front's ends are not kept as
    such: the smallest model so far at chance accuracy is an end of the front, adds almost
    nothing, and comes last of its front. Only ``own``'s front is measured.

    >>> at_rung = [(0.5, 100), (0.9, 10), (0.8, 50), (0.95, 80), (0.2, 1)]
    >>> [place(i, at_rung, [True, False]) for i in range(5)]
    [4, 0, 3, 1, 2]
    """
    rank = ranks(vectors, maximize)
    better = sum(r < rank[own] for r in rank)
    members = [i for i in range(len(vectors)) if rank[i] == rank[own]]
    if len(members) == 1:
        return better
    added = contributions([vectors[i] for i in members], maximize, reference(vectors, maximize))
    mine = added[members.index(own)]
    return better + sum(a > mine for a in added)


def promotion_order(vectors: Sequence[Vector], maximize: Sequence[bool]) -> list[int]:
    """The indices of ``vectors`` best first, in the order :func:`place` gives them
    (non-dominated rank, then the hypervolume each adds to its front), ties by index.

    >>> promotion_order([(0.5, 100), (0.9, 10), (0.8, 50), (0.95, 80), (0.2, 1)], [True, False])
    [1, 3, 4, 2, 0]
    """
    rank = ranks(vectors, maximize)
    ref = reference(vectors, maximize) if vectors else []
    added: dict[int, float] = {}
    for r in set(rank):
        members = [i for i in range(len(vectors)) if rank[i] == r]
        found = contributions([vectors[i] for i in members], maximize, ref)
        added.update(zip(members, found, strict=True))
    return sorted(range(len(vectors)), key=lambda i: (rank[i], -added[i], i))


def promotable(
    own: int,
    vectors: Sequence[Vector],
    maximize: Sequence[bool],
    eta: int = 3,
    last: bool = False,
) -> bool:
    """The promotion scheduler's multi-objective rule (Syne Tune's MOASHA's count):
    whether ``vectors[own]``'s :func:`place` is in the top ``len(vectors) // eta`` (with
    ``last``, no new configuration will come: at least the top one).

    >>> at_rung = [(0.5, 100), (0.9, 10), (0.8, 50)]
    >>> promotable(1, at_rung, [True, False]), promotable(0, at_rung, [True, False])
    (True, False)
    >>> two = at_rung[:2]
    >>> promotable(1, two, [True, False]), promotable(1, two, [True, False], last=True)
    (False, True)
    """
    top = max(1, len(vectors) // eta) if last else len(vectors) // eta
    return place(own, vectors, maximize) < top


def survives(
    own: Vector,
    others: Sequence[Vector],
    maximize: Sequence[bool],
    reduction: int = 3,
    startup: int = 3,
) -> bool:
    """The Pareto pruner's rung decision: whether a trial whose values at the rung are
    ``own`` goes on, given the values every other trial stored at the rung (those it
    stopped at and those that went past it).

    Successive halving's cut, as MOASHA counts it: the trial goes on when its :func:`place`
    among all of them (non-dominated rank, then the hypervolume it adds to its front) is
    among the first ``max(1, n // reduction)``: exactly the top third, so a wide front
    that straddles the cut keeps the members that add most to the hypervolume. Until
    ``startup`` trials reached the rung, every trial goes on.

    >>> survives((0.5, 100), [(0.9, 10), (0.8, 50)], [True, False])
    False
    >>> survives((0.99, 20), [(0.9, 10), (0.8, 50)], [True, False])
    True
    >>> survives((0.99, 100), [(0.9, 10), (0.8, 50)], [True, False])  # adds less than (0.9, 10)
    False
    >>> survives((0.5, 100), [(0.9, 10)], [True, False])
    True
    >>> front = [(0.9, 10), (0.95, 50), (0.97, 90), (0.12, 1), (0.2, 2)]  # one front of 6
    >>> [survives(v, front, [True, False]) for v in [(0.6, 5), (0.96, 70), (0.1, 0.5)]]
    [True, False, False]
    """
    vectors = [own, *others]
    if len(vectors) < startup:
        return True
    return place(0, vectors, maximize) < max(1, len(vectors) // reduction)


def rung_epochs(epochs: int, reduction: int = 3, first: int | None = None) -> list[int]:
    """The epochs at which the Pareto pruner judges a trial: ``first`` (by default a
    hundredth of the budget, at least 1: Optuna's SuccessiveHalvingPruner's automatic
    minimum resource, and MOASHA's grace period), then times ``reduction``, before the last
    epoch.

    >>> rung_epochs(20), rung_epochs(5), rung_epochs(300), rung_epochs(20, first=2)
    ([1, 3, 9], [1, 3], [3, 9, 27, 81, 243], [2, 6, 18])
    """
    rung, found = first or max(1, epochs // 100), []
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
    return _area(points, r)


def _area(costs: Sequence[Sequence[float]], ref: Sequence[float]) -> float:
    """The area sorted two-objective cost vectors (all below ``ref``) dominate up to ``ref``."""
    area, low = 0.0, ref[1]
    for x, y in costs:
        if y < low:
            area += (ref[0] - x) * (low - y)
            low = y
    return float(area)


def hypervolume(vectors: Sequence[Vector], maximize: Sequence[bool], ref: Vector) -> float:
    """The volume ``vectors`` dominate up to ``ref``, for any number of objectives (exact:
    slices along the first axis, each a hypervolume of one dimension fewer; fast enough for
    a rung's or a front's tens of vectors).

    >>> hypervolume([(1, 1, 2), (2, 2, 1)], [False] * 3, (3, 3, 3))
    5.0
    """
    r = _costs(ref, maximize)
    inside = [c for c in (_costs(v, maximize) for v in vectors) if all(map(float.__lt__,
              map(float, c), map(float, r)))]  # fmt: skip
    return _volume(sorted(inside), r)


def _volume(costs: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    """The volume of sorted cost vectors (all below ``ref``) up to ``ref``: slices along the
    first axis, each holding only the vectors no other in it dominates on the other axes
    (a dominated one adds nothing), its volume computed again only when that set changes."""
    if not costs:
        return 0.0
    if len(ref) == 1:
        return float(ref[0] - costs[0][0])
    if len(ref) == 2:
        return _area(costs, ref)
    volume, area, members = 0.0, 0.0, []  # members: the slice's non-dominated vectors
    for k, c in enumerate(costs):
        rest = c[1:]
        if not any(_covers(m, rest) for m in members):
            members = [m for m in members if not _covers(rest, m)] + [rest]
            area = _volume(sorted(members), ref[1:])
        width = (costs[k + 1][0] if k + 1 < len(costs) else ref[0]) - c[0]
        if width > 0:
            volume += width * area
    return volume


def _covers(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether cost vector ``a`` is at most ``b`` on every axis (``b`` adds no volume)."""
    return all(x <= y for x, y in zip(a, b, strict=True))


def reference(vectors: Sequence[Vector], maximize: Sequence[bool]) -> list[float]:
    """The reference point tunecb measures a hypervolume from: each objective's worst value
    among ``vectors``, a tenth of its range further (so that a front's end points count
    too; an objective with one value: a billionth of it, at least 1e-9, further).

    >>> reference([(0.9, 100.0), (0.5, 300.0)], [True, False])
    [0.46, 320.0]
    >>> reference([(0.9, 3e8), (0.5, 3e8)], [True, False])  # one parameter count for all
    [0.46, 300000000.3]
    """
    ref = []
    for column, up in zip(zip(*vectors, strict=True), maximize, strict=True):
        margin = (max(column) - min(column)) / 10 or max(abs(max(column)), 1.0) * 1e-9
        ref.append(round(min(column) - margin if up else max(column) + margin, 12))
    return ref


def hypervolume_over(
    vectors: Sequence[Vector], maximize: Sequence[bool], ref: Vector
) -> list[float]:
    """The hypervolume up to ``ref`` of the first 1, 2, ... ``len(vectors)`` vectors, for
    any number of objectives (exact). Incremental: the front so far is kept, and its volume
    computed again only when a vector joins it (a dominated one changes nothing), so a
    1,000-trial study costs a few volumes of its (small) front, not 1,000 of every trial.

    >>> hypervolume_over([(2, 2, 2), (3, 3, 3), (1, 1, 2)], [False] * 3, (4, 4, 4))
    [8.0, 8.0, 18.0]
    """
    r = _costs(ref, maximize)
    members: list[tuple[float, ...]] = []
    volumes, volume = [], 0.0
    for vector in vectors:
        c = tuple(map(float, _costs(vector, maximize)))
        if all(x < y for x, y in zip(c, r, strict=True)) and not any(
            _covers(m, c) for m in members
        ):
            members = [m for m in members if not _covers(c, m)] + [c]
            volume = _volume(sorted(members), r)
        volumes.append(volume)
    return volumes


def estimated_over(
    vectors: Sequence[Vector],
    maximize: Sequence[bool],
    ref: Vector,
    samples: int = 20_000,
    seed: int = 0,
) -> list[float]:
    """:func:`hypervolume_over` estimated, for 4 or more objectives (where the exact
    volume of a large front takes minutes): ``samples`` points drawn uniformly (seeded)
    in the box between the best value of each objective and ``ref``; after ``k`` vectors,
    the box's volume times the share of the points one of the first ``k`` dominates (one
    pass: each point's first dominating vector; standard error at most
    ``0.5 / sqrt(samples)`` of the box, 0.0035 by default).

    >>> stairs = [(1, 3), (2, 2), (3, 1)]
    >>> hypervolume_over(stairs, [False] * 2, (4, 4))
    [3.0, 5.0, 6.0]
    >>> [round(v) for v in estimated_over(stairs, [False] * 2, (4, 4))]  # +- 0.03
    [3, 5, 6]
    """
    import numpy as np

    if not vectors:
        return []
    costs = np.array([_costs(v, maximize) for v in vectors], dtype=float)
    r = np.array(_costs(ref, maximize), dtype=float)
    low = costs.min(axis=0)
    if (low >= r).any():
        return [0.0] * len(vectors)
    points = np.random.default_rng(seed).uniform(low, r, size=(samples, len(r)))
    # a point's first dominating vector joined the front when it came (had an earlier one
    # covered it, that one would cover the point first): only those are compared
    earlier = np.tril((costs[:, None, :] <= costs[None, :, :]).all(axis=-1).T, k=-1)
    entrants = np.flatnonzero(~earlier.any(axis=1))
    first = np.full(samples, len(vectors))  # the first vector that dominates each point
    for start in range(0, samples, 2_000):
        chunk = points[start : start + 2_000]
        covered = (costs[entrants][None, :, :] <= chunk[:, None, :]).all(axis=-1)
        found = covered.any(axis=1)
        first[start : start + 2_000][found] = entrants[covered.argmax(axis=1)[found]]
    counts = np.bincount(first, minlength=len(vectors) + 1)[: len(vectors)].cumsum()
    return (counts / samples * float(np.prod(r - low))).tolist()


def finite(vector: Sequence[float | None]) -> bool:
    """Whether every value is a finite number.

    >>> finite((1.0, 2)), finite((1.0, None)), finite((float("nan"), 1.0))
    (True, False, False)
    """
    return all(isinstance(v, int | float) and math.isfinite(v) for v in vector)
