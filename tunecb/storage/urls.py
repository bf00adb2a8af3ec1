"""Optuna storages: the embedded default under the results folder, or any storage URL.

The default is Optuna's journal file (``results/<study>/optuna.journal``): no server,
and safe when several processes share it (SQLite is not; see design.md section 2).

>>> redact("postgresql://tuner:s3cret@db:5432/tunecb")
'postgresql://tuner:***@db:5432/tunecb'
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import time
import warnings
from pathlib import Path
from typing import Any

import optuna

from tunecb.errors import StorageError
from tunecb.results import space_for
from tunecb.storage import journal_snapshot

JOURNAL_NAME = "optuna.journal"
_RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql")
# The password of ``scheme://user:password@host...``: the user name stops at the first ":"
# or "/" (as SQLAlchemy splits it), the password at the LAST "@" that a host follows (as
# urllib splits a netloc), so that an unencoded "@" in it ("ab@cd") is hidden whole (an "@"
# in the query string may hide more than the password: never less); and ``password=`` in
# the query string (libpq also takes it there). "scheme:/user:pw@..." (a typo) is covered.
_PASSWORD_RE = re.compile(
    r"^(?P<head>[a-zA-Z][\w+.-]*:/*[^:/]*:)(?P<pw>.*)(?P<tail>@[^@/?#]*(?:[/?#].*)?)$",
    re.DOTALL,
)
# In free text (an error message): a URL's password, up to the last "@" of its token.
_TEXT_PASSWORD_RE = re.compile(r"(://[^:/\s]*:)\S*@")
_SCHEME_TYPO_RE = re.compile(rf"^({'|'.join(_RDB_SCHEMES)})(\+\w+)?:", re.IGNORECASE)
_QUERY_PASSWORD_RE = re.compile(r"(?P<head>[?&]password=)(?P<pw>[^&#]*)", re.IGNORECASE)

CONNECT_TIMEOUT_S = 5  # PostgreSQL: seconds to wait for a server, unless the URL says
_CREATE_RETRIES = 5  # tries again when another worker was creating the tables at that moment
_PG_DRIVERS = ("psycopg2", "psycopg")  # libpq drivers, preferred in this order
_LIBPQ_DRIVERS = ("psycopg2", "psycopg", "psycopg2cffi")  # they take connect_timeout
_PG_URL_FORM = "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
_PG_INSTALL = "pip install 'tunecb[postgres]'"


def redact(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (for messages and files).

    >>> redact("postgresql+psycopg2://u:p%40ss@h:5432/db?password=x&sslmode=require")
    'postgresql+psycopg2://u:***@h:5432/db?password=***&sslmode=require'
    """
    url = _PASSWORD_RE.sub(r"\g<head>***\g<tail>", url)
    return _QUERY_PASSWORD_RE.sub(r"\g<head>***", url)


def redact_text(text: str) -> str:
    """``text`` (an error message) with the password of any URL in it replaced by ``***``.

    >>> redact_text("could not connect to postgresql://u:pw@h/db")
    'could not connect to postgresql://u:***@h/db'
    >>> redact_text("no host postgresql://u:ab@cd@h/db")
    'no host postgresql://u:***@h/db'
    """
    text = _TEXT_PASSWORD_RE.sub(r"\1***@", text)
    return re.sub(r"([?&]password=)[^&#\s'\"]*", r"\1***", text, flags=re.IGNORECASE)


def hide_password(text: str, url: str | None) -> str:
    """``text`` (a message, a traceback) with the password of ``url`` hidden wherever it
    appears: in URLs (:func:`redact_text`), as is, percent-decoded, and the parts of a
    password with an unencoded ``@`` (a driver that split it there may echo one as a host).

    >>> url = "postgresql://u:abc@cde@h/db"
    >>> hide_password(f"host 'cde@h' not found; postgresql://u:abc@cde@h/db", url)
    "host '***@h' not found; postgresql://u:***@h/db"
    """
    from urllib.parse import unquote

    text = redact_text(text)
    for match in (_PASSWORD_RE.match(url or ""), _QUERY_PASSWORD_RE.search(url or "")):
        if match and match.group("pw"):
            raw = match.group("pw")
            secrets = {raw, unquote(raw)} | {p for p in re.split("[@:]", raw) if len(p) >= 3}
            for secret in sorted(secrets, key=len, reverse=True):
                text = text.replace(secret, "***")
    return text


