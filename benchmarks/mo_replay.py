"""The Pareto pruner's rung rules for ``benchmarks/multiobjective.py``: the rules it can swap in
for a live search (``--pruners pareto:RULE``), and a replay of the pruner's decisions on an
unpruned search's recorded curves, which compares rung rules on the same trials without
training again.

    python benchmarks/multiobjective.py --combine out/a.json out/b.json  # adds the replays
"""

from __future__ import annotations

import contextlib
import functools

from tunecb.oracle import pareto

# The Pareto pruner's rules (``pareto`` is tunecb's default: rungs by pareto.rung_epochs, the
# first at a tenth of the budget, then times 3; the rung decision pareto.survives: rank, whole
# fronts kept, 3 start-up trials); each variant swaps one function of tunecb.oracle.pareto:
# "sha" Optuna's SuccessiveHalvingPruner's geometry with its automatic minimum resource (1
# epoch below 100): rungs 1, 3, 9, ...; "hv" the rung decision by rank, then hypervolume
# contribution, MOASHA's count (pareto.survives_by_contribution).
RUNG_RULES = {
    "sha": ("rung_epochs", functools.partial(pareto.rung_epochs, first=1)),
    "hv": ("survives", pareto.survives_by_contribution),
}
PRUNERS = ("none", "pareto", "promotion", *(f"pareto:{rule}" for rule in RUNG_RULES))


@contextlib.contextmanager
def rung_rule(pruner: str):
    """The pruner's name for the study, with its rule swapped in while it runs."""
    base, _, rule = pruner.partition(":")
    if not rule:
        yield base
        return
    name, function = RUNG_RULES[rule]
    default = getattr(pareto, name)
    setattr(pareto, name, function)
    try:
        yield base
    finally:
        setattr(pareto, name, default)


def top_down(epochs: int, reduction: int = 3) -> list[int]:
    """ASHA's rungs counted down from the budget: ``epochs / reduction**k`` (k >= 1), at
    least 1 epoch.

    >>> top_down(20), top_down(6), top_down(100)
    ([2, 6], [2], [1, 3, 11, 33])
    """
    found, k = [], 1
    while epochs // reduction**k >= 1:
        found.append(epochs // reduction**k)
        k += 1
    return sorted(set(found))


REPLAYED = {  # name: (rungs, rung decision)
    "pareto": (pareto.rung_epochs, pareto.survives),
    "pareto:hv": (pareto.rung_epochs, pareto.survives_by_contribution),
    "pareto:sha": (RUNG_RULES["sha"][1], pareto.survives),
    "pareto:sha+hv": (RUNG_RULES["sha"][1], pareto.survives_by_contribution),
    "pareto:top-down": (top_down, pareto.survives),
}


def replay(trials: list[dict], epochs: int, rungs: list[int], maximize: bool,
           survives=None) -> dict:  # fmt: skip
    """The Pareto pruner's decisions replayed on an unpruned search's curves (accuracy per
    epoch and parameter count of each trial, in trial order, as ``jobs=0`` runs them): at
    each rung a trial's values (best accuracy so far, parameters) are stored and judged
    against the earlier trials' values there (``survives``, by default
    :func:`tunecb.oracle.pareto.survives`). The
    sampler does not see the pruning here: a cheap side-by-side of rung rules on the same
    trials, not a search. The complete trials' points and the epochs trained.

    >>> up = [{"params": 10.0, "curve": [0.5, 0.9]}, {"params": 20.0, "curve": [0.4, 0.6]}]
    >>> replay(up * 2, 2, [1], True)["epochs"]  # the fourth is dominated at epoch 1
    7
    >>> replay(up * 2, 2, [1], True, pareto.survives_by_contribution)["epochs"]  # the second
    6
    """
    survives = survives or pareto.survives
    ways = [maximize, False]
    at: dict[int, list[list[float]]] = {r: [] for r in rungs}
    points, trained = [], 0
    for trial in trials:
        curve, stopped = trial["curve"], None
        best = max if maximize else min
        for rung in (r for r in rungs if r <= len(curve)):
            own = [best(curve[:rung]), trial["params"]]
            judged = survives(own, at[rung], ways)
            at[rung].append(own)
            if not judged:
                stopped = rung
                break
        trained += stopped or len(curve)
        if stopped is None and curve:
            points.append([best(curve), trial["params"]])
    return {"points": points, "epochs": trained}


def add_replays(rows: list[dict], epochs: int) -> None:
    """Each two-objective case's replayed rung rules (:func:`replay`) on its unpruned run:
    hypervolume and epochs against the unpruned run's."""
    for row in rows:
        base = row["runs"]["none"]
        if len(row["objectives"]) != 2 or "curves" not in base:
            continue
        maximize = [True, False]
        full = pareto.hypervolume(base["points"], maximize, row["reference"])
        row["replay"] = {}
        in_order = sorted(
            base["curves"], key=lambda t: t["trial"]
        )  # the report sorts the front first
        for name, (rule, survives) in REPLAYED.items():
            found = replay(in_order, epochs, rule(epochs), True, survives)
            row["replay"][name] = {
                "rungs": rule(epochs),
                "hv_ratio": pareto.hypervolume(found["points"], maximize, row["reference"]) / full,
                "epochs_ratio": found["epochs"] / base["epochs"],
            }
