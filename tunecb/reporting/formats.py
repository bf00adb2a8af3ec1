"""The formats of ``tunecb report --format``, in one registry: the parser takes its choices
from :data:`FORMATS`, the CLI asks each format what it allows and how it is written.

Adding a format is one entry here (and its renderer in ``text/``, ``html/``...). The
renderers import lazily: reading the registry (``tunecb --help``) loads no pandas and no
matplotlib.

>>> names()
('table', 'csv', 'markdown', 'json', 'html')
>>> [f.name for f in FORMATS.values() if f.trial is not None]
['table', 'csv', 'json']
>>> from tunecb.reporting.data.records import StudyRecords
>>> study = StudyRecords("s", "maximize", None, None, [{"trial": 0, "value": 0.5}])
>>> print(FORMATS["csv"].study(study))
rank,trial,state,value,best_epoch,epochs,stop_reason,duration_s,checkpoint
1,0,,0.5,,,,,
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunecb.reporting.data.records import StudyRecords

StudyRenderer = Callable[..., str]  # (result, *, top=None, width=None, plots=None) -> str
TrialRenderer = Callable[["StudyRecords", int, "int | None"], str]  # (result, number, width)


@dataclass(frozen=True)
class ReportFormat:
    """One ``--format``: how it renders the study, and one trial (``None``: no ``--trial``).

    ``width`` is the terminal's columns (``None``: every column in full); ``plots`` are the
    PNGs already drawn for ``--plots`` (``None``: draw them if the format shows plots).
    """

    name: str
    study: StudyRenderer
    trial: TrialRenderer | None = None
    utf8: bool = False  # data a stand-in character would change: UTF-8 on any terminal
    page: bool = False  # a whole page: a terminal gets it only through --output FILE
    header: bool = False  # on a terminal, the study line and the overview come first
    trial_note: str = ""  # what --trial N shows in this format, for the error that lists them


def _text(name: str) -> StudyRenderer:
    def study(
        result: StudyRecords,
        *,
        top: int | None = None,
        width: int | None = None,
        plots: list[Any] | None = None,
    ) -> str:
        from tunecb.reporting.data.records import columns
        from tunecb.reporting.text.table import render

        records = result.records[:top] if top else result.records
        root = str(result.study_dir.root) if result.study_dir else None
        return render(records, name, columns(result.records), width=width, root=root)

    return study


def _html(
    result: StudyRecords,
    *,
    top: int | None = None,
    width: int | None = None,
    plots: list[Any] | None = None,
) -> str:
    from tunecb.reporting.html.page import html_report

    return html_report(result, plots, top=top)


def _trial_text(result: StudyRecords, number: int, width: int | None) -> str:
    from tunecb.reporting.text.trial import trial_text

    return trial_text(result, number, width)


def _trial_json(result: StudyRecords, number: int, width: int | None) -> str:
    from tunecb.reporting.text.trial import trial_json

    return trial_json(result, number)


def _trial_csv(result: StudyRecords, number: int, width: int | None) -> str:
    from tunecb.reporting.text.trial import history_csv

    return history_csv(result, number)


FORMATS: dict[str, ReportFormat] = {
    f.name: f
    for f in (
        ReportFormat("table", _text("table"), _trial_text, header=True, trial_note="a table"),
        ReportFormat("csv", _text("csv"), _trial_csv, utf8=True, trial_note="csv (its epochs)"),
        ReportFormat("markdown", _text("markdown")),
        ReportFormat("json", _text("json"), _trial_json, trial_note="json (all of it)"),
        ReportFormat("html", _html, utf8=True, page=True),
    )
}


def names() -> tuple[str, ...]:
    """The ``--format`` choices, in the order ``--help`` lists them."""
    return tuple(FORMATS)


def trial_formats() -> str:
    """What ``--trial N`` can be shown as, in words (for the error that refuses the others).

    >>> trial_formats()
    'a table, csv (its epochs) or json (all of it)'
    """
    notes = [f.trial_note or f.name for f in FORMATS.values() if f.trial is not None]
    return ", ".join(notes[:-1]) + f" or {notes[-1]}" if len(notes) > 1 else notes[0]
