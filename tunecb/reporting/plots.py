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

from tunecb.reporting.overview import THIS_PROCESS, finite_number
from tunecb.reporting.records import StudyRecords

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger("tunecb")

TOP = 5  # trials highlighted in the learning curves
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
    """Each trial's value by trial number, and the best so far."""
    from matplotlib.ticker import MaxNLocator

    records = sorted(result.records, key=lambda r: r["trial"])
    valued = [
        r for r in records if finite_number(r["value"]) and r["state"] in ("COMPLETE", "PRUNED")
    ]
    if not valued:
        raise PlotSkipped("no trial has a value yet (all failed, or none finished)")
    fig, ax = _figure()
    for state, marker, size in (("PRUNED", "x", 14), ("COMPLETE", "o", 18)):
        xs = [r["trial"] for r in valued if r["state"] == state]
        ys = [r["value"] for r in valued if r["state"] == state]
        if xs:
            ax.scatter(xs, ys, s=size, marker=marker, color=STATE_COLORS[state], alpha=0.7,
                       label=f"{state.lower()} ({len(xs)})", linewidths=1)  # fmt: skip
    maximize = result.direction == "maximize"
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
    if failed:
        caption += f" {failed} failed trials have no value and are not drawn."
    return fig, caption


def curves_plot(result: StudyRecords) -> tuple[Figure, str]:
    """The monitored metric per epoch for every trial; pruned ones end in a cross."""
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
    if result.epochs:
        ax.axvline(result.epochs, color="#555", linestyle="--", linewidth=1)
        ax.set_xlim(0.5, result.epochs + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(_metric(result))
    legend = ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    for handle in legend.legend_handles:  # faint lines, but a legend one can read
        handle.set_alpha(1.0)
    budget = f"; the dashed line is the epoch budget ({result.epochs})" if result.epochs else ""
    return fig, f"Top {len(top)} trials highlighted{budget}."


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
    """The value against each hyperparameter (a slice plot), coloured by trial number."""
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
            xs = [x for x, *_ in points]
            if getattr(dist, "log", False):
                from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

                ax.set_xscale("log")  # plain numbers at 10^k (and 2, 5 x 10^k if few)
                decades = math.log10(max(xs) / min(xs)) if min(xs) > 0 else 9.0
                subs = (1.0, 2.0, 5.0) if decades < 2 else (1.0,)
                ax.xaxis.set_major_locator(LogLocator(subs=subs))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.xaxis.set_minor_formatter(NullFormatter())
        scatter = ax.scatter(xs, [v for _, v, _, _ in points], c=[n for *_, n, _ in points],
                             cmap="viridis", vmin=0, vmax=last, s=12, alpha=0.8)  # fmt: skip
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes[len(shown) :]:
        ax.set_visible(False)
    fig.colorbar(scatter, ax=axes[: len(shown)], label="trial", shrink=0.8)
    caption = f"{_metric(result)} of complete trials; later trials are lighter."
    if left_out:
        caption += f" {len(left_out)} more hyperparameters not shown: {', '.join(left_out)}."
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
    caption = (
        f"{len(by_worker)} worker processes in {len(lanes)} rows; the percentage is the share "
        f"of the wall time a row spent in trials ({share:.0%} on average)."
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
