"""The plots of a multi-objective study: its Pareto front (two objectives: one scatter with
the front drawn as a staircase; more: one panel per pair), and the hypervolume the front
reached as trials finished (any number of objectives).

>>> fig, caption = front_plot(study_records("results/mo"))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import TYPE_CHECKING, Any

from tunecb.oracle import pareto
from tunecb.reporting.data.records import StudyRecords
from tunecb.reporting.plots.shared import STATE_COLORS, PlotSkipped, figure
from tunecb.study.objectives import Objective
from tunecb.wording import plural

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FRONT_COLOR = "#d62728"
MAX_PAIRS = 6  # panels of a front of 4+ objectives
EXACT_UP_TO = 3  # objectives whose hypervolume is computed exactly (4: up to 0.6 s, 5: 40 s)
SAMPLES = 20_000  # random points of the estimated hypervolume of more objectives


def front_steps(result: StudyRecords) -> list[tuple[str, str, Any]]:
    """The report's plot steps of a multi-objective study (none for a single objective)."""
    if not result.objectives:
        return []
    return [
        ("front", "Pareto front", lambda: front_plot(result)),
        ("hypervolume", "Hypervolume over trials", lambda: hypervolume_plot(result)),
    ]


def _points(result: StudyRecords, state: str) -> list[dict[str, Any]]:
    names = [o.name for o in result.objectives or ()]
    return [
        r
        for r in result.records
        if r["state"] == state and pareto.finite([r.get(n) for n in names])
    ]


def front_plot(result: StudyRecords) -> tuple[Figure, str]:
    """Complete trials (dots), pruned ones (crosses, at the epoch they stopped) and the
    study's front (red) on each pair of objectives, with the best trade-offs of that pair
    alone joined by a staircase (for two objectives the two are the same)."""
    objectives = result.objectives or ()
    complete, pruned = _points(result, "COMPLETE"), _points(result, "PRUNED")
    if not complete:
        raise PlotSkipped("no complete trial has every objective's value yet")
    front = [r for r in complete if r.get("front")]
    pairs = list(combinations(objectives, 2))
    shown = pairs[:MAX_PAIRS]
    cols = min(3, len(shown))
    rows = -(-len(shown) // cols)
    fig, axes = figure(width=4.2 * cols + 0.6, height=3.4 * rows, nrows=rows, ncols=cols,
                       margins=(0.7, 0.2, 0.3, 0.55))  # fmt: skip
    axes = list(axes.flat) if hasattr(axes, "flat") else [axes]
    fig.subplots_adjust(wspace=0.35, hspace=0.4)
    for ax, (a, b) in zip(axes, shown, strict=False):
        _pair_panel(ax, a, b, complete, pruned, front)
    for ax in axes[len(shown) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7, loc="best")
    caption = (
        "Each trial's objectives at its best epoch (a pruned trial's at the epoch it stopped "
        f"at); red: the {plural(len(front), 'trial')} on the Pareto front (no other complete "
        "trial is at least as good on every objective and better on one)"
    )
    if len(objectives) > 2:
        caption += (
            f", shown on each of {plural(len(shown), 'pair')} of objectives; the line joins "
            "the best trade-offs of that pair alone"
        )
    if len(shown) < len(pairs):
        caption += f" (the first {len(shown)} of {len(pairs)} pairs)"
    return fig, caption + "."


def _pair_panel(ax: Any, a: Objective, b: Objective, complete: list, pruned: list,
                front: list) -> None:  # fmt: skip
    """One panel of :func:`front_plot`: objective ``a`` across, ``b`` up."""

    def xy(records: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
        return [r[a.name] for r in records], [r[b.name] for r in records]

    ax.grid(True, alpha=0.25)
    ax.scatter(*xy(pruned), marker="x", s=14, color=STATE_COLORS["PRUNED"], alpha=0.6,
               label=f"pruned ({len(pruned)})")  # fmt: skip
    ax.scatter(*xy(complete), s=16, color=STATE_COLORS["COMPLETE"], alpha=0.7,
               label=f"complete ({len(complete)})")  # fmt: skip
    if front:
        ax.scatter(*xy(front), s=30, color=FRONT_COLOR, zorder=3,
                   label=f"Pareto front ({len(front)})")  # fmt: skip
    vectors = list(zip(*xy(complete), strict=True))
    on = pareto.front(vectors, [a.maximize, b.maximize])
    stairs = sorted(v for v, o in zip(vectors, on, strict=True) if o)
    ax.step(*zip(*stairs, strict=True), where="post" if a.maximize == b.maximize else "pre",
            color=FRONT_COLOR, alpha=0.6, zorder=2)  # fmt: skip
    ax.set_xlabel(f"{a.name} ({a.direction[:3]})", fontsize=8)
    ax.set_ylabel(f"{b.name} ({b.direction[:3]})", fontsize=8)
    ax.tick_params(labelsize=7)


def hypervolume_plot(result: StudyRecords) -> tuple[Figure, str]:
    """The share of the objective space the front dominated after each complete trial (in
    the order they finished), any number of objectives: of the box between the best value
    of each objective among complete trials and the reference point (its worst value, a
    tenth of its range further: :func:`tunecb.oracle.pareto.reference`). Exact up to
    ``EXACT_UP_TO`` objectives, estimated from seeded random points above."""
    objectives = result.objectives or ()
    complete = _points(result, "COMPLETE")
    if len(complete) < 2:
        raise PlotSkipped(f"needs 2 or more complete trials; the study has {len(complete)}")
    maximize = [o.maximize for o in objectives]
    names = [o.name for o in objectives]
    order = sorted(complete, key=lambda r: _finished_at(result, r["trial"]))
    vectors = [[float(r[n]) for n in names] for r in order]
    ref = pareto.reference(vectors, maximize)
    best = [(max if up else min)(v[i] for v in vectors) for i, up in enumerate(maximize)]
    box = math.prod(abs(r - b) for r, b in zip(ref, best, strict=True))
    if not box > 0:
        raise PlotSkipped("the complete trials' values span no volume")
    exact = len(objectives) <= EXACT_UP_TO
    volumes = (
        pareto.hypervolume_over(vectors, maximize, ref)
        if exact
        else pareto.estimated_over(vectors, maximize, ref, samples=SAMPLES)
    )
    shares = [v / box for v in volumes]
    fig, ax = figure()
    ax.step(range(1, len(shares) + 1), shares, where="post", color=FRONT_COLOR)
    ax.set_ylim(0, max(1.0, max(shares)) * 1.02)
    ax.set_xlabel("complete trials, in the order they finished")
    ax.set_ylabel("hypervolume (share of the box)")
    ax.grid(True, alpha=0.25)
    point = ", ".join(f"{n} {v:.4g}" for n, v in zip(names, ref, strict=True))
    how = "exact" if exact else f"estimated from {SAMPLES:,} seeded random points, +-0.01"
    caption = (
        f"The share of the {' x '.join(names)} box the front dominates ({how}), after each "
        "complete trial: the box spans each objective from its best complete trial to the "
        f"reference point ({point}: the worst complete trial, a tenth of the range further); "
        f"it grows as the front improves, to {shares[-1]:.3f} now."
    )
    return fig, caption


def _finished_at(result: StudyRecords, number: int) -> Any:
    trial = result.trials.get(number)
    done = getattr(trial, "datetime_complete", None)
    return (done is None, done.timestamp() if done else 0.0, number)
