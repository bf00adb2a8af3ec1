"""How much each hyperparameter column says about a ranked study, so that a table short of
room shows the telling ones first: filled (a conditional parameter is empty where its branch
was not taken), varying (one value in every row says nothing per row), and going with the
ranking (a cheap stand-in for importance: rank correlation for numbers, the share of the
ranks' spread between the groups for categories). Plain Python, no pandas.

>>> rows = [{"params_kind": k, "params_lr": lr} for k, lr in
...         [("cnn", 0.1), ("cnn", 0.2), ("mlp", 0.3), ("mlp", 0.1)]]
>>> round(association(rows, "params_kind"), 2), round(association(rows, "params_lr"), 2)
(0.89, 0.11)
"""

from __future__ import annotations

import math
from typing import Any

FILLED_ENOUGH = 0.5  # a parameter empty in more rows than this says little per row


def param_ranks(records: list[dict[str, Any]], params: list[str]) -> dict[str, tuple[bool, int]]:
    """``{column: (says_much, place)}``: ``says_much`` when the column is filled in at least
    half of ``records`` and holds more than one value (when filled twice or more); ``place``
    orders the columns (0 first) by that, then by :func:`association` with the ranking, then
    by how filled, then as given.

    >>> rows = [{"params_a": 1, "params_b": i, "params_c": i if i == 0 else None}
    ...         for i in range(4)]
    >>> param_ranks(rows, ["params_a", "params_b", "params_c"])
    {'params_b': (True, 0), 'params_a': (False, 1), 'params_c': (False, 2)}
    """
    n = max(len(records), 1)
    keys = {}
    for index, column in enumerate(params):
        values = [r.get(column) for r in records if r.get(column) is not None]
        filled = len(values) / n
        varies = len(values) < 2 or len({repr(v) for v in values}) > 1
        says_much = filled >= FILLED_ENOUGH and varies
        keys[column] = (not says_much, -round(association(records, column), 2), -filled, index)
    order = sorted(params, key=keys.__getitem__)
    return {column: (not keys[column][0], place) for place, column in enumerate(order)}


def association(records: list[dict[str, Any]], column: str) -> float:
    """How closely ``column`` goes with the records' order (they are ranked), from 0 to 1:
    Spearman's |rho| for numbers, the correlation ratio for other values; 0 with fewer
    than three filled rows."""
    pairs = [(rank, r[column]) for rank, r in enumerate(records) if r.get(column) is not None]
    if len(pairs) < 3:
        return 0.0
    ranks = [float(rank) for rank, _ in pairs]
    values = [v for _, v in pairs]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if numeric:
        return abs(_correlation(_ranked(ranks), _ranked([float(v) for v in values])))
    groups: dict[str, list[float]] = {}
    for rank, value in zip(ranks, values, strict=True):
        groups.setdefault(repr(value), []).append(rank)
    mean = sum(ranks) / len(ranks)
    total = sum((r - mean) ** 2 for r in ranks)
    between = sum(len(g) * (sum(g) / len(g) - mean) ** 2 for g in groups.values())
    return math.sqrt(between / total) if total else 0.0


def _ranked(values: list[float]) -> list[float]:
    """Each value's rank, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def _correlation(a: list[float], b: list[float]) -> float:
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b, strict=True))
    var = sum((x - mean_a) ** 2 for x in a) * sum((y - mean_b) ** 2 for y in b)
    return cov / math.sqrt(var) if var > 0 else 0.0
