"""`tunecb report --format`: one registry (tunecb.reporting.formats) that the parser offers and
the CLI follows, and the header above the table built in reporting/. A synthetic study (made
with Optuna's API, no training)."""

from __future__ import annotations

import pytest

from tests.synthetic import make_big_study
from tunecb.cli.commands import main
from tunecb.cli.parser import build_parser
from tunecb.reporting import formats
from tunecb.reporting.data.records import study_records
from tunecb.reporting.formats import FORMATS, ReportFormat
from tunecb.reporting.text.header import report_header


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("formats") / "big"
    make_big_study(folder, 6, workers=2)
    return folder


def _choices() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    report = sub.choices["report"]
    return list(next(a for a in report._actions if a.dest == "format").choices)


def test_the_parser_offers_exactly_the_registered_formats():
    assert _choices() == list(FORMATS) == ["table", "csv", "markdown", "json", "html"]


def test_a_registered_format_is_offered_and_rendered_with_no_other_edit(study, monkeypatch, capsys):
    def upper(result, *, top=None, width=None, plots=None):
        return f"UPPER {result.name} top={top} rows={len(result.records)}"

    monkeypatch.setitem(FORMATS, "upper", ReportFormat("upper", upper))
    assert "upper" in _choices()
    assert main(["report", str(study), "--format", "upper", "--top", "2"]) == 0
    assert capsys.readouterr().out.strip() == "UPPER big top=2 rows=6"
    # no trial renderer: --trial is refused in one line that lists the formats that have one
    assert main(["report", str(study), "--format", "upper", "--trial", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not --format upper; drop --trial" in err
    assert formats.trial_formats() in err


def test_only_formats_with_a_trial_renderer_take_trial(study, capsys):
    for name, fmt in FORMATS.items():
        code = main(["report", str(study), "--format", name, "--trial", "1", "--output",
                     str(study / f"t.{name}")])  # fmt: skip
        assert code == (0 if fmt.trial else 2), name
    capsys.readouterr()


def test_the_header_is_built_in_reporting_and_printed_as_is(study, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "60")
    lines = report_header(study_records(study), 60)
    assert lines[0].startswith("study 'big': val_accuracy (maximize); ")
    assert all(len(line) <= 60 for line in lines) and len(lines) > 1
    assert main(["report", str(study)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[: len(lines)] == lines
    # a format without a header (csv) prints the data alone
    assert main(["report", str(study), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("rank,trial,")
