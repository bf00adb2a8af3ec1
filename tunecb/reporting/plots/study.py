"""The report's plots as matplotlib figures (Agg, no pyplot state, no TensorFlow).

Each plot function takes the study's records and returns a ``Figure``, or raises
:class:`PlotSkipped` saying plainly why that plot cannot be drawn (one trial, no finished
trial, no hyperparameter...). :func:`render_plots` draws them all as PNG bytes.

>>> plots = render_plots(study_records("results/digits"))  # doctest: +SKIP
>>> [(p.name, p.skipped) for p in plots][:2]  # doctest: +SKIP
[('history', None), ('learning_curves', None)]
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunecb.oracle.attrs import KILLED, STOP_REASON, TIME_LIMIT, WORKER
from tunecb.oracle.front import monitor_value
from tunecb.reporting.data.overview import THIS_PROCESS
from tunecb.reporting.data.records import StudyRecords
from tunecb.reporting.plots.curves import curves_plot, history_plot
from tunecb.reporting.plots.front import front_steps
from tunecb.reporting.plots.shared import (
    STATE_COLORS,
    PlotSkipped,
    figure,
    metric_label,
    patch,
    png,
    short_worker,
)
from tunecb.wording import plural

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger("tunecb")

MAX_SLICES = 12  # hyperparameters shown against the value
FANOVA_MAX_TRIALS = 100  # above, PED-ANOVA: fANOVA took 0.6 s on 100 trials, 50 s on 2,000


@dataclass(frozen=True)
class Plot:
    """One rendered plot: PNG bytes, or the reason it was left out."""

    name: str
    title: str
    png: bytes | None = None
    skipped: str | None = None
    caption: str = ""


# A tracker's copy of the report (MLflow's parent run, W&B's search run) as `tunecb sync`
# draws it (a search's own end: SEARCH_LEAVES_OUT): without the importance plot, whose
# evaluators' import (Optuna's optuna.importance: scikit-learn, SciPy) is 1.6 s of the 2.9 s
# of CPU the page costs.
TRACKER_LEAVES_OUT = {
    "importance": "not drawn for the tracker's copy of the report (importing Optuna's "
    "importance evaluators costs 1.6 s of CPU); tunecb report draws it",
}

# The copy a search writes for its tracker at its end: no plot (importing matplotlib and
# drawing the PNGs was 0.7 s of CPU, 3 % of a 25 s search); the tracker draws each run's
# curves itself, and `tunecb sync` (or `tunecb report --format html`) draws them.
SEARCH_LEAVES_OUT = dict.fromkeys(
    ("front", "hypervolume", "history", "learning_curves", "importance", "slices", "timeline"),
    "not drawn at the end of the search (the tracker draws each run's curves); "
    "tunecb sync puts the plots here, tunecb report --format html draws them",
)


def render_plots(result: StudyRecords, leave_out: dict[str, str] | None = None) -> list[Plot]:
    """Every plot of the report, in page order, as PNG bytes (or the reason it is left out;
    ``leave_out``: plots not drawn, by name, and the reason the page gives)."""
    importance: dict[str, float] = {}

    def importance_figure() -> tuple[Figure, str]:
        fig, found, evaluator = importance_plot(result)
        importance.update(found)
        return fig, _importance_caption(evaluator)

    steps = (
        *front_steps(result),  # a multi-objective study's front and hypervolume first
        ("history", "Optimization history", lambda: history_plot(result)),
        ("learning_curves", "Learning curves", lambda: curves_plot(result)),
        ("importance", "Hyperparameter importance", importance_figure),
        ("slices", "Value against each hyperparameter",
         lambda: slices_plot(result, order=list(importance))),
        ("timeline", "Trials per worker over time", lambda: timeline_plot(result)),
    )  # fmt: skip
    plots = []
    for name, title, draw in steps:
        if leave_out and name in leave_out:
            plots.append(Plot(name, title, skipped=leave_out[name]))
            continue
        try:
            fig, caption = draw()
            plots.append(Plot(name, title, png=png(fig), caption=caption))
        except PlotSkipped as exc:
            plots.append(Plot(name, title, skipped=str(exc)))
        except Exception as exc:  # one broken plot must not cost the whole report
            log.debug("plot %s failed", name, exc_info=True)
            plots.append(
                Plot(name, title, skipped=f"drawing it failed: {type(exc).__name__}: {exc}")
            )
    return plots


def importance_plot(result: StudyRecords) -> tuple[Figure, dict[str, float], str]:
    """Hyperparameter importance from Optuna's evaluators, over COMPLETE trials."""
    import optuna
    from optuna.importance import (
        FanovaImportanceEvaluator,
        PedAnovaImportanceEvaluator,
        get_param_importances,
    )

    values = {t.number: monitor_value(t) for t in result.trials.values()}  # multi-objective too
    complete = [
        t
        for t in result.trials.values()
        if t.state.name == "COMPLETE"
        and values[t.number] is not None
        and math.isfinite(values[t.number])
    ]
    if len(complete) < 2:
        raise PlotSkipped(f"needs 2 or more complete trials; the study has {len(complete)}")
    if not any(t.params for t in complete):
        raise PlotSkipped("the trials have no hyperparameters")
    study = optuna.create_study(direction=result.direction)
    study.add_trials(  # only what the evaluators read: add_trials deep-copies each trial
        optuna.trial.create_trial(
            params=t.params, distributions=t.distributions, value=values[t.number]
        )
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
    fig, ax = figure(height=max(2.2, 0.45 * len(names) + 1.2), margins=(left, 0.3, 0.3, 0.6))
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
        (t.number, t.params, t.distributions, monitor_value(t))
        for t in result.trials.values()
        if t.state.name == "COMPLETE"
    ]
    rows = [row for row in rows if row[3] is not None and math.isfinite(row[3])]
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
    fig, axes = figure(width=3.4 * cols + 1.0, height=2.6 * nrows, ncols=cols, nrows=nrows,
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
    caption = f"{metric_label(result)} of complete trials; later trials are lighter."
    if left_out:
        caption += (
            f" {plural(len(left_out), 'more hyperparameter')} not shown: {', '.join(left_out)}."
        )
    return fig, caption


def timeline_plot(result: StudyRecords) -> tuple[Figure, str]:
    """Trials as bars in time, one row per worker process (processes that ran one after
    another share a row), coloured by state."""
    spans = [
        (t.user_attrs.get(WORKER) or THIS_PROCESS, t.datetime_start, t.datetime_complete,
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
    marked = _limit_marks(result, origin, now)  # stopped by a limit, or killed too often
    lanes = _lanes(by_worker)
    wall = max(a + w for bars in by_worker.values() for a, w, _ in bars) or 1.0
    scale, unit = (60.0, "min") if wall > 600 else (1.0, "s")
    longest = max(len(short_worker(w)) for workers in lanes for w in workers) + 6
    fig, ax = figure(height=max(2.0, 0.42 * len(lanes) + 1.4),
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
            if marked.get(worker):
                ax.broken_barh([(a / scale, w / scale) for a, w in marked[worker]],
                               (row - 0.38, 0.76), facecolor="none", edgecolor="black",
                               hatch="////", linewidth=0.5)  # fmt: skip
            busy += sum(w for _, w, _ in by_worker[worker])
        busy_total += busy
        name = workers[0] if len(workers) == 1 else f"{len(workers)} processes"
        labels.append(f"{short_worker(name)}  {min(busy / wall, 1.0):.0%}")
    ax.set_yticks(range(len(lanes)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"time since the first trial started ({unit})")
    handles = [patch(c, s.lower()) for s, c in STATE_COLORS.items()
               if any(st == s for bars in by_worker.values() for *_, st in bars)]  # fmt: skip
    if any(marked.values()):
        from matplotlib.patches import Patch

        handles.append(Patch(facecolor="white", edgecolor="black", hatch="////",
                             label="time limit / killed"))  # fmt: skip
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


def _limit_marks(
    result: StudyRecords, origin: Any, now: Any
) -> dict[str, list[tuple[float, float]]]:
    """Per worker, the spans of trials stopped by ``--trial-timeout``/``--epoch-timeout``
    or failed for good after killing their process too often: the timeline hatches them."""
    marks: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for t in result.trials.values():
        if t.datetime_start is None or t.user_attrs.get(STOP_REASON) not in (TIME_LIMIT, KILLED):
            continue
        a = (t.datetime_start - origin).total_seconds()
        b = ((t.datetime_complete or now) - origin).total_seconds()
        marks[t.user_attrs.get(WORKER) or THIS_PROCESS].append((a, max(b - a, 1e-3)))
    return marks


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
