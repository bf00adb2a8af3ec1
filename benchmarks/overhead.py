"""How much time tunecb adds: to a search, over a bare training loop, and to a report.

Run it from the repository root (the default run takes about five minutes on 2 cores)::

    python benchmarks/overhead.py [--trials N --repeats R] [--json PATH]

It measures, in one run:

1. Search overhead. ``tunecb search benchmarks/overhead_study.py --n-trials N
   --pruner none --jobs 0`` (a fixed MLP on scikit-learn's digits, 30 epochs, batch 64,
   early stopping that cannot trigger, so every trial trains identically; one trial at a
   time in the process, as the bare loops run them) against two bare loops
   of ``benchmarks/overhead_bare.py``, the same N fits with the same seeds and model, driven
   by an in-memory Optuna study: ``bare`` with tunecb's callbacks (so the difference is
   tunecb's work outside ``fit``) and ``keras`` with only Keras' ``EarlyStopping`` and
   ``ModelCheckpoint``, what a user writes by hand (so the difference is everything tunecb
   does). All run as subprocesses, so all pay Python start-up and the TensorFlow import.
   The order rotates R times; the medians of the wall times give tunecb/keras (goal
   <= 1.03), tunecb/bare (goal <= 1.05), the overhead per trial, and (from the in-fit sums)
   what tunecb's callbacks cost per epoch over Keras' two.
2. Report speed. A 1,000-trial study written the way ``tunecb search`` writes one
   (journal, ``study.json``, user attributes, checkpoint files), created with Optuna's API
   (no training); then ``tunecb report`` on it as a subprocess (goal under 1 s) and
   ``tunecb.report()`` in this process, 5 times each, medians.

It prints a table and writes the numbers as JSON to ``benchmarks/out/overhead.json``.
The machine should be otherwise idle: the spread of the repeats is printed so that noisy
numbers show.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import cmdline as _cmdline
from common import machine, run_timed, write_result
from common import shown as _shown
from common import spread as _spread
from common import tunecb_command as _tunecb
from synthetic import make_big_study

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STUDY_FILE = HERE / "overhead_study.py"
BARE_SCRIPT = HERE / "overhead_bare.py"
DEFAULT_JSON = HERE / "out" / "overhead.json"
EPOCHS = 30  # overhead_study.EPOCHS (not imported: this process stays free of TensorFlow)
STUDY_NAME = "overhead"  # overhead_study.study's name
SEARCH_GOAL = 1.05  # tunecb / bare (tunecb's callbacks)
KERAS_GOAL = 1.03  # tunecb / fit with Keras' EarlyStopping and ModelCheckpoint only
REPORT_GOAL_S = 1.0
NOISY_SPREAD = 0.10  # (max - min) / median above this: say the numbers are noisy


@dataclass
class Run:
    """One timed subprocess."""

    side: str
    repeat: int
    wall_s: float
    details: dict[str, Any] = field(default_factory=dict)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--trials", type=int, default=8, help="trials per search (8)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side (3)")
    parser.add_argument("--report-trials", type=int, default=1000, help="trials of the study")
    parser.add_argument("--report-repeats", type=int, default=5, help="timed reports (5)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if min(args.trials, args.repeats, args.report_trials, args.report_repeats) < 1:
        parser.error("--trials, --repeats, --report-trials and --report-repeats must be >= 1")

    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="tunecb-overhead-"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    load_before = os.getloadavg()
    try:
        print(f"warming up (imports), temporary folder {tmp}", flush=True)
        run_timed([sys.executable, "-c", "import tensorflow, keras, optuna, sklearn"], env)
        search = measure_search(tmp, args.trials, args.repeats, env)
        report = measure_report(tmp, args.report_trials, args.report_repeats, env)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()

    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(load_before, load_after),
        "settings": vars(args) | {"json": str(args.json), "epochs": EPOCHS},
        "search": search,
        "report": report,
        "total_s": round(time.perf_counter() - started, 1),
    }
    write_result(result, args.json, table(result))
    return 0


# --- 1. search overhead ------------------------------------------------------------------


SIDES = ("tunecb", "bare", "keras")


def measure_search(tmp: Path, n_trials: int, repeats: int, env: dict[str, str]) -> dict:
    """Time ``tunecb search`` and the two bare loops ``repeats`` times each, the order
    rotating from one repeat to the next."""
    tunecb_cmd = [
        *_tunecb(), "search", _shown(STUDY_FILE), "--results", "{results}",
        "--n-trials", str(n_trials), "--pruner", "none", "--jobs", "0",
    ]  # fmt: skip
    bare_cmd = [
        sys.executable, _shown(BARE_SCRIPT), "--trials", str(n_trials), "--workdir", "{workdir}"
    ]  # fmt: skip
    keras_cmd = [*bare_cmd, "--callbacks", "keras"]
    runs: list[Run] = []
    for repeat in range(repeats):
        k = repeat % len(SIDES)
        for side in SIDES[k:] + SIDES[:k]:
            folder = tmp / f"{side}-{repeat}"
            if side == "tunecb":
                cmd = [a.replace("{results}", str(folder)) for a in tunecb_cmd]
                wall, _ = run_timed(cmd, env)
                details = _tunecb_details(folder / STUDY_NAME)
            else:
                base = bare_cmd if side == "bare" else keras_cmd
                cmd = [a.replace("{workdir}", str(folder)) for a in base]
                wall, out = run_timed(cmd, env)
                details = _bare_details(out)
            runs.append(Run(side, repeat, round(wall, 3), details))
            print(
                f"  search  repeat {repeat + 1}/{repeats}  {side:<6}  {wall:6.2f} s  "
                f"(in-trial sum {details['trials_sum_s']:.2f} s)",
                flush=True,
            )
            shutil.rmtree(folder, ignore_errors=True)

    walls = {side: [r.wall_s for r in runs if r.side == side] for side in SIDES}
    med = {side: statistics.median(values) for side, values in walls.items()}
    inner = {
        side: statistics.median(r.details["trials_sum_s"] for r in runs if r.side == side)
        for side in SIDES
    }
    outside = {
        side: statistics.median(
            r.wall_s - r.details["trials_sum_s"] for r in runs if r.side == side
        )
        for side in SIDES
    }

    def per_repeat(base: str) -> list[float]:
        return [
            round(t.wall_s / b.wall_s, 4)
            for t, b in zip(
                (r for r in runs if r.side == "tunecb"),
                (r for r in runs if r.side == base),
                strict=True,
            )
        ]

    identical = _same_work(runs, n_trials)
    ratio = med["tunecb"] / med["bare"]
    keras_ratio = med["tunecb"] / med["keras"]
    # Per epoch, inside fit: what tunecb's callbacks cost over Keras' own two.
    epochs = n_trials * EPOCHS
    per_epoch = (inner["bare"] - inner["keras"]) / epochs
    return {
        "n_trials": n_trials,
        "repeats": repeats,
        "epochs": EPOCHS,
        "tunecb_cmd": _cmdline(tunecb_cmd),
        "bare_cmd": _cmdline(bare_cmd),
        "keras_cmd": _cmdline(keras_cmd),
        "tunecb_median_s": round(med["tunecb"], 3),
        "bare_median_s": round(med["bare"], 3),
        "keras_median_s": round(med["keras"], 3),
        "ratio": round(ratio, 4),
        "goal_ratio": SEARCH_GOAL,
        "ok": ratio <= SEARCH_GOAL,
        "keras_ratio": round(keras_ratio, 4),
        "keras_goal_ratio": KERAS_GOAL,
        "keras_ok": keras_ratio <= KERAS_GOAL,
        "per_trial_overhead_s": round((med["tunecb"] - med["bare"]) / n_trials, 4),
        "per_trial_overhead_vs_keras_s": round((med["tunecb"] - med["keras"]) / n_trials, 4),
        "callbacks_per_epoch_ms": round(per_epoch * 1000, 2),
        "keras_epoch_ms": round(inner["keras"] / epochs * 1000, 2),
        "walls_s": walls,
        "per_repeat_ratios": per_repeat("bare"),
        "per_repeat_keras_ratios": per_repeat("keras"),
        "spread": {side: round(_spread(values), 4) for side, values in walls.items()},
        "in_trial_sum_median_s": {side: round(v, 3) for side, v in inner.items()},
        "outside_trials_median_s": {side: round(v, 3) for side, v in outside.items()},
        "identical_work": identical,
        "runs": [vars(r) for r in runs],
    }


def _tunecb_details(study_dir: Path) -> dict[str, Any]:
    """What one ``tunecb search`` did, from its ``trials/<n>/trial.json`` files."""
    records = []
    for path in (study_dir / "trials").glob("*/trial.json"):
        records.append(json.loads(path.read_text(encoding="utf-8")))
    records.sort(key=lambda r: r["number"])
    return {
        "states": [r["state"] for r in records],
        "epochs_run": [r["epochs_run"] for r in records],
        "values": [r["value"] for r in records],
        "trials_s": [r["duration_s"] for r in records],
        "trials_sum_s": round(sum(r["duration_s"] for r in records), 3),
    }


def _bare_details(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"the bare loop printed no JSON line; its output:\n{stdout}")
    out = json.loads(lines[-1])
    return {
        "states": ["COMPLETE" if v is not None else "FAIL" for v in out["values"]],
        "epochs_run": out["epochs_run"],
        "values": out["values"],
        "trials_s": out["fits_s"],
        "trials_sum_s": round(sum(out["fits_s"]), 3),
        "startup_s": out["startup_s"],
    }


def _same_work(runs: list[Run], n_trials: int) -> dict[str, Any]:
    """Did every run train n_trials complete trials of all epochs, with the same results?"""
    full = all(
        len(r.details["epochs_run"]) == n_trials
        and all(e == EPOCHS for e in r.details["epochs_run"])
        and all(s == "COMPLETE" for s in r.details["states"])
        for r in runs
    )
    values = {tuple(round(v, 6) for v in r.details["values"]) for r in runs}
    return {"all_trials_ran_all_epochs": full, "same_values_every_run": len(values) == 1}


# --- 2. report speed ---------------------------------------------------------------------


def measure_report(tmp: Path, n_trials: int, repeats: int, env: dict[str, str]) -> dict:
    """Time ``tunecb report`` (subprocess) and ``tunecb.report()`` on a big study."""
    folder = tmp / "big"
    t0 = time.perf_counter()
    make_big_study(folder, n_trials)
    created_s = time.perf_counter() - t0
    print(f"  report  created a {n_trials}-trial study in {created_s:.2f} s", flush=True)

    output = tmp / "report.txt"
    cmd = [*_tunecb(), "report", str(folder), "--output", str(output)]
    cli: list[float] = []
    for i in range(repeats):
        wall, _ = run_timed(cmd, env)
        cli.append(round(wall, 4))
        print(f"  report  CLI      {i + 1}/{repeats}  {wall:6.3f} s", flush=True)
    rows = len(output.read_text(encoding="utf-8").splitlines())

    import tunecb  # here, not at the top: the search side must not pay for it

    t0 = time.perf_counter()
    frame = tunecb.report(str(folder))
    first_s = time.perf_counter() - t0
    if len(frame) != n_trials:
        raise SystemExit(f"tunecb.report() returned {len(frame)} rows, not {n_trials}")
    api: list[float] = []
    for i in range(repeats):
        t0 = time.perf_counter()
        tunecb.report(str(folder))
        api.append(round(time.perf_counter() - t0, 4))
        print(f"  report  in-proc  {i + 1}/{repeats}  {api[-1]:6.3f} s", flush=True)

    cli_med = statistics.median(cli)
    return {
        "n_trials": n_trials,
        "create_s": round(created_s, 3),
        "journal_bytes": (folder / "optuna.journal").stat().st_size,
        "cli_cmd": _cmdline([*_tunecb(), "report", "<tmp>/big", "--output", "<tmp>/report.txt"]),
        "cli_median_s": round(cli_med, 4),
        "cli_runs_s": cli,
        "cli_output_lines": rows,
        "goal_s": REPORT_GOAL_S,
        "ok": cli_med < REPORT_GOAL_S,
        "api_call": 'tunecb.report("<tmp>/big")',
        "api_median_s": round(statistics.median(api), 4),
        "api_runs_s": api,
        "api_first_call_s": round(first_s, 4),
    }


# --- helpers -----------------------------------------------------------------------------


def table(result: dict[str, Any]) -> str:
    """The results as a markdown table, with a line on noise."""
    s, r = result["search"], result["report"]
    n = s["n_trials"]
    status = "OK" if s["ok"] else "OVER GOAL"
    keras_status = "OK" if s["keras_ok"] else "OVER GOAL"
    if not all(s["identical_work"].values()):
        status += " (INVALID: the two sides did not do the same work)"
    rows = [
        ("measurement", "median s", "goal", "ratio / status", "command"),
        (
            f"tunecb search, {n} trials x {s['epochs']} epochs",
            f"{s['tunecb_median_s']:.2f}", "", f"runs {_list(s['walls_s']['tunecb'])}",
            s["tunecb_cmd"],
        ),
        (
            f"bare loop, same {n} fits, tunecb's callbacks",
            f"{s['bare_median_s']:.2f}", "", f"runs {_list(s['walls_s']['bare'])}",
            s["bare_cmd"],
        ),
        (
            f"bare loop, same {n} fits, Keras' EarlyStopping + ModelCheckpoint",
            f"{s['keras_median_s']:.2f}", "", f"runs {_list(s['walls_s']['keras'])}",
            s["keras_cmd"],
        ),
        (
            "tunecb / Keras' own callbacks", "", f"<= {KERAS_GOAL}",
            f"{s['keras_ratio']:.3f} {keras_status}",
            f"per repeat {_list(s['per_repeat_keras_ratios'], 3)}",
        ),
        (
            "search overhead (tunecb / bare)", "", f"<= {SEARCH_GOAL}",
            f"{s['ratio']:.3f} {status}", f"per repeat {_list(s['per_repeat_ratios'], 3)}",
        ),
        (
            "overhead per trial ((tunecb - keras) / N)",
            f"{s['per_trial_overhead_vs_keras_s']:+.3f}", "", "", "",
        ),
        (
            "tunecb's callbacks over Keras' two, per epoch (in-fit sums)",
            f"{s['callbacks_per_epoch_ms'] / 1000:+.4f}", "",
            f"{s['callbacks_per_epoch_ms'] / s['keras_epoch_ms']:+.1%} of an epoch", "",
        ),
        (
            f"tunecb report, {r['n_trials']} trials (CLI)", f"{r['cli_median_s']:.3f}",
            f"< {REPORT_GOAL_S:g} s", "OK" if r["ok"] else "OVER GOAL", r["cli_cmd"],
        ),
        (
            f"tunecb.report(), {r['n_trials']} trials (in-process)",
            f"{r['api_median_s']:.3f}", "", f"first call {r['api_first_call_s']:.3f} s",
            r["api_call"],
        ),
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in rows]  # fmt: skip
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")

    inner, outside = s["in_trial_sum_median_s"], s["outside_trials_median_s"]
    same = s["identical_work"]
    noisy = [side for side, v in s["spread"].items() if v > NOISY_SPREAD]
    machine = result["machine"]
    lines += [
        "",
        "in-trial time (sum over trials, median): "
        + ", ".join(f"{k} {v:.2f} s" for k, v in inner.items())
        + "; outside the trials (start-up, imports, study set-up): "
        + ", ".join(f"{k} {v:.2f} s" for k, v in outside.items()),
        f"identical work: every trial ran all epochs: {same['all_trials_ran_all_epochs']}; "
        f"same val_accuracy in every run: {same['same_values_every_run']}",
        "spread (max - min) / median: "
        + ", ".join(f"{k} {v:.1%}" for k, v in s["spread"].items())
        + (f"  -> NOISY ({', '.join(noisy)} above {NOISY_SPREAD:.0%})" if noisy else ""),
        f"{machine['cpus']} CPUs; load average before {machine['loadavg_1_5_15_before']}, "
        f"after {machine['loadavg_1_5_15_after']}",
    ]
    return "\n".join(lines)


def _list(values: list[float], digits: int = 2) -> str:
    return "[" + ", ".join(f"{v:.{digits}f}" for v in values) + "]"


if __name__ == "__main__":
    raise SystemExit(main())