def _quote_at(url: str) -> str:
    """``url`` with an unencoded ``@`` in its password percent-encoded, so that the driver
    takes the password whole and the host after the last ``@`` (SQLAlchemy would cut the
    password at the first ``@`` and look for a host named after the rest of it).

    >>> _quote_at("postgresql://u:ab@cd@h/db")
    'postgresql://u:ab%40cd@h/db'
    """
    match = _PASSWORD_RE.match(url)
    if not match or "@" not in match.group("pw"):
        return url
    return match.group("head") + match.group("pw").replace("@", "%40") + match.group("tail")


def identity(storage: Any) -> str:
    """What tells a storage from another in this process, whichever handle opened it (each
    worker thread of a Dask worker opens its own): a journal or SQLite file's real path, a
    database server's URL; an in-memory storage (SQLite's ``:memory:`` too) is its object.

    >>> from optuna.storages import InMemoryStorage, RDBStorage
    >>> one = InMemoryStorage()
    >>> identity(one) == identity(one) != identity(InMemoryStorage())
    True
    >>> a, b = RDBStorage("sqlite://"), RDBStorage("sqlite://")  # two databases
    >>> identity(a) != identity(b)
    True
    """
    backend = getattr(storage, "_backend", storage)  # JournalStorage's, _CachedStorage's
    path = getattr(backend, "_file_path", None)
    if isinstance(path, str | os.PathLike):
        return f"journal:{os.path.realpath(path)}"
    url = getattr(getattr(backend, "engine", None), "url", None)
    if url is None:
        return f"object:{id(backend)}"
    if url.get_backend_name() != "sqlite":
        return server_identity(url)
    if url.database in (None, "", ":memory:"):
        return f"object:{id(backend)}"
    return f"sqlite:{os.path.realpath(url.database)}"


def server_identity(url: Any) -> str:
    """A database server's URL (a SQLAlchemy ``URL``) as :func:`identity` tells it: written
    in any of the spellings that reach the same database the same way. The driver does not
    count (``postgresql+psycopg2://`` is ``postgresql://``), nor the password, nor the host's
    case (DNS names have none); a PostgreSQL URL without a port has libpq's (``PGPORT``, else
    5432). ``localhost`` and ``127.0.0.1`` stay two: ``localhost`` may be ``::1``, where
    another server can listen.

    >>> from sqlalchemy.engine import make_url
    >>> server_identity(make_url("postgresql+psycopg2://u:pw@DB.example/tunecb"))
    'postgresql://u@db.example:5432/tunecb'
    """
    backend = url.get_backend_name()
    url = url.set(drivername=backend)._replace(password=None)  # set() cannot clear a field
    if url.host:
        url = url.set(host=url.host.lower())
    if backend == "postgresql" and url.port is None:
        port = os.environ.get("PGPORT", "")
        url = url.set(port=int(port) if port.isdigit() else 5432)
    return url.render_as_string(hide_password=False)


def is_journal_url(url: str) -> bool:
    return url.startswith("journal:") or "://" not in url


