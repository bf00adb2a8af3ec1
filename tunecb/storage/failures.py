"""Recognising a storage that failed mid-search (a database server that went away), and
saying why in one line, password redacted.

>>> describe(ValueError("bad\\nvalue"))
'worker error: ValueError: bad'
"""

from __future__ import annotations

import optuna

from tunecb.errors import first_line
from tunecb.storage.urls import redact_text


def is_storage_failure(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the storage layer (SQLAlchemy, a driver, Optuna's)."""
    module = type(exc).__module__
    return module.startswith(("sqlalchemy", "psycopg", "pymysql")) or isinstance(
        exc, optuna.exceptions.StorageInternalError
    )


def storage_reason(exc: BaseException) -> str:
    """The first line of the innermost database error behind ``exc`` (Optuna wraps it in a
    generic "exception during the commit"), password redacted."""
    inner: BaseException = exc
    seen = set()
    while id(inner) not in seen:
        seen.add(id(inner))
        nxt = inner.__cause__ or inner.__context__
        if nxt is None or not is_storage_failure(nxt):
            break
        inner = nxt
    text = getattr(inner, "orig", None) or inner
    return first_line(redact_text(f"{type(text).__name__}: {text}"))


def describe(exc: BaseException) -> str:
    """One line for an unexpected error in a worker."""
    if is_storage_failure(exc):
        return f"the storage failed during the search: {storage_reason(exc)}"
    return f"worker error: {first_line(redact_text(f'{type(exc).__name__}: {exc}'))}"
