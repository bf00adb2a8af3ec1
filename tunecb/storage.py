"""Optuna storages: the embedded default under the results folder, or any storage URL.

The default is Optuna's journal file (``results/<study>/optuna.journal``): no server,
and safe when several processes share it (SQLite is not; see design.md section 2).

>>> redact("postgresql://tuner:s3cret@db:5432/tunecb")
'postgresql://tuner:***@db:5432/tunecb'
"""

from __future__ import annotations

import re
from pathlib import Path

import optuna

from tunecb.errors import StorageError

JOURNAL_NAME = "optuna.journal"
_RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql")
_PASSWORD_RE = re.compile(r"^(?P<head>[a-zA-Z][\w+.-]*://[^:/@]+:)(?P<pw>[^@]*)(?P<tail>@.*)$")


def redact(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (for messages and files)."""
    return _PASSWORD_RE.sub(r"\g<head>***\g<tail>", url)


def is_journal_url(url: str) -> bool:
    return url.startswith("journal:") or "://" not in url


def open_storage(url: str | None, study_dir: Path) -> optuna.storages.BaseStorage:
    """Open ``url`` (an Optuna RDB URL, ``journal:PATH`` or a journal file path), or the
    embedded journal file in ``study_dir`` when ``url`` is ``None``.

    Raises :class:`StorageError` naming the storage (password redacted) and the fix.
    """
    if url is None:
        return _journal(study_dir / JOURNAL_NAME, shown=str(study_dir / JOURNAL_NAME))
    if is_journal_url(url):
        path = Path(url.removeprefix("journal:").removeprefix("//"))
        return _journal(path, shown=url)
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    if scheme not in _RDB_SCHEMES:
        raise StorageError(
            f"--storage {redact(url)!r}: unknown scheme {scheme!r}; use an Optuna storage URL "
            "such as sqlite:///study.db, postgresql://user:pass@host/db or a .journal file path"
        )
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # sqlalchemy raises many kinds; all mean "cannot open"
        raise StorageError(
            f"--storage {redact(url)!r}: cannot open the storage: {_first_line(exc)}"
        ) from exc


def _journal(path: Path, shown: str) -> optuna.storages.BaseStorage:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if path.exists() and not path.is_file():
        raise StorageError(f"storage {shown!r} is not a file; point --storage at a journal file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    except Exception as exc:
        raise StorageError(
            f"storage {shown!r}: cannot open the journal: {_first_line(exc)}"
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
