"""What every plot of the report shares: a figure with fixed margins, PNG bytes, the
colours of trial states, and :class:`PlotSkipped` for a plot that cannot be drawn.

>>> fig, ax = figure()
>>> png(fig)[:8]
b'\\x89PNG\\r\\n\\x1a\\n'
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from tunecb.reporting.data.records import StudyRecords

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
STATE_COLORS = {"COMPLETE": "#1f77b4", "PRUNED": "#ff7f0e", "FAIL": "#d62728", "RUNNING": "#2ca02c"}
HIGHLIGHT = ["#d62728", "#9467bd", "#2ca02c", "#8c564b", "#e377c2"]


class PlotSkipped(Exception):
    """A plot that cannot be drawn for this study; the message says why."""


def figure(
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


def png(fig: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


def patch(color: str, label: str) -> Any:
    from matplotlib.patches import Patch

    return Patch(color=color, label=label)


def metric_label(result: StudyRecords) -> str:
    return f"{result.monitor or 'value'} ({result.direction})"


def short_worker(worker: str, width: int = 28) -> str:
    return worker if len(worker) <= width else "…" + worker[-(width - 1) :]