def open_storage(
    url: str | None,
    study_dir: Path,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
) -> optuna.storages.BaseStorage:
    """Open ``url`` (an Optuna RDB URL, ``journal:PATH`` or a journal file path), or the
    embedded journal file in ``study_dir`` when ``url`` is ``None``.

    ``heartbeat_interval`` and ``grace_period`` (seconds) turn on Optuna's heartbeat, which
    lets a worker fail the trials of workers that died; only RDB storages have it.

    Raises :class:`StorageError` naming the storage (password redacted) and the fix, within
    seconds: a PostgreSQL server is given :data:`CONNECT_TIMEOUT_S` to answer, unless the URL
    sets ``connect_timeout``.
    """
    heartbeat = _heartbeat_kwargs(heartbeat_interval, grace_period)
    typo = _SCHEME_TYPO_RE.match(url or "")
    if typo and "://" not in url:  # "postgresql:/host/db" is no journal file path
        raise StorageError(
            f"--storage {redact(url)!r}: malformed URL (no '//' after {typo.group(1)}:); "
            f"expected e.g. {_PG_URL_FORM} or sqlite:///study.db"
        )
    if url is None or is_journal_url(url):
        shown = str(study_dir / JOURNAL_NAME) if url is None else url
        if heartbeat:
            raise StorageError(
                f"storage {shown!r} is a journal file, which has no heartbeat; use an RDB "
                "storage URL such as postgresql://user:pass@host/db for heartbeats"
            )
        if url is None:
            return _journal(study_dir / JOURNAL_NAME, shown=shown)
        return _journal(Path(url.removeprefix("journal:").removeprefix("//")), shown=shown)
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    if scheme not in _RDB_SCHEMES:
        raise StorageError(
            f"--storage {redact(url)!r}: unknown scheme {scheme!r}; use an Optuna storage URL "
            "such as sqlite:///study.db, postgresql://user:pass@host/db or a .journal file path"
        )
    from tunecb.storage.reconnect import ReconnectingRDBStorage

    engine_kwargs = None
    target = _quote_at(url)
    if scheme in ("postgresql", "postgres"):
        target, engine_kwargs = _postgres(target)
    for attempt in range(_CREATE_RETRIES + 1):
        try:
            with warnings.catch_warnings():
                # heartbeat_interval is "experimental" in Optuna; we ask for it on purpose.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # Its calls wait out a restart of the server (tunecb.storage.reconnect).
                return ReconnectingRDBStorage(target, engine_kwargs=engine_kwargs, **heartbeat)
        except Exception as exc:  # sqlalchemy raises many kinds; all mean "cannot open"
            if attempt < _CREATE_RETRIES and _creation_race(exc):
                # Workers starting together on an empty database all create Optuna's tables;
                # the losers see "already exists": by now the tables are there, so try again.
                time.sleep(random.uniform(0.1, 0.3) * (attempt + 1))
                continue
            if scheme in ("postgresql", "postgres"):
                reason = _postgres_reason(exc, target, url)
            else:
                reason = f"cannot open the storage: {_scrub(_first_line(exc), url)}"
            raise StorageError(f"--storage {redact(url)!r}: {reason}") from exc
    raise AssertionError("unreachable")


def study_storage(
    url: str | None, study_dir: Path, heartbeat: int | None, reconnect_s: float | None = None
) -> Any:
    """The storage of a search: with a heartbeat every ``heartbeat`` seconds when it is a
    database (so that the trials of a machine that died are found and run again by the
    others, after three missed beats); the journal needs none (see
    :mod:`tunecb.execution.processes`). A database's calls wait up to ``reconnect_s``
    (``--reconnect``) for a server that went away (:mod:`tunecb.storage.reconnect`)."""
    beat = {"heartbeat_interval": heartbeat, "grace_period": 3 * (heartbeat or 0)}
    journal = url is None or is_journal_url(url) or not heartbeat
    storage = open_storage(url, study_dir, **({} if journal else beat))
    if reconnect_s is not None and hasattr(storage, "reconnect_s"):
        storage.reconnect_s = reconnect_s
    return storage


