"""The anytime-curve plot of ``benchmarks/search.py``: per task, the median over seeds of the
best value reached by each moment (COMPLETE trials; seconds since the system's launch), one
line per system ending when its last seed ended, and the hand loop's median wall time as a
dotted mark.

    python benchmarks/search_plot.py benchmarks/out/search.json docs/search_anytime.png

(``search.py`` draws it itself at the end of a run.) matplotlib with Agg: no display.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_summary import median_curve
from search_tasks import TASKS

POINTS = 400  # time grid per task
COLUMNS = 4  # tasks per row of the figure


def plot(result: dict[str, Any], path: Path) -> Path:
    """Draw the result's anytime curves into ``path`` (PNG); returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["settings"]
    tasks = [t for t in s["tasks"] if t in result["summary"]]
    cols = min(len(tasks), COLUMNS) or 1
    rows = -(-len(tasks) // cols)
    size = (max(6.4, 5.2 * cols), 4.6 * rows)
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False)
    for ax in axes.flat[len(tasks) :]:
        ax.set_visible(False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        runs = [r for r in result["runs"] if r["task"] == task]
        end = max((r["wall_s"] for r in runs), default=1.0)
        times = [end * i / (POINTS - 1) for i in range(POINTS)]
        maximize = TASKS[task].maximize
        for system in s["systems"]:
            curves = [r["curve"] for r in runs if r["system"] == system]
            if not curves:
                continue
            # each line ends (a dot) when the system's last seed ended: at its median final best
            wall = max(r["wall_s"] for r in runs if r["system"] == system)
            mine = [t for t in times if t <= wall] + [wall]
            med = [float("nan") if v is None else v for v in median_curve(curves, mine, maximize)]
            style = "--" if system.startswith("tunecb[") else "-"
            width = 2.0 if system.startswith("tunecb") else 1.3
            (line,) = ax.step(mine, med, where="post", linestyle=style, linewidth=width,
                              label=system)  # fmt: skip
            ax.plot([wall], [med[-1]], "o", color=line.get_color(), markersize=4)
        loop_wall = result["summary"][task].get("loop_median_wall_s")
        if loop_wall:
            ax.axvline(loop_wall, color="grey", linestyle=":", linewidth=1)
        budget = s["budgets"][task]
        seeds = len({r["seed"] for r in result["runs"] if r["task"] == task}) or len(s["seeds"])
        ax.set_title(f"{task}: {budget['trials']} trials x {budget['epochs']} epochs, "
                     f"{seeds} seeds", fontsize=10)  # fmt: skip
        ax.set_xlabel("seconds since launch")
        ax.set_ylabel(f"median best {TASKS[task].monitor} ({'max' if maximize else 'min'})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    note = "\n--quick: a smoke run, not a measurement" if s.get("quick") else ""
    fig.suptitle(f"benchmarks/search.py {result['date']}: median best so far over seeds,\n"
                 "ending (dot) when its last seed ended; dotted line: the loop's median wall "
                 f"time{note}", fontsize=9)  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python benchmarks/search_plot.py SEARCH_JSON OUT_PNG")
    data = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    print(plot(data, Path(sys.argv[2])))
