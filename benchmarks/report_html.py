"""How long `tunecb report --format html` takes on a big study, and its peak memory.

A finished 2,000-trial study (4 workers on 2 hosts, 10 epochs each, made with Optuna's API by
``tests/synthetic.py``, no training) is reported R times as fresh processes of the console
script, side by side with the plain table. Then one in-process run times each step (records,
each plot, the page). Goal: the HTML report in under 5 s.

    python benchmarks/report_html.py [--trials 2000] [--repeats 5]

Prints a table and writes ``benchmarks/out/report_html.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, cmdline, machine, spread, tunecb_command, write_result
from synthetic import make_big_study

GOAL_S = 5.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/out/report_html.json")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        study = Path(tmp) / "big"
        make_big_study(study, args.trials, workers=4)
        page = Path(tmp) / "report.html"
        commands = {
            "html": [*tunecb_command(), "report", str(study), "--format", "html",
                     "--output", str(page)],
            "table": [*tunecb_command(), "report", str(study), "--output", str(Path(tmp) / "t")],
        }  # fmt: skip
        runs: dict[str, list[tuple[float, float]]] = {k: [] for k in commands}
        for _ in range(args.repeats):  # alternating, so both sides see the same machine
            for name, cmd in commands.items():
                runs[name].append(timed(cmd))
        steps = in_process(study)
        page_bytes = page.stat().st_size
    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "trials": args.trials,
        "repeats": args.repeats,
        "commands": {k: cmdline(v) for k, v in commands.items()},
        "median_s": {k: round(statistics.median(s for s, _ in v), 3) for k, v in runs.items()},
        "spread": {k: round(spread([s for s, _ in v]), 3) for k, v in runs.items()},
        "peak_rss_mib": {k: round(max(m for _, m in v), 1) for k, v in runs.items()},
        "runs_s": {k: [round(s, 3) for s, _ in v] for k, v in runs.items()},
        "in_process_steps_s": steps,
        "page_mib": round(page_bytes / 2**20, 2),
        "goal_s": GOAL_S,
        "machine": machine(load_before, os.getloadavg()),
        "total_s": round(time.perf_counter() - started, 1),
    }
    write_result(result, args.json, table(result))
    return 0


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident MiB of one run of ``cmd`` (``wait4``: this child only)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{cmdline(cmd)} failed: {proc.stderr.read().decode()[-800:]}")
    proc.stderr.close()
    return elapsed, usage.ru_maxrss / 1024


def in_process(study: Path) -> dict[str, float]:
    """Seconds of each step in one process (imports included in the first step using them)."""
    steps: dict[str, float] = {}
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        steps[name] = round(now - mark, 3)
        mark = now

    from tunecb.reporting.data.records import study_records

    result = study_records(study)
    lap("records (optuna import, journal read)")
    import matplotlib.backends.backend_agg  # noqa: F401

    from tunecb.reporting.plots import study as plots

    lap("matplotlib import")
    drawn = {}
    for name, draw in (
        ("history", plots.history_plot), ("learning_curves", plots.curves_plot),
        ("importance", lambda r: (*plots.importance_plot(r)[:1], "")),
        ("slices", plots.slices_plot), ("timeline", plots.timeline_plot),
    ):  # fmt: skip
        fig, _ = draw(result)
        drawn[name] = plots.Plot(name, name, png=plots.png(fig))
        lap(f"plot {name}")
    from tunecb.reporting.html.page import html_report

    html_report(result, list(drawn.values()))
    lap("page (summary, table, base64)")
    return steps


def table(result: dict) -> str:
    med, rss = result["median_s"], result["peak_rss_mib"]
    met = "met" if med["html"] < GOAL_S else "NOT met"
    lines = [
        f"tunecb report on a {result['trials']:,}-trial study, {result['repeats']} alternating "
        "repeats, fresh processes",
        "",
        "| format | median s | spread | peak RSS MiB |",
        "|---|---|---|---|",
        *(f"| {k} | {med[k]:.2f} | {result['spread'][k]:.0%} | {rss[k]:.0f} |" for k in med),
        "",
        f"html page: {result['page_mib']} MiB; goal < {GOAL_S:.0f} s: {met} "
        f"(html/table = {med['html'] / med['table']:.1f}x)",
        "",
        "in one process:",
        *(f"  {k:<40} {v:6.2f} s" for k, v in result["in_process_steps_s"].items()),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
