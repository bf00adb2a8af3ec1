"""The report's learning-curve plots: the study's history of values, every trial's curve
with the best ones highlighted, and one trial's curves (``tunecb report --trial N --plots``).
Their y-axes zoom on the range where the good trials are (:func:`zoom_limits`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunecb.reporting.data.overview import finite_number
from tunecb.reporting.data.records import StudyRecords, trial_history
from tunecb.reporting.plots.shared import (
    HIGHLIGHT,
    STATE_COLORS,
    PlotSkipped,
    figure,
    metric_label,
    png,
)
from tunecb.wording import plural

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TOP = 5  # trials highlighted in the learning curves
ZOOM_WHISKERS = 3.0  # zoom: the worse end, in interquartile ranges beyond the worse quartile
ZOOM_MARGIN = 0.05  # of the zoomed range, on each side
ZOOM_GAIN = 2.0  # zoom only when all the values span this many times the zoomed range


def history_plot(result: StudyRecords) -> tuple[Figure, str]:
    """Each trial's value by trial number, and the best so far. The y-axis zooms on the
    complete trials' values when far worse ones (pruned early) would flatten them; those
    are marked at the edge."""
    from matplotlib.ticker import MaxNLocator

    records = sorted(result.records, key=lambda r: r["trial"])
    valued = [
        r for r in records if finite_number(r["value"]) and r["state"] in ("COMPLETE", "PRUNED")
    ]
    if not valued:
        raise PlotSkipped("no trial has a value yet (all failed, or none finished)")
    fig, ax = figure()
    maximize = result.direction == "maximize"
    complete = [r["value"] for r in valued if r["state"] == "COMPLETE"]
    zoom = zoom_limits(complete if len(complete) >= 2 else [r["value"] for r in valued],
                       [r["value"] for r in valued], maximize)  # fmt: skip
    outside = [] if zoom is None else [r for r in valued if not zoom[0] <= r["value"] <= zoom[1]]
    for state, marker, size in (("PRUNED", "x", 14), ("COMPLETE", "o", 18)):
        xs = [r["trial"] for r in valued if r["state"] == state and r not in outside]
        ys = [r["value"] for r in valued if r["state"] == state and r not in outside]
        if xs:
            ax.scatter(xs, ys, s=size, marker=marker, color=STATE_COLORS[state], alpha=0.7,
                       label=f"{state.lower()} ({len(xs)})", linewidths=1)  # fmt: skip
    if zoom is not None:
        lo, hi = zoom
        edge = lo + (hi - lo) * 0.01 if maximize else hi - (hi - lo) * 0.01
        ax.scatter([r["trial"] for r in outside], [edge] * len(outside), s=16, color="#8a8f94",
                   marker="v" if maximize else "^", label=f"{_worse(maximize)} the range "
                   f"({len(outside)})", zorder=3, clip_on=False)  # fmt: skip
        ax.set_ylim(lo, hi)
    best_x, best_y, best = [], [], None
    for r in valued:
        if r["state"] != "COMPLETE":
            continue
        if best is None or (r["value"] > best if maximize else r["value"] < best):
            best = r["value"]
        best_x.append(r["trial"])
        best_y.append(best)
    if best_x:
        ax.step(best_x, best_y, where="post", color="#d62728", linewidth=1.8, label="best so far")
    failed = sum(r["state"] == "FAIL" for r in records)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(metric_label(result))
    ax.legend(loc="best", fontsize=8)
    caption = "The red line is the best complete trial so far."
    if any(r["state"] == "PRUNED" for r in valued):
        caption += " A pruned trial's value is the best it reached before it was stopped."
    if zoom is not None:
        arrow, side = ("▼", "bottom") if maximize else ("▲", "top")
        caption += (
            f" Axis zoomed on the complete trials' values: {plural(len(outside), 'trial')} "
            f"{_worse(maximize)} the range {_be(len(outside))} marked {arrow} at the {side} edge."
        )
    if failed:
        caption += (
            f" {plural(failed, 'failed trial')} {'has' if failed == 1 else 'have'} no value and "
            f"{_be(failed)} not drawn."
        )
    return fig, caption


def zoom_limits(
    core: list[float], values: list[float], maximize: bool
) -> tuple[float, float] | None:
    """y-limits that show the ``core`` values (the complete trials') well when a few far
    worse ``values`` (trials pruned early, a trial that learnt nothing) would squeeze them
    into a line; ``None`` when every value fits, or zooming would gain little.

    The worse end lies 3 interquartile ranges beyond the core's worse quartile (with fewer
    than 4 core values: at the worst of them); the better end is never cut.

    >>> good = [0.95, 0.94, 0.93, 0.92, 0.90]
    >>> [round(x, 3) for x in zoom_limits(good, [*good, 0.1, 0.12], maximize=True)]
    [0.798, 0.957]
    >>> zoom_limits(good, [*good, 0.85], maximize=True) is None  # close enough: no zoom
    True
    >>> [round(x, 3) for x in zoom_limits([0.2, 0.25], [0.2, 0.25, 2.3], maximize=False)]
    [0.198, 0.253]
    """
    import statistics

    if not core or not values:
        return None
    sign = 1.0 if maximize else -1.0  # work as if maximizing
    core_s = sorted(sign * v for v in core)
    all_s = [sign * v for v in values]
    if len(core_s) >= 4:
        q1, _, q3 = statistics.quantiles(core_s, n=4)
        worse = max(q1 - ZOOM_WHISKERS * (q3 - q1), min(all_s))
    else:
        worse = core_s[0]
    better = max(max(all_s), core_s[-1])
    span = better - worse or abs(better) * 0.1 or 0.1
    lo, hi = worse - ZOOM_MARGIN * span, better + ZOOM_MARGIN * span
    full = max(all_s) - min(all_s)
    if min(all_s) >= lo or full < ZOOM_GAIN * (hi - lo):
        return None
    return (lo, hi) if maximize else (-hi, -lo)


def _worse(maximize: bool) -> str:
    return "below" if maximize else "above"


def _be(n: int) -> str:
    return "is" if n == 1 else "are"


def curves_plot(result: StudyRecords) -> tuple[Figure, str]:
    """The monitored metric per epoch for every trial; pruned ones end in a cross. The
    y-axis zooms on the highlighted trials' curves when far worse ones would flatten them."""
    from matplotlib.collections import LineCollection
    from matplotlib.ticker import MaxNLocator

    curves = {
        n: sorted(t.intermediate_values.items())
        for n, t in result.trials.items()
        if t.intermediate_values
    }
    if result.objectives:  # a multi-objective trial reports nothing: its history.csv
        monitor = result.monitor or ""
        curves = {n: [(r["epoch"], r.get(monitor)) for r in trial_history(result, n)]
                  for n in result.trials}  # fmt: skip
    curves = {n: c for n, c in curves.items() if any(finite_number(v) for _, v in c)}
    if not curves:
        raise PlotSkipped("no trial reported an epoch yet")
    state = {r["trial"]: r["state"] for r in result.records}
    top = [r["trial"] for r in result.records if r["state"] == "COMPLETE" and r["trial"] in curves]
    top = top[:TOP]
    fig, ax = figure(width=10.5, margins=(0.8, 1.75, 0.3, 0.6))
    for kind, color, alpha in (("COMPLETE", "#7f9fbf", 0.35), ("PRUNED", "#ff7f0e", 0.3)):
        lines = [
            [(e, v) for e, v in c if finite_number(v)]
            for n, c in curves.items()
            if (state.get(n) == "PRUNED") == (kind == "PRUNED") and n not in top
        ]
        if lines:
            label = "pruned" if kind == "PRUNED" else "other trials"
            alpha = max(0.06, min(alpha, 40 / len(lines)))  # thousands of lines stay readable
            ax.add_collection(LineCollection(lines, colors=color, alpha=alpha, linewidths=0.8,
                                             label=f"{label} ({len(lines)})"))  # fmt: skip
    ends = [
        c[-1] for n, c in curves.items() if state.get(n) == "PRUNED" and finite_number(c[-1][1])
    ]
    if ends:
        ax.scatter(*zip(*ends, strict=True), marker="x", s=16, color="#ff7f0e",
                   alpha=max(0.15, min(0.8, 60 / len(ends))), label="pruned here",
                   zorder=3)  # fmt: skip
    for color, number in zip(HIGHLIGHT, top, strict=False):
        points = [(e, v) for e, v in curves[number] if finite_number(v)]
        value = next(r["value"] for r in result.records if r["trial"] == number)
        ax.plot(*zip(*points, strict=True), color=color, linewidth=2, marker="o", markersize=3,
                label=f"#{number}: {value:.4g}", zorder=4)  # fmt: skip
    ax.autoscale_view()  # a LineCollection does not rescale the axes by itself
    maximize = result.direction == "maximize"
    points = {n: [v for _, v in c if finite_number(v)] for n, c in curves.items()}
    # Where the good trials are: every epoch of the highlighted ones (else each one's best).
    core = [v for n in top for v in points[n]] or [
        max(p) if maximize else min(p) for p in points.values()
    ]
    zoom = zoom_limits(core, [v for p in points.values() for v in p], maximize)
    if zoom is not None:
        ax.set_ylim(*zoom)
    if result.epochs:
        ax.axvline(result.epochs, color="#555", linestyle="--", linewidth=1)
        ax.set_xlim(0.5, result.epochs + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric_label(result))
    legend = ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    for handle in legend.legend_handles:  # faint lines, but a legend one can read
        handle.set_alpha(1.0)
    if len(top) > 1:
        caption = f"The {len(top)} best trials are highlighted"
    else:
        caption = "The best trial is highlighted" if top else "No complete trial to highlight"
    if result.epochs:
        caption += f"; the dashed line is the epoch budget ({plural(result.epochs, 'epoch')})"
    caption += "."
    if zoom is not None:
        lo, hi = zoom
        outside = [sum(not lo <= v <= hi for v in p) for p in points.values()]
        out = sum(n == len(p) for n, p in zip(outside, points.values(), strict=True))
        cut = any(0 < n < len(p) for n, p in zip(outside, points.values(), strict=True))
        notes = [f"{plural(out, 'trial')} {_be(out)} {_worse(maximize)} it all along"] * bool(out)
        notes += ["some curves leave it (their early epochs, mostly)"] * cut
        caption += " Axis zoomed on the highlighted trials' values" + (
            f": {'; '.join(notes)}." if notes else "."
        )
    return fig, caption


