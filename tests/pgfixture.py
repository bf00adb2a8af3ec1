"""A real, throwaway PostgreSQL server for tests (no mocks).

Register with ``pytest_plugins = ["pgfixture"]`` in tests/conftest.py (or ``-p pgfixture``).

- ``postgres_server`` (session): ``initdb`` a cluster in a temporary folder, password auth
  (scram-sha-256) for the superuser ``tunecb`` / ``tunecb-test``, listening on 127.0.0.1 at a
  free port only (its unix socket in that folder); stopped and removed at the end.
- ``postgres_url`` (function): a fresh database per test, dropped afterwards; the fixture's
  value is ``postgresql+psycopg2://tunecb:tunecb-test@127.0.0.1:<port>/<db>``.

The server binaries come from Debian's ``postgresql`` package (``/usr/lib/postgresql/*/bin``;
``.ci/run`` installs it) or from ``PATH``. Without them (or without psycopg2) the tests that
need PostgreSQL are skipped on a developer's machine, and FAIL in CI (``CI`` set), so CI can
never pass without running them.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_USER = "tunecb"
PG_PASSWORD = "tunecb-test"
PG_HOST = "127.0.0.1"
START_TIMEOUT_S = 60


@dataclass(frozen=True)
class PostgresServer:
    """A running test cluster."""

    host: str
    port: int
    user: str
    password: str
    root: Path
    cluster: Cluster | None = None  # to stop and start it (a restart test)

    def url(self, database: str, password: str | None = None) -> str:
        pw = self.password if password is None else password
        return f"postgresql+psycopg2://{self.user}:{pw}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres"):
        """An autocommit psycopg2 connection (for CREATE / DROP DATABASE)."""
        import psycopg2

        conn = psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database,
            connect_timeout=10,
        )
        conn.autocommit = True
        return conn


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((PG_HOST, 0))
        return sock.getsockname()[1]


def _unavailable(reason: str):
    """Skip on a developer's machine; fail loudly in CI."""
    if os.environ.get("CI"):
        pytest.fail(
            f"PostgreSQL tests cannot run in CI: {reason}. .ci/run installs Debian's "
            "postgresql package and psycopg2-binary (the [test] extra); see its output",
            pytrace=False,
        )
    pytest.skip(f"PostgreSQL tests skipped: {reason} (apt-get install postgresql)")


def find_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: Debian's newest, else the one on PATH."""

    def version(path: str) -> tuple[int, ...]:
        found = re.search(r"/postgresql/([\d.]+)/bin/", path)
        return tuple(int(p) for p in found.group(1).split(".")) if found else ()

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if candidates:
        bindir = Path(candidates[-1]).parent
    elif shutil.which("initdb"):
        bindir = Path(os.path.realpath(shutil.which("initdb"))).parent
    else:
        return None
    return bindir if (bindir / "pg_ctl").is_file() else None


