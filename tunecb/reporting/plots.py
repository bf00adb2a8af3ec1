"""The report's plots as matplotlib figures (Agg, no pyplot state, no TensorFlow).

Each plot function takes the study's records and returns a ``Figure``, or raises
:class:`PlotSkipped` saying plainly why that plot cannot be drawn (one trial, no finished
trial, no hyperparameter...). :func:`render_plots` draws them all as PNG bytes.

>>> plots = render_plots(study_records("results/digits"))  # doctest: +SKIP
>>> [(p.name, p.skipped) for p in plots][:2]  # doctest: +SKIP
[('history', None), ('learning_curves', None)]
"""

from __future__ import annotations

import io
import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunecb.reporting.overview import THIS_PROCESS, finite_number, plural
from tunecb.reporting.records import StudyRecords, trial_history

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger("tunecb")

TOP = 5  # trials highlighted in the learning curves
ZOOM_WHISKERS = 3.0  # zoom: the worse end, in interquartile ranges beyond the worse quartile
ZOOM_MARGIN = 0.05  # of the zoomed range, on each side
ZOOM_GAIN = 2.0  # zoom only when all the values span this many times the zoomed range
MAX_SLICES = 12  # hyperparameters shown against the value
FANOVA_MAX_TRIALS = 100  # above, PED-ANOVA: fANOVA took 0.6 s on 100 trials, 50 s on 2,000
DPI = 100
STATE_COLORS = {"COMPLETE": "#1f77b4", "PRUNED": "#ff7f0e", "FAIL": "#d62728", "RUNNING": "#2ca02c"}
HIGHLIGHT = ["#d62728", "#9467bd", "#2ca02c", "#8c564b", "#e377c2"]


class PlotSkipped(Exception):
    """A plot that cannot be drawn for this study; the message says why."""


@dataclass(frozen=True)
class Plot:
    """One rendered plot: PNG bytes, or the reason it was left out."""

    name: str
    title: str
    png: bytes | None = None
    skipped: str | None = None
    caption: str = ""


