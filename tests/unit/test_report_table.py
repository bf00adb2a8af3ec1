"""The report table of a study with conditional spaces (issue 18, finding 5): the columns that
say the most win the room, names are cut at word boundaries, integer parameters stay integers
in the DataFrame, the best trial is not mistaken for rank 1, and ties say how they are ranked.
Plain records, no study on disk."""

from __future__ import annotations

import re

from tunecb.reporting.data.records import StudyRecords, columns, to_dataframe
from tunecb.reporting.html.page import html_report
from tunecb.reporting.text.terminal import ABBREVIATIONS, narrow_table, short_names


def _conditional(n: int = 10) -> list[dict]:
    """``kind`` decides: one trial is a cnn (``conv_*``), the rest mlps, one of which has
    ``dense_*``; ``lr`` is always there. Ranked by value."""
    records = []
    for i in range(n):
        record = {
            "trial": i, "state": "COMPLETE", "value": round(0.9 - i * 0.01, 4),
            "best_epoch": 3, "epochs": 4, "stop_reason": "budget", "duration_s": 12.5,
            "params_kind": "cnn" if i == 0 else "mlp", "params_lr": 10 ** -(2 + i / 10),
            "checkpoint": f"/r/trials/{i}/best.keras",
        }  # fmt: skip
        if i == 0:
            record.update(params_conv_blocks=3, params_conv_filters=32, params_conv_kernel=5)
        if i == 1:
            record.update(params_dense_layers=2, params_dense_units=128)
        records.append(record)
    return records


def _header(table: str) -> list[str]:
    return next(line for line in table.splitlines() if line.startswith("rank")).split()


def test_at_80_columns_the_parameters_that_decide_win_over_the_mostly_empty_ones():
    records = _conditional()
    header = _header(narrow_table(records, columns(records), 80))
    assert {"kind", "lr"} <= set(header), header


def test_at_120_columns_stop_and_time_win_over_parameters_empty_in_9_of_10_rows():
    records = _conditional()
    table = narrow_table(records, columns(records), 120)
    header = _header(table)
    assert {"kind", "lr", "epochs", "stop", "time"} <= set(header), table


def test_the_shown_columns_keep_the_order_of_the_columns():
    records = _conditional()
    cols = columns(records)
    header = _header(narrow_table(records, cols, 200))
    assert header[:5] == ["rank", "trial", "state", "value", "best_ep"]
    assert header.index("kind") < header.index("lr")


def test_long_names_are_cut_at_word_boundaries_never_mid_word():
    names = ["conv_blocks", "dense_layers", "convolution_filters_first", "residual_connections"]
    for name, short in short_names(names).items():
        words = set(re.split(r"[_.\-/]", name)) | set(ABBREVIATIONS.values())
        assert set(re.split(r"[_.\-/]", short.removesuffix("…"))) <= words, (name, short)
    assert short_names(["conv_blocks", "dense_layers"]) == {
        "conv_blocks": "conv_blocks", "dense_layers": "dense_layers"
    }  # fmt: skip


def test_integer_parameters_stay_integers_when_some_trials_lack_them():
    frame = to_dataframe(_conditional())
    assert str(frame["params_conv_blocks"].dtype) == "Int64"
    assert (
        frame["params_conv_blocks"].iloc[0] == 3 and frame["params_conv_blocks"].isna().sum() == 9
    )
    assert str(frame["params_lr"].dtype) == "float64"
    assert str(frame["trial"].dtype) == "int64"


def test_the_html_summary_names_the_best_trial_by_its_number_not_as_rank_one():
    records = _conditional()
    page = html_report(StudyRecords("s", "maximize", "val_accuracy", None, records), plots=[])
    assert "#0" not in page.split('id="trials"')[0]
    assert re.search(r"Best trial</dt><dd>trial <strong>0</strong>:", page), page[:2000]


def test_ties_are_ranked_by_trial_number_and_the_table_says_so():
    records = _conditional(4)
    records[1]["value"] = records[2]["value"]
    table = narrow_table(records, columns(records), 200)
    assert "equal values are ranked by trial number" in table
    assert "ranked by trial number" not in narrow_table(_conditional(4), columns(records), 200)
    page = html_report(StudyRecords("s", "maximize", None, None, records), plots=[])
    assert "Equal values are ranked by trial number" in page


def test_the_header_and_html_summary_say_where_the_trials_came_from():
    from tunecb.reporting.text.header import report_header

    records = _conditional(3)
    records[0]["given"] = "--warm-start-enqueue: old/first trial 7"
    records[2]["given"] = "--enqueue a.csv line 2"
    warm = {"from": "old/first", "study": "first", "url": "x", "added": 12, "queued": 1}
    result = StudyRecords("s", "maximize", "val_accuracy", None, records, warm_start=warm)
    header = report_header(result, 60)
    assert all(len(line) <= 60 for line in header)
    assert header[-4:] == [
        "warm start from old/first (study 'first'): 12 of its trials",
        "as prior knowledge (not trained, not listed)",
        "its best 1 queued first: trial 0 (given)",
        "given with --enqueue: trial 2",
    ]
    page = html_report(result, plots=[])
    assert (
        "<dt>Trials from</dt><dd>warm start from old/first (study &#x27;first&#x27;): 12 of "
        "its trials as prior knowledge (not trained, not listed); its best 1 queued first: "
        "trial 0 (given)</dd>"
    ) in page
    assert "<dt>Trials from</dt><dd>given with --enqueue: trial 2</dd>" in page
    plain = StudyRecords("s", "maximize", "val_accuracy", None, _conditional(3))
    assert "Trials from" not in html_report(plain, plots=[])
    assert report_header(plain, None)[-1].startswith("trained")  # nothing more to say
