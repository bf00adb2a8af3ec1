"""Numbers are worded for people in one place, tunecb.wording: no module adds a plural "s"
or steps through byte units by hand."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tunecb.errors import DiskFull
from tunecb.wording import number, plural, short, size_text

PACKAGE = Path(__file__).resolve().parents[2] / "tunecb"
BY_HAND = {
    "a plural 's' by hand": re.compile(r"""['"]s['"] if \S"""),
    "byte units by hand": re.compile(r"""['"]KiB['"]"""),
}


@pytest.mark.parametrize(
    "path",
    sorted(p for p in PACKAGE.rglob("*.py") if p.name != "wording.py"),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_no_module_words_numbers_by_hand(path):
    text = path.read_text(encoding="utf-8")
    for what, pattern in BY_HAND.items():
        hit = pattern.search(text)
        assert hit is None, (
            f"{path.relative_to(PACKAGE.parent)}: {what} ({hit.group()!r}): use tunecb.wording"
        )


def test_the_scan_sees_a_hand_made_plural():
    assert BY_HAND["a plural 's' by hand"].search("f\"{n} trial{'s' if n != 1 else ''}\"")


def test_the_disk_full_message_words_its_sizes_as_the_report_does():
    message = str(DiskFull("r/best.keras", 3_565_158, 1024, fix="free some space"))
    assert f"about {size_text(3_565_158)}; {size_text(1024)} is free" in message
    assert "about 3.4 MiB; 1.0 KiB is free" in message


@pytest.mark.parametrize(("value", "digits", "table", "line"), [
    (0.912345, 4, "0.9123", "0.9123"),
    (123456.7, 4, "123457", "1.235e+05"),  # a table avoids the exponent below a billion
    (None, 4, "", "-"),
    (7, 3, "7", "7"),
])  # fmt: skip
def test_a_table_cell_and_a_line_of_text_word_a_number(value, digits, table, line):
    assert number(value, digits) == table and short(value, digits) == line


def test_plural_of_a_count_left_to_run():
    assert [plural(n, "trial") for n in (0, 1, 2)] == ["0 trials", "1 trial", "2 trials"]