def render_plots(result: StudyRecords) -> list[Plot]:
    """Every plot of the report, in page order, as PNG bytes (or the reason it is left out)."""
    importance: dict[str, float] = {}

    def importance_figure() -> tuple[Figure, str]:
        fig, found, evaluator = importance_plot(result)
        importance.update(found)
        return fig, _importance_caption(evaluator)

    steps = (
        ("history", "Optimization history", lambda: history_plot(result)),
        ("learning_curves", "Learning curves", lambda: curves_plot(result)),
        ("importance", "Hyperparameter importance", importance_figure),
        ("slices", "Value against each hyperparameter",
         lambda: slices_plot(result, order=list(importance))),
        ("timeline", "Trials per worker over time", lambda: timeline_plot(result)),
    )  # fmt: skip
    plots = []
    for name, title, draw in steps:
        try:
            fig, caption = draw()
            plots.append(Plot(name, title, png=_png(fig), caption=caption))
        except PlotSkipped as exc:
            plots.append(Plot(name, title, skipped=str(exc)))
        except Exception as exc:  # one broken plot must not cost the whole report
            log.debug("plot %s failed", name, exc_info=True)
            plots.append(
                Plot(name, title, skipped=f"drawing it failed: {type(exc).__name__}: {exc}")
            )
    return plots


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
    fig, ax = _figure()
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
    ax.set_ylabel(_metric(result))
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
    curves = {n: c for n, c in curves.items() if any(finite_number(v) for _, v in c)}
    if not curves:
        raise PlotSkipped("no trial reported an epoch yet")
    state = {r["trial"]: r["state"] for r in result.records}
    top = [r["trial"] for r in result.records if r["state"] == "COMPLETE" and r["trial"] in curves]
    top = top[:TOP]
    fig, ax = _figure(width=10.5, margins=(0.8, 1.75, 0.3, 0.6))
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
    ax.set_ylabel(_metric(result))
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
    fig, axes = _figure(width=4.0 * len(panels) + 0.8, height=3.4, ncols=len(panels),
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
    return _png(fig)


def importance_plot(result: StudyRecords) -> tuple[Figure, dict[str, float], str]:
    """Hyperparameter importance from Optuna's evaluators, over COMPLETE trials."""
    import optuna
    from optuna.importance import (
        FanovaImportanceEvaluator,
        PedAnovaImportanceEvaluator,
        get_param_importances,
    )

    complete = [
        t
        for t in result.trials.values()
        if t.state.name == "COMPLETE" and t.value is not None and math.isfinite(t.value)
    ]
    if len(complete) < 2:
        raise PlotSkipped(f"needs 2 or more complete trials; the study has {len(complete)}")
    if not any(t.params for t in complete):
        raise PlotSkipped("the trials have no hyperparameters")
    study = optuna.create_study(direction=result.direction)
    study.add_trials(  # only what the evaluators read: add_trials deep-copies each trial
        optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=t.value)
        for t in complete
    )
    if len(complete) <= FANOVA_MAX_TRIALS:
        evaluator: Any = FanovaImportanceEvaluator(seed=0)
    else:
        evaluator = PedAnovaImportanceEvaluator()
    try:
        importance = get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError) as exc:
        raise PlotSkipped(f"Optuna could not compute it: {exc}") from None
    if not importance:
        raise PlotSkipped("no hyperparameter varies across the complete trials")
    names = list(importance)[::-1]
    left = 0.3 + 0.075 * max(len(n) for n in names)
    fig, ax = _figure(height=max(2.2, 0.45 * len(names) + 1.2), margins=(left, 0.3, 0.3, 0.6))
    ax.barh(names, [importance[n] for n in names], color="#1f77b4")
    for y, name in enumerate(names):
        ax.text(importance[name], y, f" {importance[name]:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, max(importance.values()) * 1.15 or 1)
    ax.set_xlabel("importance (share of the value's variance)")
    return fig, dict(importance), type(evaluator).__name__


def slices_plot(result: StudyRecords, order: list[str] | None = None) -> tuple[Figure, str]:
    """The value against each hyperparameter (a slice plot), coloured by trial number;
    integer hyperparameters get integer ticks."""
    from optuna.distributions import IntDistribution

    rows = [
        (t.number, t.params, t.distributions, t.value)
        for t in result.trials.values()
        if t.state.name == "COMPLETE" and t.value is not None and math.isfinite(t.value)
    ]
    if not rows:
        raise PlotSkipped("no complete trial has a value yet")
    names = sorted({p for _, params, _, _ in rows for p in params})
    if not names:
        raise PlotSkipped("the trials have no hyperparameters")
    order = [n for n in (order or []) if n in names]
    names = order + [n for n in names if n not in order]
    shown, left_out = names[:MAX_SLICES], names[MAX_SLICES:]
    cols = min(3, len(shown))
    nrows = math.ceil(len(shown) / cols)
    fig, axes = _figure(width=3.4 * cols + 1.0, height=2.6 * nrows, ncols=cols, nrows=nrows,
                        margins=(0.6, 0.2, 0.35, 0.45))  # fmt: skip
    fig.subplots_adjust(wspace=0.3, hspace=0.45)
    axes = list(axes.flat) if hasattr(axes, "flat") else [axes]
    last = max(n for n, *_ in rows) or 1
    for ax, name in zip(axes, shown, strict=False):
        points = [(p[name], v, n, d[name]) for n, p, d, v in rows if name in p]
        dist = points[0][3]
        if hasattr(dist, "choices"):
            choices = list(dist.choices)
            xs = [choices.index(x) if x in choices else -1 for x, *_ in points]
            ax.set_xticks(range(len(choices)), [str(c) for c in choices], fontsize=7)
        else:
            from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

            xs = [x for x, *_ in points]
            integer = isinstance(dist, IntDistribution)
            decades = math.log10(max(xs) / min(xs)) if min(xs) > 0 else 9.0
            if getattr(dist, "log", False):
                ax.set_xscale("log")  # plain numbers at 10^k (and 2, 5 x 10^k if few)
                subs = (1.0, 2.0, 5.0) if decades < 2 else (1.0,)
                ax.xaxis.set_major_locator(LogLocator(subs=subs))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.xaxis.set_minor_formatter(NullFormatter())
            if integer and not (getattr(dist, "log", False) and decades >= 1):
                ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))  # 1, 2, 3
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        scatter = ax.scatter(xs, [v for _, v, _, _ in points], c=[n for *_, n, _ in points],
                             cmap="viridis", vmin=0, vmax=last, s=12, alpha=0.8)  # fmt: skip
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes[len(shown) :]:
        ax.set_visible(False)
    fig.colorbar(scatter, ax=axes[: len(shown)], label="trial", shrink=0.8)
    caption = f"{_metric(result)} of complete trials; later trials are lighter."
    if left_out:
        caption += (
            f" {plural(len(left_out), 'more hyperparameter')} not shown: {', '.join(left_out)}."
        )
    return fig, caption


