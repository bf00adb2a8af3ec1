"""The plots of a multi-objective study: its Pareto front (two objectives: one scatter with
the front drawn as a staircase; more: one panel per pair), and the hypervolume the front
reached as trials finished (two objectives).

>>> fig, caption = front_plot(study_records("results/mo"))  # doctest: +SKIP
"""

from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING, Any

from tunecb.oracle import pareto
from tunecb.reporting.data.records import StudyRecords
from tunecb.reporting.plots.shared import STATE_COLORS, PlotSkipped, figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FRONT_COLOR = "#d62728"
MAX_PAIRS = 6  # panels of a front of 4+ objectives


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
    front (red, joined by a staircase) on each pair of objectives."""
    objectives = result.objectives or ()
    complete, pruned = _points(result, "COMPLETE"), _points(result, "PRUNED")
    if not complete:
        raise PlotSkipped("no complete trial has every objective's value yet")
    pairs = list(combinations(objectives, 2))[:MAX_PAIRS]
    cols = min(3, len(pairs))
    rows = -(-len(pairs) // cols)
    fig, axes = figure(width=4.2 * cols + 0.6, height=3.4 * rows, nrows=rows, ncols=cols,
                       margins=(0.7, 0.2, 0.3, 0.55))  # fmt: skip
    axes = list(axes.flat) if hasattr(axes, "flat") else [axes]
    fig.subplots_adjust(wspace=0.35, hspace=0.4)
    for ax, (a, b) in zip(axes, pairs, strict=False):
        ax.grid(True, alpha=0.25)
        ax.scatter(
            [r[a.name] for r in pruned],
            [r[b.name] for r in pruned],
            marker="x",
            s=14,
            color=STATE_COLORS["PRUNED"],
            alpha=0.6,
            label=f"pruned ({len(pruned)})",
        )
        ax.scatter([r[a.name] for r in complete], [r[b.name] for r in complete], s=16,
                   color=STATE_COLORS["COMPLETE"], alpha=0.7,
                   label=f"complete ({len(complete)})")  # fmt: skip
        vectors = [(r[a.name], r[b.name]) for r in complete]
        on = pareto.front(vectors, [a.maximize, b.maximize])
        members = sorted(v for v, o in zip(vectors, on, strict=True) if o)
        ax.scatter(*zip(*members, strict=True), s=30, color=FRONT_COLOR, zorder=3,
                   label=f"front of these two ({len(members)})")  # fmt: skip
        ax.step(*zip(*members, strict=True), where="post" if a.maximize == b.maximize else "pre",
                color=FRONT_COLOR, alpha=0.6, zorder=2)  # fmt: skip
        ax.set_xlabel(f"{a.name} ({a.direction[:3]})", fontsize=8)
        ax.set_ylabel(f"{b.name} ({b.direction[:3]})", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(pairs) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7, loc="best")
    caption = (
        "Each trial's objectives at its best epoch (a pruned trial's at the epoch it stopped "
        "at); red: the trials no other complete trial beats on both axes shown"
    )
    if len(objectives) > 2:
        caption += " (the front of all objectives is the report's front column)"
    return fig, caption + "."


def hypervolume_plot(result: StudyRecords) -> tuple[Figure, str]:
    """The area the front dominates, up to the worst value of each objective among complete
    trials, after each complete trial (in the order they finished)."""
    objectives = result.objectives or ()
    if len(objectives) != 2:
        raise PlotSkipped(f"drawn for 2 objectives; this study has {len(objectives)}")
    complete = _points(result, "COMPLETE")
    if len(complete) < 2:
        raise PlotSkipped(f"needs 2 or more complete trials; the study has {len(complete)}")
    maximize = [o.maximize for o in objectives]
    names = [o.name for o in objectives]
    order = sorted(complete, key=lambda r: _finished_at(result, r["trial"]))
    vectors = [[r[n] for n in names] for r in order]
    ref = [
        (min if up else max)(v[i] for v in vectors) for i, up in enumerate(maximize)
    ]  # the worst seen: the nadir
    volumes = [pareto.hypervolume_2d(vectors[: k + 1], maximize, ref) for k in range(len(order))]
    fig, ax = figure()
    ax.step(range(1, len(volumes) + 1), volumes, where="post", color=FRONT_COLOR)
    ax.set_xlabel("complete trials, in the order they finished")
    ax.set_ylabel("hypervolume")
    caption = (
        f"The area of the {names[0]} x {names[1]} plane the front dominates, up to the worst "
        f"complete trial on each ({ref[0]:g}, {ref[1]:g}); it grows as the front improves."
    )
    return fig, caption


def _finished_at(result: StudyRecords, number: int) -> Any:
    trial = result.trials.get(number)
    done = getattr(trial, "datetime_complete", None)
    return (done is None, done.timestamp() if done else 0.0, number)
