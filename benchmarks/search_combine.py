"""Summarize several runs of ``benchmarks/search.py`` as one: the runs of every JSON file given
(each a ``kind == "search"`` result), the table, the goal lines and the anytime plot, as if
one run had made them. For a measurement split over several machine holds (tasks or seeds
apart); it refuses files whose budgets or patience differ for a task, and a (system, task,
seed) found twice (name the files so that each appears once), unless ``--later-wins``: then a
later file's run replaces an earlier one's (to redo one system's runs, e.g. Ray Tune paired),
and the result's notes say which were replaced.

    python benchmarks/search_combine.py a.json b.json --systems tunecb,loop,ray \\
        --json benchmarks/out/all.json --plot docs/search_anytime.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from search_summary import search_table, summarize


def combine(
    results: list[dict[str, Any]],
    systems: list[str] | None = None,
    later_wins: bool = False,
    seeds: list[int] | None = None,
    tasks: dict[int, list[str]] | None = None,
) -> dict[str, Any]:
    """One search result from several: runs concatenated, settings merged, summary redone;
    only the runs of ``systems`` and ``seeds`` when given (a variant run on some seeds is
    then compared on those seeds only), and of result ``i`` only the tasks ``tasks[i]``
    when given (a file that ran more tasks than are wanted from it); ``later_wins``: a
    (system, task, seed) run again in a later result replaces the earlier run."""
    settings = combine_settings(results)
    if systems:
        settings["systems"] = [s for s in settings["systems"] if s in systems]
    if seeds is not None:
        settings["seeds"] = [s for s in settings["seeds"] if s in seeds]
    variants = {k: v for r in results for k, v in (r["settings"].get("variants") or {}).items()}
    settings["variants"] = {
        name: spec for name, spec in variants.items() if f"tunecb[{name}]" in settings["systems"]
    }
    kept: dict[tuple[str, str, int], dict[str, Any]] = {}
    replaced: list[str] = []
    for i, result in enumerate(results):
        for run in result["runs"]:
            if run["system"] not in settings["systems"] or run["seed"] not in settings["seeds"]:
                continue
            if tasks and i in tasks and run["task"] not in tasks[i]:
                continue
            key = (run["system"], run["task"], run["seed"])
            if key in kept:
                if not later_wins:
                    raise SystemExit(f"error: {key} is in more than one file; give each once")
                replaced.append(f"{key[0]} {key[1]} seed {key[2]}")
                del kept[key]  # the later run goes to the end, in its file's order
            kept[key] = run
    runs = list(kept.values())
    combined = {k: v for k, v in results[-1].items() if k not in ("runs", "summary", "notes")}
    combined |= {
        "kind": "search",
        "settings": settings,
        "notes": sorted({n for r in results for n in r.get("notes") or []})
        + ([f"replaced by a later file's run: {', '.join(replaced)}"] if replaced else []),
        "combined_from": [r.get("date") for r in results],
        "machine_per_part": [r.get("machine") for r in results],
        "runs": runs,
        "summary": summarize(runs, settings["tasks"], settings["systems"]),
    }
    return combined


def combine_settings(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The union of the results' tasks, systems, seeds and budgets (budgets must agree).

    >>> a = {"kind": "search", "settings": {"tasks": ["digits"], "systems": ["loop"],
    ...      "seeds": [0], "budgets": {"digits": {"trials": 2, "epochs": 3}}, "patience": 5},
    ...      "runs": [{"system": "loop", "task": "digits", "seed": 0}]}
    >>> b = {**a, "runs": [{"system": "loop", "task": "digits", "seed": 1}]}
    >>> b["settings"] = {**a["settings"], "seeds": [1]}
    >>> merged = combine_settings([a, b]); merged["seeds"], merged["systems"]
    ([0, 1], ['loop'])
    """
    settings = dict(results[0]["settings"])
    for key in ("tasks", "systems", "seeds"):
        merged: list[Any] = []
        for result in results:
            merged += [x for x in result["settings"][key] if x not in merged]
        settings[key] = sorted(merged) if key == "seeds" else merged
    budgets: dict[str, Any] = {}
    for result in results:
        for task, budget in result["settings"]["budgets"].items():
            if budgets.setdefault(task, budget) != budget:
                raise SystemExit(f"error: {task}'s budget differs: {budgets[task]} and {budget}")
        if result["settings"]["patience"] != settings["patience"]:
            raise SystemExit("error: the files ran with different --patience; combine alike runs")
    settings["budgets"] = budgets
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "files", nargs="+", help="result files; FILE:TASK,TASK takes only those tasks' runs"
    )
    parser.add_argument("--json", type=Path, required=True, help="where to write the result")
    parser.add_argument("--plot", type=Path, help="where to draw the anytime curves")
    parser.add_argument("--systems", help="only these systems, e.g. tunecb,loop,ray")
    parser.add_argument("--seeds", help="only these seeds, e.g. 0,1,2,3,4")
    parser.add_argument(
        "--later-wins", action="store_true", help="a later file's (system, task, seed) run wins"
    )
    args = parser.parse_args(argv)
    results, tasks = [], {}
    for i, given in enumerate(args.files):
        name, _, only = given.rpartition(":") if given.count(":") else (given, "", "")
        path = Path(name)
        result = json.loads(path.read_text())
        if result.get("kind") != "search":
            parser.error(f"{path}: not a search run (kind {result.get('kind')!r})")
        if only:
            tasks[i] = only.split(",")
            if unknown := [t for t in tasks[i] if t not in result["settings"]["tasks"]]:
                parser.error(
                    f"{given}: {path} ran no task {', '.join(map(repr, unknown))}; "
                    f"it ran {', '.join(result['settings']['tasks'])}"
                )
        results.append(result)
    systems = args.systems.split(",") if args.systems else None
    try:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    except ValueError:
        parser.error(f"--seeds {args.seeds!r}: give whole numbers separated by commas, e.g. 0,1,2")
    combined = combine(results, systems, args.later_wins, seeds, tasks)
    args.json.write_text(json.dumps(combined, indent=1) + "\n")
    print(search_table(combined))
    print(f"wrote {args.json}")
    if args.plot:
        from search_plot import plot

        print(f"wrote {plot(combined, args.plot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