def timeline_plot(result: StudyRecords) -> tuple[Figure, str]:
    """Trials as bars in time, one row per worker process (processes that ran one after
    another share a row), coloured by state."""
    spans = [
        (t.user_attrs.get("worker") or THIS_PROCESS, t.datetime_start, t.datetime_complete,
         t.state.name)
        for t in result.trials.values()
        if t.datetime_start is not None
    ]  # fmt: skip
    if not spans:
        raise PlotSkipped("no trial has started yet")
    import datetime as dt

    origin = min(s for _, s, _, _ in spans)
    now = max((e or s) for _, s, e, _ in spans)
    if any(e is None for _, _, e, _ in spans):
        now = max(now, dt.datetime.now())
    by_worker: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for worker, start, end, state in spans:
        a = (start - origin).total_seconds()
        b = ((end or now) - origin).total_seconds()
        by_worker[worker].append((a, max(b - a, 1e-3), state))
    lanes = _lanes(by_worker)
    wall = max(a + w for bars in by_worker.values() for a, w, _ in bars) or 1.0
    scale, unit = (60.0, "min") if wall > 600 else (1.0, "s")
    longest = max(len(_short(w)) for workers in lanes for w in workers) + 6
    fig, ax = _figure(height=max(2.0, 0.42 * len(lanes) + 1.4),
                      margins=(0.3 + 0.065 * longest, 0.25, 0.3, 0.6))  # fmt: skip
    labels = []
    busy_total = 0.0
    for row, workers in enumerate(lanes):
        busy = 0.0
        for worker in workers:
            for state in STATE_COLORS:
                bars = [(a / scale, w / scale) for a, w, s in by_worker[worker] if s == state]
                if bars:
                    ax.broken_barh(bars, (row - 0.38, 0.76), color=STATE_COLORS[state],
                                   edgecolor="white", linewidth=0.3)  # fmt: skip
            busy += sum(w for _, w, _ in by_worker[worker])
        busy_total += busy
        name = workers[0] if len(workers) == 1 else f"{len(workers)} processes"
        labels.append(f"{_short(name)}  {min(busy / wall, 1.0):.0%}")
    ax.set_yticks(range(len(lanes)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"time since the first trial started ({unit})")
    handles = [_patch(c, s.lower()) for s, c in STATE_COLORS.items()
               if any(st == s for bars in by_worker.values() for *_, st in bars)]  # fmt: skip
    ax.legend(handles=handles, loc="upper right", fontsize=8)
    share = busy_total / (wall * len(lanes))
    workers = plural(len(by_worker), "worker process")
    if len(lanes) == 1:
        rows = "" if len(by_worker) == 1 else ", one after another in 1 row"
        caption = f"{workers}{rows}; the percentage is the share of the wall time spent in trials."
    else:
        rows = (
            ", one row each" if len(lanes) == len(by_worker)
            else f" in {plural(len(lanes), 'row')} (a process that replaced another shares its row)"
        )  # fmt: skip
        caption = (
            f"{workers}{rows}; the percentage is the share of the wall time a row spent in "
            f"trials ({share:.0%} on average)."
        )
    return fig, caption


def _lanes(by_worker: dict[str, list[tuple[float, float, str]]]) -> list[list[str]]:
    """Pack worker processes into rows: a process replaced by another (recycling) shares
    its row when their lifetimes do not overlap (greedy interval partitioning)."""
    life = {
        w: (min(a for a, _, _ in bars), max(a + d for a, d, _ in bars))
        for w, bars in by_worker.items()
    }
    lanes: list[list[str]] = []
    ends: list[float] = []
    for worker in sorted(life, key=lambda w: life[w]):
        start, end = life[worker]
        free = [i for i, e in enumerate(ends) if e <= start]
        if free:
            i = min(free, key=lambda i: start - ends[i])
            lanes[i].append(worker)
            ends[i] = end
        else:
            lanes.append([worker])
            ends.append(end)
    return lanes


def _importance_caption(evaluator: str) -> str:
    how = {
        "FanovaImportanceEvaluator": "fANOVA (Optuna's default evaluator)",
        "PedAnovaImportanceEvaluator": (
            f"PED-ANOVA (Optuna's fast evaluator; fANOVA is used up to "
            f"{FANOVA_MAX_TRIALS} complete trials)"
        ),
    }.get(evaluator, evaluator)
    return f"Computed by {how} over the complete trials, for the hyperparameters all of them have."


def _figure(
    width: float = 9.0,
    height: float = 4.2,
    nrows: int = 1,
    ncols: int = 1,
    margins: tuple[float, float, float, float] = (0.8, 0.25, 0.3, 0.6),
):
    """A figure with fixed ``margins`` in inches (left, right, top, bottom): matplotlib's
    constrained layout would cost ~40 % of the drawing time on a big study."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    left, right, top, bottom = margins
    fig.subplots_adjust(
        left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height
    )
    axes = fig.subplots(nrows, ncols, squeeze=nrows * ncols == 1)
    if nrows * ncols == 1:
        axes.grid(True, alpha=0.25)
    return fig, axes


def _png(fig: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


def _patch(color: str, label: str) -> Any:
    from matplotlib.patches import Patch

    return Patch(color=color, label=label)


def _metric(result: StudyRecords) -> str:
    return f"{result.monitor or 'value'} ({result.direction})"


def _short(worker: str, width: int = 28) -> str:
    return worker if len(worker) <= width else "…" + worker[-(width - 1) :]
