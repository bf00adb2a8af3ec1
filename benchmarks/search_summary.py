"""The figures of ``benchmarks/search.py``: anytime curves, the summary per task and system,
the goal of issue 19, and the markdown table. Plain Python: no TensorFlow, no Optuna.

An **anytime curve** is ``[[t, best so far], ...]``: seconds since the system's process was
launched, and the best value of the COMPLETE trials finished by then (one point per
improvement).
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from common import spread
from search_tasks import TASKS

OTHERS = ("loop", "ray", "kerastuner")  # the systems tunecb is compared against
GOAL_RATIO = 0.5  # issue 19: reach the loop's median final best in <= 0.5 of its wall time


def anytime_curve(trials: list[dict], maximize: bool) -> list[list[float]]:
    """``[t, best so far]`` at every COMPLETE trial that improved the best (finite values).

    >>> anytime_curve([{"state": "COMPLETE", "value": 0.5, "t": 3.0},
    ...                {"state": "PRUNED", "value": 0.9, "t": 4.0},
    ...                {"state": "COMPLETE", "value": 0.4, "t": 5.0},
    ...                {"state": "COMPLETE", "value": 0.7, "t": 6.0}], maximize=True)
    [[3.0, 0.5], [6.0, 0.7]]
    """
    curve: list[list[float]] = []
    for trial in trials:
        value = trial["value"]
        if trial["state"] != "COMPLETE" or value is None or not math.isfinite(value):
            continue
        if not curve or (value > curve[-1][1] if maximize else value < curve[-1][1]):
            curve.append([trial["t"], value])
    return curve


def time_to_reach(curve: list[list[float]], target: float, maximize: bool) -> float:
    """Seconds until the curve is at least as good as ``target``; ``inf`` if never.

    >>> time_to_reach([[3.0, 0.5], [6.0, 0.7]], 0.6, True), time_to_reach([[3.0, 0.5]], 0.6, True)
    (6.0, inf)
    """
    for t, best in curve:
        if (best >= target) if maximize else (best <= target):
            return t
    return math.inf


def best_at(curve: list[list[float]], t: float) -> float | None:
    """The curve's best so far at time ``t`` (``None`` before its first point).

    >>> best_at([[3.0, 0.5], [6.0, 0.7]], 5.0), best_at([[3.0, 0.5]], 1.0)
    (0.5, None)
    """
    value = None
    for at, best in curve:
        if at > t:
            break
        value = best
    return value


def median_curve(
    curves: list[list[list[float]]], times: list[float], maximize: bool
) -> list[float | None]:
    """The median over runs of the best so far at each time; a run without a COMPLETE trial
    yet counts as the worst value, so the median exists once more than half have one.

    >>> median_curve([[[1, 0.5]], [[2, 0.7]], [[3, 0.6]]], [0, 1, 2, 3], True)
    [None, None, 0.5, 0.6]
    """
    worst = -math.inf if maximize else math.inf
    out: list[float | None] = []
    for t in times:
        values = [best_at(c, t) for c in curves]
        med = statistics.median(worst if v is None else v for v in values) if values else worst
        out.append(None if math.isinf(med) else med)
    return out


def summarize(runs: list[dict], tasks, systems: list[str]) -> dict[str, dict]:
    """Per task and system: bests, wall times, epochs, and the time to the hand loop's
    median best (its ratio to the loop's median wall time); per task, the goal's verdict."""
    summary: dict[str, dict] = {}
    for task in tasks:
        maximize = TASKS[task].maximize
        loop = [r for r in runs if r["task"] == task and r["system"] == "loop"]
        loop_bests = [r["best"] for r in loop if r["best"] is not None]
        target = statistics.median(loop_bests) if loop_bests else None
        loop_wall = statistics.median(r["wall_s"] for r in loop) if loop else None
        summary[task] = {"loop_median_best": target, "loop_median_wall_s": loop_wall}
        for system in systems:
            mine = [r for r in runs if r["task"] == task and r["system"] == system]
            if mine:
                summary[task][system] = _row(mine, target, loop_wall, maximize)
        summary[task]["goal"] = goal(summary[task], systems, maximize)
        summary[task]["per_seed"] = {
            f"{mine} vs {other}": per_seed(
                [r for r in runs if r["task"] == task and r["system"] == mine],
                [r for r in runs if r["task"] == task and r["system"] == other], maximize)
            for mine in systems if mine.startswith("tunecb")
            for other in systems if other in OTHERS
        }  # fmt: skip
    return summary


def per_seed(mine: list[dict], theirs: list[dict], maximize: bool) -> dict[str, Any] | None:
    """``mine`` against ``theirs`` seed by seed (runs of one task; paired seeds draw the same
    start-up): how many seeds better, level and worse, the median of the differences
    (positive: ``mine`` better) and the two-sided sign test's p-value (level seeds left out);
    ``None`` without a common seed with a best on both sides.

    >>> a = [{"seed": s, "best": b} for s, b in enumerate([0.9, 0.8, 0.7, 0.6])]
    >>> b = [{"seed": s, "best": b} for s, b in enumerate([0.8, 0.8, 0.6, 0.5])]
    >>> per_seed(a, b, maximize=True)
    {'seeds': 4, 'better': 3, 'level': 1, 'worse': 0, 'median_difference': 0.1, 'sign_p': 0.25}
    """
    bests = {r["seed"]: r["best"] for r in theirs if r["best"] is not None}
    diffs = [
        (r["best"] - bests[r["seed"]]) * (1 if maximize else -1)
        for r in mine if r["best"] is not None and r["seed"] in bests
    ]  # fmt: skip
    if not diffs:
        return None
    better, worse = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    return {
        "seeds": len(diffs), "better": better, "level": len(diffs) - better - worse,
        "worse": worse, "median_difference": round(statistics.median(diffs), 6),
        "sign_p": round(sign_test(better, worse), 4),
    }  # fmt: skip


def sign_test(better: int, worse: int) -> float:
    """The two-sided exact sign test's p-value of ``better`` against ``worse`` seeds.

    >>> sign_test(9, 11), round(sign_test(25, 15), 3), sign_test(0, 0)
    (0.8238029479980469, 0.154, 1.0)
    """
    n = better + worse
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(better, worse) + 1)) / 2**n
    return min(1.0, 2 * tail)


def _row(mine: list[dict], target: float | None, loop_wall: float | None, maximize: bool):
    bests = [r["best"] for r in mine if r["best"] is not None]
    walls = [r["wall_s"] for r in mine]
    states: dict[str, int] = {}
    for r in mine:
        for state, n in r["states"].items():
            states[state] = states.get(state, 0) + n
    reach = (
        [time_to_reach(r["curve"], target, maximize) for r in mine] if target is not None else []
    )
    reach_med = statistics.median(reach) if reach else None
    startups = [r["ray_startup"]["ready_s"] for r in mine if r.get("ray_startup")]
    cpu = [r["cpu_s"] for r in mine if r.get("cpu_s") is not None]
    return {
        "runs": len(mine),
        "failed_runs": sum(1 for r in mine if r["error"]),
        "trials_by_state": states,
        "epochs_trained_median": statistics.median(r["epochs_trained"] for r in mine),
        "best_median": statistics.median(bests) if bests else None,
        "best_min": min(bests) if bests else None,
        "best_max": max(bests) if bests else None,
        "wall_median_s": round(statistics.median(walls), 2),
        "wall_spread": round(spread(walls), 4),
        "walls_s": walls,
        "cpu_median_s": round(statistics.median(cpu), 2) if cpu else None,
        "ray_startup_median_s": round(statistics.median(startups), 2) if startups else None,
        "time_to_loop_best_s": [finite(x) for x in reach],
        "time_to_loop_best_median_s": finite(reach_med),
        "ratio_to_loop_wall": (
            finite(reach_med / loop_wall) if reach_med is not None and loop_wall else None
        ),
    }


def goal(per: dict[str, Any], systems: list[str], maximize: bool) -> dict[str, Any]:
    """Issue 19's goal for each tunecb system on one task: its median final best at least
    the best other system's, and the loop's median best reached in <= 0.5 of its time.

    >>> per = {"loop": {"best_median": 0.90, "ratio_to_loop_wall": 0.7},
    ...        "ray": {"best_median": 0.92}, "tunecb": {"best_median": 0.93,
    ...        "ratio_to_loop_wall": 0.4}}
    >>> goal(per, ["tunecb", "loop", "ray"], True)["tunecb"]
    {'best_vs_best_other': 0.01, 'best_ok': True, 'ratio': 0.4, 'ratio_ok': True, 'met': True}
    """
    others = [per[s]["best_median"] for s in systems
              if s in OTHERS and s in per and per[s]["best_median"] is not None]  # fmt: skip
    best_other = (max if maximize else min)(others) if others else None
    out: dict[str, Any] = {"best_other_median": best_other}
    for system in systems:
        if not system.startswith("tunecb") or system not in per:
            continue
        mine, ratio = per[system]["best_median"], per[system].get("ratio_to_loop_wall")
        margin = None
        if mine is not None and best_other is not None:
            margin = round((mine - best_other) if maximize else (best_other - mine), 6)
        ratio_ok = isinstance(ratio, int | float) and ratio <= GOAL_RATIO
        out[system] = {
            "best_vs_best_other": margin, "best_ok": margin is not None and margin >= 0,
            "ratio": ratio, "ratio_ok": ratio_ok,
            "met": margin is not None and margin >= 0 and ratio_ok,
        }  # fmt: skip
    return out


def search_table(result: dict[str, Any]) -> str:
    """The markdown table of a search run, with its budget, goal and machine lines."""
    s, summary = result["settings"], result["summary"]
    lines = [
        f"{len(s['seeds'])} seed(s) {s['seeds']}, patience {s['patience']}, batch "
        f"{s['batch_size']}; budget per task (trials x epochs): "
        + ", ".join(f"{t} {b['trials']} x {b['epochs']}" for t, b in s["budgets"].items())
        + "; best = best value of COMPLETE trials",
        "",
        "| task (monitor) | system | trials C/P/F, all seeds | epochs trained (median) | "
        "best: median [min-max] | wall s: median (spread) | to loop's median best: s | "
        "/ loop's median wall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, per in summary.items():
        t = TASKS[task]
        label = f"{task} ({t.monitor}, {'max' if t.maximize else 'min'})"
        for system in s["systems"]:
            if system in per:
                lines.append(_table_row(label, system, per[system]))
    lines.append("")
    for task, per in summary.items():
        verdicts = {k: v for k, v in per["goal"].items() if k != "best_other_median"}
        lines.append(
            f"goal on {task} (median best >= best other's {_num(per['goal']['best_other_median'])}"
            f", loop's median best in <= {GOAL_RATIO} of its wall time): "
            + "; ".join(
                f"{name} {'MET' if v['met'] else 'missed'} (best {_signed(v['best_vs_best_other'])}"
                f", ratio {_never(v['ratio'], '.2f')})" for name, v in verdicts.items()
            )
        )  # fmt: skip
    for task, per in summary.items():
        pairs = [
            f"{name} {c['better']}-{c['level']}-{c['worse']} (median "
            f"{_signed(c['median_difference'])}, sign test p {c['sign_p']:.2f})"
            for name, c in (per.get("per_seed") or {}).items() if c
        ]  # fmt: skip
        if pairs:
            lines.append(f"per seed on {task}, better-level-worse: " + "; ".join(pairs))
    lines += _footer(result)
    return "\n".join(lines)


def _table_row(label: str, system: str, row: dict[str, Any]) -> str:
    st = row["trials_by_state"]
    other = sum(n for k, n in st.items() if k not in ("COMPLETE", "PRUNED"))
    cpf = f"{st.get('COMPLETE', 0)}/{st.get('PRUNED', 0)}/{other}"
    if row["failed_runs"]:
        cpf += f" ({row['failed_runs']} run(s) FAILED)"
    best = (
        f"{row['best_median']:.4f} [{row['best_min']:.4f}-{row['best_max']:.4f}]"
        if row["best_median"] is not None else "none"
    )  # fmt: skip
    startup = row.get("ray_startup_median_s")
    wall = f"{row['wall_median_s']:.1f} ({row['wall_spread']:.0%})"
    if startup is not None:
        wall += f", Ray up in {startup:.1f}"
    return (
        f"| {label} | {system} | {cpf} | {row['epochs_trained_median']:g} | {best} | {wall} | "
        f"{_never(row['time_to_loop_best_median_s'], '.1f')} | "
        f"{_never(row['ratio_to_loop_wall'], '.2f')} |"
    )


def _footer(result: dict[str, Any]) -> list[str]:
    s, m = result["settings"], result["machine"]
    defaults = result["tunecb_defaults"]
    return [
        "",
        "tunecb defaults used: " + ", ".join(
            f"{k}={v!r}" for k, v in defaults.items() if not k.endswith("_made")
        ) + f"; pruner {described(defaults['pruner_made'])}"
        + (f"; OVERRIDDEN for this run by {' '.join(s['tunecb_flags'])}"
           if s.get("tunecb_flags") else ""),
        *(f"tunecb[{name}]: tunecb with {' '.join(v['flags'] + v['study']) or 'its defaults'}"
          for name, v in s.get("variants", {}).items()),
        *(f"kerastuner on {task}: Hyperband's own schedule (no trial budget), {kt['trials']} "
          f"trials ({kt['configurations']} configurations), at most {kt['max_epochs_trained']} "
          "epochs" for task, kt in (s.get("kerastuner_hyperband") or {}).items()),
        f"{m['cpus_usable']} usable CPUs (affinity {result['threads']['affinity']}); "
        f"load average before {m['loadavg_1_5_15_before']}, after {m['loadavg_1_5_15_after']}",
        *result["notes"],
    ]  # fmt: skip


def described(made: dict[str, Any]) -> str:
    """``MedianPruner(n_startup_trials=5, ...)`` from a class-and-attributes record.

    >>> described({"class": "MedianPruner", "n_startup_trials": 5})
    'MedianPruner(n_startup_trials=5)'
    """
    args = ", ".join(f"{k}={v!r}" for k, v in made.items() if k != "class")
    return f"{made['class']}({args})"


def finite(x: float | None) -> float | str | None:
    """JSON-friendly: ``inf`` as the string "inf", numbers rounded.

    >>> finite(math.inf), finite(1.23456)
    ('inf', 1.235)
    """
    if x is None:
        return None
    return "inf" if math.isinf(x) else round(x, 3)


def _never(x: float | str | None, fmt: str) -> str:
    if x is None:
        return "n/a"
    return "never" if x == "inf" else format(x, fmt)


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _signed(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.4f}"