def _creation_race(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", None) or exc).lower()
    return "already exists" in text or "duplicate key value violates unique" in text


def _heartbeat_kwargs(interval: int | None, grace: int | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for name, value in (("heartbeat_interval", interval), ("grace_period", grace)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise StorageError(f"{name} must be a positive number of seconds, got {value!r}")
        kwargs[name] = value
    if "grace_period" in kwargs and "heartbeat_interval" not in kwargs:
        raise StorageError("grace_period needs heartbeat_interval: pass both, or neither")
    if kwargs:
        # A trial whose heartbeat stopped is failed and queued again with its parameters.
        from tunecb.storage.stale import on_stale

        kwargs["heartbeat_stale_trial_callback"] = on_stale
    return kwargs


def _postgres(url: str) -> tuple[str, dict[str, Any] | None]:
    """Check a PostgreSQL URL without connecting; return the URL to open (with an installed
    driver) and the engine arguments (a connect timeout)."""
    from sqlalchemy.engine import make_url

    shown = redact(url)
    try:
        parsed = make_url(url)  # raises on a port that is not a number, too
    except Exception as exc:
        bad_port = re.search(r"invalid literal for int\(\) with base 10: (.*)$", str(exc))
        what = (
            f"port {bad_port.group(1)} is not a number"
            if bad_port
            else _scrub(_first_line(exc), url)
        )
        raise StorageError(
            f"--storage {shown!r}: malformed URL ({what}); expected {_PG_URL_FORM}"
        ) from exc
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise StorageError(
            f"--storage {shown!r}: port {parsed.port} is out of range; expected {_PG_URL_FORM} "
            "(PostgreSQL's default port is 5432)"
        )
    if not parsed.database:
        raise StorageError(
            f"--storage {shown!r}: no database name; end the URL with /DATABASE, "
            f"as in {_PG_URL_FORM}"
        )
    driver = parsed.drivername.partition("+")[2]
    if not driver:  # pick an installed libpq driver (SQLAlchemy's default varies by version)
        driver = next((d for d in _PG_DRIVERS if _driver_state(d) == "installed"), None)
        if driver is None:
            raise StorageError(
                f"--storage {shown!r}: no PostgreSQL driver is installed; {_PG_INSTALL}"
            )
    state = _driver_state(driver)
    if state == "unknown":
        raise StorageError(
            f"--storage {shown!r}: SQLAlchemy knows no PostgreSQL driver {driver!r}; use "
            f"postgresql+psycopg2://... ({_PG_INSTALL})"
        )
    if state == "missing":
        fix = _PG_INSTALL if driver == "psycopg2" else f"install {driver}, or {_PG_INSTALL}"
        raise StorageError(
            f"--storage {shown!r}: the PostgreSQL driver {driver!r} is not installed; {fix}"
        )
    parsed = parsed.set(drivername=f"postgresql+{driver}")
    engine_kwargs = None
    if driver in _LIBPQ_DRIVERS and "connect_timeout" not in parsed.query:
        engine_kwargs = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return parsed.render_as_string(hide_password=False), engine_kwargs


def _driver_state(driver: str) -> str:
    """``installed``, ``missing`` (SQLAlchemy knows it, its module does not import) or
    ``unknown``."""
    from sqlalchemy.engine import make_url

    try:
        dialect = make_url(f"postgresql+{driver}://").get_dialect()
    except Exception:
        return "unknown"
    load = getattr(dialect, "import_dbapi", None) or dialect.dbapi  # SQLAlchemy 2 / 1.4
    try:
        load()
    except ImportError:
        return "missing"
    return "installed"


def _postgres_reason(exc: BaseException, target: str, url: str) -> str:
    """A short what-and-fix for an error of connecting to PostgreSQL or creating tables
    (``target`` is the URL opened, ``url`` the one given: its password is kept out)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(target)
    host = parsed.host or "the local socket"
    where = f"{host}:{parsed.port or 5432}" if parsed.host else host
    user, database = parsed.username, parsed.database
    timeout = parsed.query.get("connect_timeout", CONNECT_TIMEOUT_S)
    text = str(getattr(exc, "orig", None) or exc)
    low = text.lower()
    gist = _scrub(_driver_line(text), url)
    if isinstance(exc, ImportError):
        return f"the PostgreSQL driver is not installed; {_PG_INSTALL}"
    if "password authentication failed" in low:
        return (
            f"password authentication failed for user {user!r} at {where}; check the user and "
            "password in the URL (percent-encode special characters: @ as %40, : as %3A)"
        )
    if "no password supplied" in low:
        return (
            f"the server at {where} wants a password for user {user!r}; set PGPASSWORD, or "
            "add a line HOST:PORT:DATABASE:USER:PASSWORD to ~/.pgpass (chmod 600), rather than "
            "writing it in the URL (ps and the shell's history show it)"
        )
    if re.search(r'role ".*" does not exist', low):
        return f"user {user!r} does not exist at {where}; fix the user in the URL or create it"
    if re.search(r'database ".*" does not exist', low):
        return (
            f"database {database!r} does not exist at {where}; create it "
            f"(CREATE DATABASE {database}) or fix the name in the URL"
        )
    if "could not translate host name" in low or "name or service not known" in low:
        return f"host {host!r} not found; check the host name in the URL"
    if "connection refused" in low:
        return (
            f"nothing accepts connections at {where}; check the host and port, and that "
            "PostgreSQL is running there and listening on that address"
        )
    if "timeout expired" in low or "timed out" in low:
        return (
            f"no answer from {where} within {timeout} s; check the host, port and firewall "
            "(or raise connect_timeout=SECONDS in the URL)"
        )
    if "no route to host" in low or "network is unreachable" in low:
        return f"cannot reach {where} (no route); check the host in the URL and the network"
    if "no pg_hba.conf entry" in low:
        return (
            f"the server at {where} does not accept user {user!r} from this machine "
            "(no pg_hba.conf entry); ask its administrator to allow it, or check sslmode"
        )
    if "permission denied" in low:
        return (
            f"user {user!r} may not create Optuna's tables in database {database!r} at "
            f"{where} ({gist}); use a database the user owns, or GRANT it "
            "CONNECT and CREATE ON SCHEMA public"
        )
    if "too many clients" in low or "too many connections" in low:
        return f"the server at {where} has no free connection slot; try again later"
    if "starting up" in low or "shutting down" in low or "recovery mode" in low:
        return f"the server at {where} is not ready ({gist}); try again later"
    return f"cannot open the storage at {where}: {gist}"


def _driver_line(text: str) -> str:
    """The gist of a libpq / SQLAlchemy message: its first line, without the prefixes."""
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    line = re.sub(r"^\([\w.]+\)\s*", "", line)  # "(psycopg2.OperationalError) "
    line = re.sub(r"^connection to server .*? failed:\s*", "", line)
    line = re.sub(r"^(FATAL|ERROR):\s*", "", line)
    return line[:200]


def _scrub(text: str, url: str) -> str:
    """``text`` (a driver's message) on one line, with the password of ``url`` (raw or
    percent-decoded) hidden."""
    return hide_password(" ".join(text.split()), url)


def _journal(path: Path, shown: str) -> optuna.storages.BaseStorage:
    from optuna.storages.journal import JournalStorage

    if path.exists() and not path.is_file():
        raise StorageError(f"storage {shown!r} is not a file; point --storage at a journal file")
    from tunecb.storage.journal import raise_if_torn

    raise_if_torn(path)  # a record half-written by a killed process: say how to repair
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A lock that dies with its holder (flock), not Optuna's symlink, which a killed
        # writer leaves behind for 30 s; on an absolute path (a relative one breaks links).
        absolute = str(path.absolute())
        storage = JournalStorage(_Journal(absolute, lock_obj=_lock(absolute)))
        journal_snapshot.refresh(storage)  # the next opening replays from here
        return storage
    except Exception as exc:
        raise StorageError(
            f"storage {shown!r}: cannot open the journal: {_first_line(exc)}"
        ) from exc


_NO_FSYNC_OPS = frozenset({7, 8, 9})  # intermediate value, trial user / system attribute


class _Journal(journal_snapshot.SnapshotJournal):
    """Optuna's journal file, but ``fsync`` only for records that change a study or a trial's
    state (Optuna fsyncs every record, 30 reports and 20 attributes a trial: 0.55 ms a
    record against 0.11 ms on this machine's disk, far more on network disks). Without
    ``fsync`` a record is still in the file for every other process and survives the
    writer being killed; only a machine that loses power can lose it, and the ``fsync`` of
    the trial's next state change (its end) makes every earlier record durable too.

    A full disk cuts the file back to its last whole record (still under the lock) and
    raises :class:`~tunecb.errors.DiskFull`: a half-written record would break the study
    for every later reader."""

    fsync_under_lock = False  # True: as before benchmarks/scale.py (its "before" runs)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        import json

        from optuna.storages.journal._file import get_lock_file

        durable = any(log.get("op_code") not in _NO_FSYNC_OPS for log in logs)
        text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
        data = memoryview(text.encode("utf-8"))
        path = Path(self._file_path)
        needed = len(data)
        with space_for(path, lambda: needed), open(path, "ab", buffering=0) as f:
            with get_lock_file(self._lock):
                start = f.seek(0, os.SEEK_END)
                try:
                    while data:  # an unbuffered write may write part of it
                        data = data[f.write(data) :]
                    if durable and self.fsync_under_lock:
                        os.fsync(f.fileno())
                except OSError:
                    with contextlib.suppress(OSError):
                        f.truncate(start)
                    raise
            # The record is whole in the file for every reader; its fsync need not keep the
            # other writers waiting (with 50 writers the lock, held across an fsync of 5 to
            # 25 ms, made a report wait 0.2 s at the median: benchmarks/scale.py).
            if durable and not self.fsync_under_lock:
                os.fsync(f.fileno())


def _lock(path: str) -> Any:
    """tunecb's journal lock where ``flock`` exists, else Optuna's default."""
    try:
        import fcntl  # noqa: F401
    except ImportError:  # not POSIX
        return None
    from tunecb.storage.flock import FlockLock

    return FlockLock(path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