def _run(argv: list[str], as_user: str | None, cwd: Path, log: Path) -> int:
    """Run ``argv`` (as ``as_user`` when given), its output appended to ``log``."""
    if as_user is not None:
        argv = ["runuser", "-u", as_user, "--", *argv]
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        # No pipes: pg_ctl's postmaster outlives the call and would hold a pipe open.
        return subprocess.run(
            argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=120
        ).returncode


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_when_gone(pid: int, stop: list[str], as_user: str | None, root: Path):
    """A watchdog in a session of its own: the server outlives a test process that is
    killed (pg_ctl detaches it, and no teardown runs), so when ``pid`` is gone it stops the
    server and removes its folder. The fixture kills it when it stops the server itself."""
    import shlex

    if as_user is not None:
        stop = ["runuser", "-u", as_user, "--", *stop]
    script = (
        f"while kill -0 {pid} 2>/dev/null; do sleep 1; done; "
        f"{shlex.join(stop)} >/dev/null 2>&1; rm -rf {shlex.quote(str(root))}"
    )
    return subprocess.Popen(
        ["sh", "-c", script], start_new_session=True, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


class ServerUnavailable(RuntimeError):
    """No server binaries here, or no user to run them as (a skip, or a failure in CI)."""


class ServerFailed(RuntimeError):
    """``initdb`` or ``pg_ctl start`` failed; the message ends with the logs' tails."""


@dataclass(frozen=True)
class Cluster:
    """A server started by :func:`running_server`: its binaries, folders and port."""

    bindir: Path
    data: Path
    root: Path
    port: int
    as_user: str | None

    def ctl(self, *args: str) -> int:
        """``pg_ctl -D DATA ARGS`` (as the server's user), its output in ``setup.log``."""
        argv = [str(self.bindir / "pg_ctl"), "-D", str(self.data), *args]
        return _run(argv, self.as_user, self.root, self.root / "setup.log")

    def start(self) -> int:
        log = str(self.root / "server.log")
        return self.ctl("-l", log, "-w", "-t", str(START_TIMEOUT_S), "start")

    def stop(self) -> int:
        """Stop at once (connections cut, as a crash would)."""
        return self.ctl("-m", "immediate", "-w", "stop")


@contextlib.contextmanager
def running_server(
    max_connections: int = 100, synchronous_commit: str = "off", extra_conf: str = ""
) -> Iterator[Cluster]:
    """A throwaway server (see the module docstring), stopped and its folder removed when the
    block ends, and by a watchdog if this process is killed first. Shared by the fixture and
    ``benchmarks/scale_pg.py``. Raises :class:`ServerUnavailable` or :class:`ServerFailed`."""
    bindir = find_bindir()
    if bindir is None:
        raise ServerUnavailable("no initdb/pg_ctl (looked in /usr/lib/postgresql/*/bin and PATH)")
    # PostgreSQL refuses to run as root: as root, run it as the postgres system user.
    as_user = None
    if os.geteuid() == 0:
        as_user = "postgres"
        try:
            owner = pwd.getpwnam(as_user)
        except KeyError as exc:
            raise ServerUnavailable(
                "running as root and there is no 'postgres' system user"
            ) from exc
    root = Path(tempfile.mkdtemp(prefix="tunecb-pg-"))
    data, log, setup_log = root / "data", root / "server.log", root / "setup.log"
    started, watchdog = False, None
    try:
        pwfile = root / "pwfile"
        pwfile.write_text(PG_PASSWORD + "\n")
        if as_user is not None:
            for path in (root, pwfile):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        code = _run(
            [
                str(bindir / "initdb"),
                "-D", str(data),
                "-U", PG_USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "-E", "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            as_user, root, setup_log,
        )  # fmt: skip
        if code != 0:
            raise ServerFailed(f"initdb failed ({code}):\n{_tail(setup_log)}")
        (data / "pg_hba.conf").write_text(
            "local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n"
        )
        base_conf = (data / "postgresql.conf").read_text()
        for _attempt in range(3):  # the free port may be taken between asking and binding
            port = free_port()
            (data / "postgresql.conf").write_text(
                base_conf + f"\nlisten_addresses = '{PG_HOST}'\nport = {port}\n"
                f"unix_socket_directories = '{root}'\n"
                f"fsync = off\nsynchronous_commit = {synchronous_commit}\n"
                f"full_page_writes = off\nmax_connections = {max_connections}\n{extra_conf}"
            )
            cluster = Cluster(bindir, data, root, port, as_user)
            if cluster.start() == 0:
                started = True
                break
            if "already in use" not in _tail(log, 50):
                break
        if not started:
            raise ServerFailed(
                f"pg_ctl start failed:\n{_tail(setup_log)}\n--- server log ---\n{_tail(log)}"
            )
        stop = [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
        watchdog = _stop_when_gone(os.getpid(), stop, as_user, root)
        yield cluster
    finally:
        if watchdog is not None:
            watchdog.kill()
            watchdog.wait()
        if started:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                Cluster(bindir, data, root, 0, as_user).stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL cluster of our own on 127.0.0.1 (see the module docstring)."""
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        _unavailable("psycopg2 is not installed (pip install 'tunecb[postgres]')")
    try:
        with running_server() as cluster:
            yield PostgresServer(PG_HOST, cluster.port, PG_USER, PG_PASSWORD, cluster.root, cluster)
    except ServerUnavailable as exc:
        _unavailable(str(exc))
    except ServerFailed as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer):
    """A fresh, empty database on the test server; its URL (with the password)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = postgres_server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    yield postgres_server.url(name)
    conn = postgres_server.connect()
    try:
        with conn.cursor() as cur:  # WITH (FORCE) ends the test's pooled connections first
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()