def trial_plot(result: StudyRecords, number: int) -> tuple[Figure, str]:
    """One trial's learning curves from its history: the monitor (and its training
    counterpart), the losses, and the learning rate when it changed; the best epoch marked."""
    from matplotlib.ticker import MaxNLocator

    rows = trial_history(result, number)
    if not rows:
        raise PlotSkipped(f"trial {number} recorded no epoch")
    record = next((r for r in result.records if r["trial"] == number), {})
    names = list(dict.fromkeys(k for row in rows for k in row if k != "epoch"))
    monitor = result.monitor if result.monitor in names else names[0]
    train = monitor.removeprefix("val_")
    panels = [[monitor, *([train] if train != monitor and train in names else [])]]
    losses = [n for n in ("val_loss", "loss") if n in names and n not in panels[0]]
    if losses:
        panels.append(losses)
    rates = {r.get("learning_rate") for r in rows if finite_number(r.get("learning_rate"))}
    if len(rates) > 1:
        panels.append(["learning_rate"])
    fig, axes = figure(width=4.0 * len(panels) + 0.8, height=3.4, ncols=len(panels),
                        margins=(0.7, 0.2, 0.5, 0.55))  # fmt: skip
    fig.subplots_adjust(wspace=0.3)
    axes = list(axes.flat) if hasattr(axes, "flat") else [axes]
    best = record.get("best_epoch")
    for ax, panel in zip(axes, panels, strict=True):
        for name in panel:
            points = [(r["epoch"], r[name]) for r in rows
                      if finite_number(r.get(name)) and r.get("epoch") is not None]  # fmt: skip
            if points:
                style = "-" if name.startswith("val_") or name == monitor else "--"
                ax.plot(*zip(*points, strict=True), style, marker="o", markersize=3, label=name)
        if panel == ["learning_rate"] and min(rates) > 0:
            ax.set_yscale("log")
        if best is not None:
            ax.axvline(best, color="#d62728", linestyle=":", linewidth=1.2, label="best epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.25)
        ax.legend(fontsize=8)
        ax.tick_params(labelsize=8)
    value = record.get("value")
    shown = f", {monitor} {value:.4g}" if finite_number(value) else ""
    fig.suptitle(f"trial {number} ({str(record.get('state', '?')).lower()}{shown})", fontsize=10)
    caption = f"Trial {number}'s epochs"
    caption += f"; the dotted line is its best epoch ({best})." if best is not None else "."
    return fig, caption


def trial_png(result: StudyRecords, number: int) -> bytes:
    """:func:`trial_plot` as PNG bytes (or :class:`PlotSkipped`)."""
    fig, _ = trial_plot(result, number)
    return png(fig)
