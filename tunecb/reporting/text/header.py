"""The lines above the terminal table: the study line (name, metric, direction, how many
trials in each state), then the overview (epochs, wall clock, workers, checkpoints), each
wrapped to the terminal's width. Strings only; the CLI prints them.

>>> from tunecb.reporting.data.records import StudyRecords
>>> report_header(StudyRecords("s", "maximize", "val_accuracy", None, []), 80)
["study 's': val_accuracy (maximize); no trials"]
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from tunecb.oracle.attrs import INFEASIBLE
from tunecb.reporting.data.overview import line_parts, overview, sources
from tunecb.reporting.text.cells import wrap_parts

if TYPE_CHECKING:
    from tunecb.reporting.data.records import StudyRecords


def report_header(result: StudyRecords, width: int | None) -> list[str]:
    """The study line, then the overview's lines (none for a study without trials), and
    where the trials came from when not all from the sampler (warm start, given), each at
    most ``width`` characters (``None``: the study line and the overview, one line each).

    >>> report_header(study_records("results/digits"), 60)  # doctest: +SKIP
    ["study 'digits': val_accuracy (maximize); 12 complete, 4 pruned", ...]
    """
    return (
        study_line(result, width)
        + (wrap_parts(line_parts(overview(result)), width) if result.records else [])
        + [line for text in sources(result) for line in wrap_parts(text.split("; "), width, "; ")]
    )


def study_line(result: StudyRecords, width: int | None = None) -> list[str]:
    """``study 'x': val_accuracy (maximize); 3 complete, 1 pruned``, wrapped at its spaces.

    >>> from tunecb.reporting.data.records import StudyRecords
    >>> records = [{"state": "COMPLETE"}, {"state": "PRUNED"}, {"state": "COMPLETE"},
    ...            {"state": "PRUNED", "stop_reason": "infeasible"}]
    >>> study_line(StudyRecords("x", "minimize", None, None, records))
    ["study 'x': value (minimize); 2 complete, 1 pruned, 1 infeasible"]
    """
    states = Counter(  # an infeasible trial (PRUNED before it trained) under its own name
        "infeasible" if r.get("stop_reason") == INFEASIBLE else r["state"] for r in result.records
    )
    counts = ", ".join(f"{n} {state.lower()}" for state, n in states.items())
    metric = result.monitor or "value"
    head = f"study {result.name!r}: {metric} ({result.direction}); {counts or 'no trials'}"
    return wrap_parts([head], width, sep="; ")
