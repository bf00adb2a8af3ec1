"""The Pareto pruner's rung rules for ``benchmarks/multiobjective.py``: the rules it can swap in
for a live search (``--pruners pareto:RULE``), and a replay of the pruner's decisions on an
unpruned search's recorded curves, which compares rung rules on the same trials without
training again.

    python benchmarks/multiobjective.py --combine out/a.json out/b.json  # adds the replays
    python benchmarks/mo_replay.py out/a.json pareto:crowding  # why its trials went through
    python benchmarks/mo_replay.py out/multiobjective_36x20_final.json pareto pareto:crowding
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import math
import os
from collections.abc import Sequence

from tunecb.oracle import pareto
from tunecb.training.kept_models import ENV as KEEP_PAUSED

Vector = Sequence[float]


def survives_by_contribution(
    own: Vector, others: Sequence[Vector], maximize: Sequence[bool], reduction: int = 3
) -> bool:
    """A rung decision measured against tunecb's :func:`~tunecb.oracle.pareto.survives`
    (``pareto:hv``; measured at rungs at a tenth: fewer epochs but less hypervolume than the
    rule of its time. tunecb's :func:`~tunecb.oracle.pareto.survives` now orders a front by
    contribution too, but measured up to the reference of the whole rung, not of the
    front alone, and keeps ``k < max(1, n // reduction)``):
    whether a trial whose values at the rung are ``own`` goes on.

    All of them are put in :func:`selection_order` (non-dominated rank, then the
    hypervolume each adds to its front); as in Syne Tune's MOASHA, the trial goes on when
    its place ``k`` (from 0) among the ``n`` is in the first ``1/reduction``: ``k <= n /
    reduction``. The first trial at a rung goes on; a tie goes the judged trial's way (two
    trade-offs add the same hypervolume, so the second goes on unless the first dominates
    it). No start-up count.

    >>> survives_by_contribution((0.5, 100), [(0.9, 10), (0.8, 50)], [True, False])
    False
    >>> survives_by_contribution((0.99, 100), [(0.9, 10), (0.8, 50)], [True, False])
    True
    >>> survives_by_contribution((0.5, 100), [(0.9, 10)], [True, False])
    False
    """
    vectors = [own, *others]
    return selection_order(vectors, maximize).index(0) <= len(vectors) // reduction


def survives_whole_front(
    own: Vector, others: Sequence[Vector], maximize: Sequence[bool], reduction: int = 3,
    startup: int = 3,
) -> bool:  # fmt: skip
    """The Pareto pruner's rung decision until this round (``pareto:fronts``; replaced by
    :func:`tunecb.oracle.pareto.survives`, exactly the top third): the trial goes on when
    fewer than ``max(1, n // reduction)`` of the ``n`` trials at the rung have a better
    non-dominated rank than its own (a whole front that straddles the cut goes on). Until
    ``startup`` trials reached the rung, every trial goes on.

    >>> up_down = [True, False]
    >>> survives_whole_front((0.5, 100), [(0.9, 10), (0.8, 50)], up_down)
    False
    >>> front = [(0.9, 10), (0.95, 50), (0.97, 90), (0.1, 1), (0.2, 2)]  # one front of 6
    >>> inner = (0.96, 70)
    >>> survives_whole_front(inner, front, up_down), pareto.survives(inner, front, up_down)
    (True, False)
    """
    vectors = [own, *others]
    if len(vectors) < startup:
        return True
    rank = pareto.ranks(vectors, maximize)
    better = sum(r < rank[0] for r in rank)
    return better < max(1, len(vectors) // reduction)


def crowding_order(vectors: Sequence[Vector], maximize: Sequence[bool]) -> list[int]:
    """The indices of ``vectors`` best first, as Syne Tune's MOASHA ranks a rung and as
    tunecb did until this round: by non-dominated rank, within a rank by NSGA-II's crowding
    distance (:func:`tunecb.oracle.pareto.crowding`: a front's ends first, infinite), then
    by index (so the judged trial, index 0, wins a tie of ends).

    >>> crowding_order([(0.5, 100), (0.9, 10), (0.8, 50), (0.95, 80)], [True, False])
    [1, 3, 2, 0]
    """
    rank = pareto.ranks(vectors, maximize)
    spread: dict[int, float] = {}
    for r in set(rank):
        members = [i for i in range(len(vectors)) if rank[i] == r]
        spread.update(zip(members, pareto.crowding([vectors[i] for i in members]), strict=True))
    return sorted(range(len(vectors)), key=lambda i: (rank[i], -spread[i], i))


def survives_by_crowding(
    own: Vector, others: Sequence[Vector], maximize: Sequence[bool], reduction: int = 3,
    startup: int = 3,
) -> bool:  # fmt: skip
    """The Pareto pruner's rung decision until this round (``pareto:crowding``; replaced by
    :func:`tunecb.oracle.pareto.survives`, which breaks a front by hypervolume
    contribution): exactly the top ``max(1, n // reduction)`` of :func:`crowding_order`.
    The smallest model so far is an end of the front at any accuracy, so it always goes on.

    >>> up_down = [True, False]
    >>> tiny = (0.1, 0.5)  # the smallest so far, at chance accuracy
    >>> front = [(0.9, 10), (0.95, 50), (0.97, 90), (0.12, 1), (0.2, 2)]
    >>> survives_by_crowding(tiny, front, up_down), pareto.survives(tiny, front, up_down)
    (True, False)
    """
    vectors = [own, *others]
    if len(vectors) < startup:
        return True
    return crowding_order(vectors, maximize).index(0) < max(1, len(vectors) // reduction)


def selection_order(vectors: Sequence[Vector], maximize: Sequence[bool]) -> list[int]:
    """The indices of ``vectors`` best first, as :func:`survives_by_contribution` ranks a
    rung: by non-dominated rank, within a rank by the hypervolume a vector adds to its front
    (:func:`contributions`: SMS-EMOA's selection, so what is kept is what the front's
    hypervolume loses least without), then by index.

    A model on the front by its size alone (far less accurate than one a little larger)
    adds little and comes last of its front; the ends of a front are not kept as such.

    >>> selection_order([(0.5, 100), (0.1, 9), (0.9, 50), (0.8, 10)], [True, False])
    [3, 2, 1, 0]
    """
    rank = pareto.ranks(vectors, maximize)
    added: dict[int, float] = {}
    for r in set(rank):
        members = [i for i in range(len(vectors)) if rank[i] == r]
        for i, c in zip(members, contributions([vectors[i] for i in members], maximize),
                        strict=True):  # fmt: skip
            added[i] = c
    return sorted(range(len(vectors)), key=lambda i: (rank[i], -added[i], i))


def contributions(vectors: Sequence[Vector], maximize: Sequence[bool]) -> list[float]:
    """The hypervolume each vector alone adds to ``vectors`` (``0.0`` for a dominated one
    or one of equal twins), up to :func:`reference_point` of ``vectors``; to 10 significant
    digits of their total, so that equal shares compare equal (two trade-offs add the same).

    >>> contributions([(0.9, 10), (0.5, 1), (0.4, 9)], [True, False])
    [0.36, 1.3, 0.0]
    """
    if not vectors:
        return []
    ref = reference_point(vectors, maximize)
    total = pareto.hypervolume(vectors, maximize, ref)
    digits = 9 - math.floor(math.log10(total)) if total > 0 else 0  # equal up to rounding
    added = _front_2d(vectors, maximize, ref)
    if added is None:  # not one front of two objectives: each vector left out in turn
        added = [total - pareto.hypervolume([*vectors[:i], *vectors[i + 1 :]], maximize, ref)
                 for i in range(len(vectors))]  # fmt: skip
    return [round(a, digits) for a in added]


def _front_2d(vectors: Sequence[Vector], maximize: Sequence[bool], ref: Vector) -> list | None:
    """:func:`contributions` of one front of two objectives in one sort (each vector's box
    between its neighbours; twins add nothing); ``None`` for anything else."""
    if len(ref) != 2:
        return None
    costs = [pareto._costs(v, maximize) for v in vectors]
    r = pareto._costs(ref, maximize)
    unique = sorted(set(costs))
    if any(b[1] >= a[1] for a, b in itertools.pairwise(unique)):
        return None  # one dominates another
    box = {}
    for k, (x, y) in enumerate(unique):
        right = unique[k + 1][0] if k + 1 < len(unique) else r[0]
        top = unique[k - 1][1] if k else r[1]
        box[(x, y)] = (right - x) * (top - y)
    twins = collections.Counter(costs)
    return [0.0 if twins[c] > 1 else box[c] for c in costs]


def reference_point(vectors: Sequence[Vector], maximize: Sequence[bool]) -> list[float]:
    """The worst value of each objective among ``vectors``, a tenth of its range further
    (so the ends of a front add hypervolume too); one unit further when all are equal.

    >>> reference_point([(0.9, 100), (0.5, 300)], [True, False])
    [0.46, 320.0]
    """
    ref = []
    for column, up in zip(zip(*vectors, strict=True), maximize, strict=True):
        margin = (max(column) - min(column)) / 10 or 1.0
        ref.append(round(min(column) - margin if up else max(column) + margin, 12))
    return ref


_RUNG_EPOCHS = pareto.rung_epochs  # tunecb's, before any rule is swapped in


def tenth_rungs(epochs: int) -> list[int]:
    """The Pareto pruner's rungs until this round: the first at a tenth of the budget.

    >>> tenth_rungs(20)
    [2, 6, 18]
    """
    return _RUNG_EPOCHS(epochs, first=max(1, epochs // 10))


# The Pareto pruner's rules (``pareto`` is tunecb's default: rungs by pareto.rung_epochs, 1, 3,
# 9, ...; the rung decision pareto.survives: exactly the top third by rank, then the
# hypervolume a trial adds to its front); each variant swaps functions of
# tunecb.oracle.pareto: "crowding" the default until this round (within a rank by crowding
# distance, as MOASHA: survives_by_crowding); "fronts" the default before that (rungs at a
# tenth of the budget, then times 3; whole fronts kept: survives_whole_front); "sha" that
# rung decision at the default's rungs; "hv" rungs at a tenth, the rung decision by rank,
# then hypervolume contribution up to each front's own reference, k <= n / 3
# (survives_by_contribution, above).
RUNG_RULES = {
    "crowding": {"survives": survives_by_crowding},
    "fronts": {"rung_epochs": tenth_rungs, "survives": survives_whole_front},
    "sha": {"survives": survives_whole_front},
    "hv": {"rung_epochs": tenth_rungs, "survives": survives_by_contribution},
}
PRUNERS = (
    "none",
    "pareto",
    "promotion",
    "promotion:disk",
    *(f"pareto:{rule}" for rule in RUNG_RULES),
)


@contextlib.contextmanager
def rung_rule(pruner: str):
    """The pruner's name for the study, with its rule swapped in while it runs
    (``promotion:disk``: the promotion scheduler with no paused model kept in memory, every
    resume read from its backup, as before tunecb kept them)."""
    base, _, rule = pruner.partition(":")
    if not rule:
        yield base
        return
    if rule == "disk":
        before = os.environ.get(KEEP_PAUSED)
        os.environ[KEEP_PAUSED] = "0"  # read when the search's trial runner is made
        try:
            yield base
        finally:
            os.environ.pop(KEEP_PAUSED, None)
            if before is not None:
                os.environ[KEEP_PAUSED] = before
        return
    swapped = RUNG_RULES[rule]
    defaults = {name: getattr(pareto, name) for name in swapped}
    for name, function in swapped.items():
        setattr(pareto, name, function)
    try:
        yield base
    finally:
        for name, function in defaults.items():
            setattr(pareto, name, function)


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
    "pareto:crowding": (pareto.rung_epochs, survives_by_crowding),
    "pareto:fronts": (tenth_rungs, survives_whole_front),
    "pareto:hv": (tenth_rungs, survives_by_contribution),
    "pareto:sha": (pareto.rung_epochs, survives_whole_front),
    "pareto:sha+hv": (pareto.rung_epochs, survives_by_contribution),
    "pareto:top-down": (top_down, survives_whole_front),
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
    >>> replay(up * 2, 2, [1], True, survives_by_contribution)["epochs"]  # the second
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


def cost_model(rows: list[dict]) -> dict:
    """CPU seconds of a search fitted as ``per_trial * trials + per_epoch * epochs`` (least
    squares over every run of ``rows``: each search's CPU, trials and epochs trained), so that
    a replayed rule's epochs can be turned into an estimated CPU ratio.

    >>> runs = {"none": {"cpu_s": 30.0, "epochs": 100, "complete": 2},
    ...         "pareto": {"cpu_s": 20.0, "epochs": 50, "complete": 1}}
    >>> cost_model([{"trials": 10, "runs": runs}])
    {'per_trial': 1.0, 'per_epoch': 0.2}
    """
    import numpy as np

    x, y = [], []
    for row in rows:
        for run in row["runs"].values():
            x.append([row.get("trials") or len(run.get("curves") or []), run["epochs"]])
            y.append(run["cpu_s"])
    (per_trial, per_epoch), *_ = np.linalg.lstsq(np.array(x, float), np.array(y), rcond=None)
    return {"per_trial": round(float(per_trial), 3), "per_epoch": round(float(per_epoch), 4)}


def oracle(trials: list[dict], epochs: int, rungs=None) -> dict:
    """A bound no rung rule with ``rungs`` (by default the Pareto pruner's,
    ``pareto.rung_epochs``) beats at the full hypervolume: the trials that end on the
    unpruned front train to the end, every other one stops at the first rung; the points and
    epochs as :func:`replay` gives them.

    >>> up = [{"params": 10.0, "curve": [0.5, 0.9]}, {"params": 20.0, "curve": [0.4, 0.6]}]
    >>> oracle(up, 2)["epochs"]  # the second is dominated: it stops at epoch 1
    3
    """
    found = (rungs or pareto.rung_epochs)(epochs)
    first = found[0] if found else epochs
    points = [[max(t["curve"]), t["params"]] for t in trials]
    on = pareto.front(points, [True, False])
    trained = sum(len(t["curve"]) if o else min(first, len(t["curve"]))
                  for t, o in zip(trials, on, strict=True))  # fmt: skip
    return {"points": [p for p, o in zip(points, on, strict=True) if o], "epochs": trained}


ORACLES = {  # name: (rungs, None): the bound with the first rung at epoch 1, or at a tenth
    "oracle": (pareto.rung_epochs, None),
    "oracle:tenth": (tenth_rungs, None),
}


def pooled(rows: list[dict], epochs: int, costs: dict, sizes: Sequence[int]) -> list[dict]:
    """Larger budgets estimated from the unpruned runs of ``rows`` (two objectives): for each
    task, the trials of ``k`` of its runs (``k`` in ``sizes``) one after another, as one
    sequence of ``k * trials`` trials (each start rotated over the runs), replayed with each
    rule of :data:`REPLAYED` and the :func:`oracle` bound; hypervolume and epochs against the
    whole sequence unpruned, and the CPU ratio ``costs`` (:func:`cost_model`) gives those
    epochs. An estimate: the sampler
    neither sees the pruning nor carries on from one run to the next; runs that trained the
    same trials (one seed run twice) count once."""
    maximize = [True, False]
    by_task: dict[str, dict] = {}
    for row in rows:
        base = row["runs"]["none"]
        if len(row["objectives"]) == 2 and "curves" in base:
            curves = sorted(base["curves"], key=lambda t: t["trial"])
            key = tuple((t["params"], tuple(t["curve"])) for t in curves)  # the same run twice
            by_task.setdefault(row["task"], {}).setdefault(key, curves)
    found = []
    for task, runs in by_task.items():
        runs = list(runs.values())
        for k in (k for k in sizes if k <= len(runs)):
            for start in range(len(runs)):
                trials = [t for i in range(k) for t in runs[(start + i) % len(runs)]]
                full = [[max(t["curve"]), t["params"]] for t in trials]
                full_epochs = sum(len(t["curve"]) for t in trials)
                fixed = costs["per_trial"] * len(trials)
                for name, (rule, survives) in [*REPLAYED.items(), *ORACLES.items()]:
                    got = (oracle(trials, epochs, rule) if name in ORACLES
                           else replay(trials, epochs, rule(epochs), True, survives))  # fmt: skip
                    ref = pareto.reference(full + got["points"], maximize)
                    hv = pareto.hypervolume(got["points"], maximize, ref)
                    found.append({
                        "task": task, "trials": len(trials), "start": start, "rule": name,
                        "hv_ratio": hv / pareto.hypervolume(full, maximize, ref),
                        "epochs_ratio": got["epochs"] / full_epochs,
                        "cpu_ratio": (fixed + costs["per_epoch"] * got["epochs"])
                        / (fixed + costs["per_epoch"] * full_epochs),
                    })  # fmt: skip
    return found


def why_through(trials: list[dict], epochs: int, survives=None, instead=None) -> dict:
    """Why the trials of a pruned run (its curves in trial order, as ``jobs=0`` ran them)
    trained every epoch, replayed with the rule it ran (``survives``, by default
    :func:`survives_by_crowding`) on its own values at each rung: how many passed every
    rung judged as one of the first trials there (fewer than 3: the start-up), as the
    smallest model of their front (an end: infinite crowding distance), as its most
    accurate, or otherwise (``mixed``: ends at some rungs, inside at others); how many of
    them ``instead`` (by default tunecb's :func:`tunecb.oracle.pareto.survives`) would have
    stopped against the same trials, and the epochs that saves (a lower bound: the trials it
    stops also leave the later rungs' populations); ``new_smallest``: how many trials of the
    run were the smallest so far (the sampler's share). ``mismatch``: trials whose replayed
    length differs from the run's (0 when the replay is the run's rule).

    >>> curve = [0.5, 0.6, 0.7]
    >>> run = [{"trial": i, "params": p, "curve": c} for i, (p, c) in
    ...        enumerate([(10.0, curve), (20.0, [0.9] * 3), (30.0, [0.95] * 3), (5.0, [0.1] * 3)])]
    >>> found = why_through(run, 3)
    >>> [found[k] for k in ("through", "smallest", "most accurate", "stopped_instead", "mismatch")]
    [4, 1, 1, 2, 0]
    """
    survives, instead = survives or survives_by_crowding, instead or pareto.survives
    ways = [True, False]
    rungs = pareto.rung_epochs(epochs)
    at: dict[int, list[list[float]]] = {r: [] for r in rungs}
    found = dict.fromkeys(("through", "start-up", "smallest", "most accurate", "mixed",
                           "inside", "stopped_instead", "epochs_saved", "mismatch"), 0)  # fmt: skip
    smallest = math.inf
    found["new_smallest"] = 0
    for trial in trials:
        curve, stopped, first_stop, kinds = trial["curve"], None, None, set()
        found["new_smallest"] += trial["params"] < smallest
        smallest = min(smallest, trial["params"])
        for rung in (r for r in rungs if r <= len(curve)):
            own = [max(curve[:rung]), trial["params"]]
            vectors = [own, *at[rung]]
            if first_stop is None and not instead(own, at[rung], ways):
                first_stop = rung
            kinds.add(_kind(vectors, ways))
            at[rung].append(own)
            if not survives(own, vectors[1:], ways):
                stopped = rung
                break
        found["mismatch"] += (stopped or epochs) != len(curve)
        if stopped is None and len(curve) == epochs:
            found["through"] += 1
            found[kinds.pop() if len(kinds) == 1 else "mixed"] += 1
            if first_stop is not None:
                found["stopped_instead"] += 1
                found["epochs_saved"] += epochs - first_stop
    return found


def _kind(vectors: list[list[float]], maximize: list[bool]) -> str:
    """How ``vectors[0]`` stands at its rung: among the first 3, an end of its front by size
    or by accuracy, or inside it (or behind it)."""
    if len(vectors) < 3:
        return "start-up"
    rank = pareto.ranks(vectors, maximize)
    members = [v for v, r in zip(vectors, rank, strict=True) if r == rank[0]]
    if rank[0] == 0 and vectors[0][1] <= min(v[1] for v in members):
        return "smallest"
    if rank[0] == 0 and vectors[0][0] >= max(v[0] for v in members):
        return "most accurate"
    return "inside"


def synchronous(trials: list[dict], epochs: int, order=None) -> dict:
    """Successive halving with hindsight (not a rule a search can run: it waits for every
    trial at each rung): the top ``max(1, n // 3)`` of all trials at each rung by ``order``
    (by default :func:`tunecb.oracle.pareto.promotion_order`) go on. The complete points and
    the epochs trained, as :func:`replay` gives them: what deciding with the trials that
    come later would change.

    >>> up = [{"params": 10.0, "curve": [0.5, 0.9]}, {"params": 20.0, "curve": [0.4, 0.6]}]
    >>> synchronous(up * 2, 2)["epochs"]
    5
    """
    order = order or pareto.promotion_order
    alive, stops = list(range(len(trials))), {}
    for rung in pareto.rung_epochs(epochs):
        vectors = [[max(trials[i]["curve"][:rung]), trials[i]["params"]] for i in alive]
        keep = {alive[j] for j in order(vectors, [True, False])[: max(1, len(vectors) // 3)]}
        stops.update({i: rung for i in alive if i not in keep})
        alive = [i for i in alive if i in keep]
    return {
        "points": [[max(t["curve"]), t["params"]] for i, t in enumerate(trials) if i not in stops],
        "epochs": sum(stops.get(i, len(t["curve"])) for i, t in enumerate(trials)),
    }


def main(argv: list[str]) -> int:
    """``FILE [PRUNER [RULE]]``: :func:`why_through` for each two-objective case of a result
    file of ``benchmarks/multiobjective.py`` (the run of ``PRUNER``, by default
    ``pareto:crowding``, replayed with the rule it ran, ``RULE`` of :data:`REPLAYED`: by
    default its name; files made before this round name the old default ``pareto``),
    beside the unpruned run's count of new smallest models and :func:`synchronous`'s epochs
    and hypervolume."""
    import json

    path, pruner, *rest = [*argv, "pareto:crowding"][:3] if len(argv) < 3 else argv[:3]
    rule = REPLAYED[(rest or [pruner])[0]][1]
    with open(path, encoding="utf-8") as file:
        data = json.load(file)
    print(f"{pruner} ({(rest or [pruner])[0]}): trials through every rung, and why")
    for row in data["search"]:
        runs = row["runs"]
        if len(row["objectives"]) != 2 or pruner not in runs or "curves" not in runs[pruner]:
            continue
        ran = sorted(runs[pruner]["curves"], key=lambda t: t["trial"])
        base = sorted(runs["none"]["curves"], key=lambda t: t["trial"])
        found = why_through(ran, data["epochs"], rule)
        unpruned = why_through(base, data["epochs"], lambda *a: True)["new_smallest"]
        full = [[max(t["curve"]), t["params"]] for t in base]
        sync = synchronous(base, data["epochs"])
        ref = pareto.reference(full, [True, False])
        hv = pareto.hypervolume(sync["points"], [True, False], ref)
        hv /= pareto.hypervolume(full, [True, False], ref)
        print(f"  {row['task']:8} {row['seed']}: " + ", ".join(f"{k} {v}" for k, v in found.items())
              + f"; unpruned new_smallest {unpruned}; synchronous epochs "
              f"{sync['epochs'] / sum(len(t['curve']) for t in base):.2f} hv {hv:.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
