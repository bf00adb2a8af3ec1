"""What an Optuna journal file looks like, line by line: a record, a record cut short by a
killed writer, two records glued together, and a file that is no journal at all (text, CSV,
other JSON Lines, an SQLite database). :mod:`tunecb.storage.journal` checks and repairs
journals with these.

>>> is_record(b'{"op_code":0,"worker_id":"w","study_name":"s"}'), is_record(b'{"op_co')
(True, False)
>>> starts_like_a_record(b'{"op_co')
True
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
from pathlib import Path

# tunecb.storage.urls.JOURNAL_NAME; not imported, since tunecb.storage.urls calls this package.
DEFAULT_JOURNAL_NAME = "optuna.journal"

# How Optuna starts every record: ``json.dumps`` of a dict whose first key is ``op_code``
# (compact since Optuna 3.1's JournalFileBackend; with spaces before).
RECORD_HEAD = re.compile(rb'\{\s*"op_code"\s*:')
_HEADS = (b'{"op_code":', b'{"op_code": ')
SNIFF_BYTES = 64 * 1024  # enough for a journal's first record (it creates the study)
PREVIEW_BYTES = 60


def starts_like_a_record(fragment: bytes) -> bool:
    """True when ``fragment`` is the beginning of an Optuna record (or a prefix of one's
    first key): what a writer killed mid-record leaves."""
    return bool(RECORD_HEAD.match(fragment)) or any(h.startswith(fragment) for h in _HEADS)


def is_glued(line: bytes) -> bool:
    """True for a line that is a record cut short with a whole record glued on after it:
    what the next append leaves after a torn last line (Optuna writes no newline first)."""
    if not RECORD_HEAD.match(line):
        return False
    return any(is_record(line[m.start() :]) for m in RECORD_HEAD.finditer(line) if m.start() > 0)


def not_a_journal(head: bytes, link: Path | None = None) -> str | None:
    """What a file that starts with ``head`` looks like when it is not an Optuna journal
    (whose first line is a record that creates a study); ``None`` for a journal, an empty
    file, or a journal whose first record was cut short. ``link``: the journal is that
    symbolic link, and no byte of the file it points to is quoted (:func:`preview`).

    >>> not_a_journal(b'{"op_code":0,"worker_id":"w","study_name":"s"}\\n') is None
    True
    >>> print(not_a_journal(b"epoch,loss\\n1,0.5\\n"))
    CSV text (first line 'epoch,loss')
    >>> print(not_a_journal(b'{"loss": 0.5}\\n'))
    JSON Lines without Optuna's "op_code" key (first line '{"loss": 0.5}')
    >>> not_a_journal(b"SQLite format 3\\x00...")
    'an SQLite database'
    """
    if not head:
        return None
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    first, newline, _ = head.partition(b"\n")
    if RECORD_HEAD.match(first) or (not newline and starts_like_a_record(first)):
        if newline:
            with contextlib.suppress(ValueError):
                record = json.loads(first)
                if isinstance(record, dict) and record.get("op_code") != 0:
                    return (
                        "Optuna journal records without the one that creates the study "
                        f"(the first has op_code {record.get('op_code')!r}): its start is missing"
                    )
        return None
    if b"\x00" in head:
        return "binary data"
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError:
        if len(first) < len(head) or len(head) < SNIFF_BYTES:  # not just cut mid-character
            return "binary data"
        text = first.decode("utf-8", "ignore")
    shown = preview(first, link)
    try:
        value = json.loads(first)
    except ValueError:
        value = None
    else:
        if isinstance(value, dict):
            return f'JSON Lines without Optuna\'s "op_code" key (first line {shown})'
        return f"JSON, not Optuna journal records (first line {shown})"
    if text.lstrip().startswith(("{", "[")):
        return f"JSON text, not one Optuna record a line (first line {shown})"
    for sep, kind in ((",", "CSV"), ("\t", "TSV"), (";", "CSV")):
        if sep in text:
            return f"{kind} text (first line {shown})"
    return f"text (first line {shown})"


_MAGIC = (
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"PK\x03\x04", "a zip archive (a .keras checkpoint?)"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
    (b"\x1f\x8b", "gzip data"),
)


def not_a_journal_message(path: Path, looks: str) -> str:
    """One line: ``path`` is not an Optuna journal, what it looks like, and the fix.

    >>> not_a_journal_message(Path("runs/x.db"), "an SQLite database").split("; ")[1]
    'pass it as --storage sqlite:///runs/x.db (tunecb leaves the file as it is)'
    """
    path = Path(path)
    shown = shlex.quote(str(path))
    if looks == "an SQLite database":
        return (
            f"--storage {shown} is not an Optuna journal file but an SQLite database; pass it "
            f"as --storage sqlite:///{path} (tunecb leaves the file as it is)"
        )
    if path.name == DEFAULT_JOURNAL_NAME:
        return (
            f"journal {path} is not an Optuna journal file: it looks like {looks}; something "
            "overwrote it: restore it from a copy, or move it away to start the study afresh "
            "(tunecb leaves the file as it is)"
        )
    return (
        f"--storage {shown} is not an Optuna journal file: it looks like {looks}; point "
        "--storage at a journal file that Optuna or tunecb wrote, or at a new file name to "
        "start one (tunecb leaves the file as it is)"
    )


def preview(data: bytes, link: Path | None = None) -> str:
    """``data`` (the start of a line) as a short quoted string for a message; when the
    journal is the symbolic ``link``, not quoted but the link named (a results folder from
    elsewhere may link its journal to a file of yours, ``~/.env`` say).

    >>> preview(b"epoch,loss"), preview(b"API_KEY=x", Path("r/optuna.journal"))
    ("'epoch,loss'", 'not quoted: r/optuna.journal is a symbolic link')
    """
    if link is not None:
        return f"not quoted: {link} is a symbolic link"
    text = data[:PREVIEW_BYTES].decode("utf-8", "replace")
    return repr(text if len(data) <= 40 else text[:40] + "...")


def is_record(line: bytes) -> bool:
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError, and UnicodeDecodeError for broken UTF-8
        return False
    return isinstance(record, dict) and "op_code" in record
