"""A throwaway PostgreSQL server for ``benchmarks/scale.py``: started the way the tests start
theirs (``tests/pgfixture.py``: initdb in a temporary folder, password auth, 127.0.0.1 only,
no fsync), with room for hundreds of connections; restartable mid-run; stopped at the end,
and by a watchdog when the benchmark is killed."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from common import ROOT  # noqa: F401  (puts tests/ on sys.path)
from pgfixture import (
    PG_HOST,
    PG_PASSWORD,
    PG_USER,
    _run,
    _stop_when_gone,
    _tail,
    find_bindir,
    free_port,
)


@dataclass
class Server:
    bindir: Path
    data: Path
    root: Path
    port: int
    as_user: str | None

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://{PG_USER}:{PG_PASSWORD}@{PG_HOST}:{self.port}/{database}"

    def ctl(self, *args: str) -> int:
        argv = [str(self.bindir / "pg_ctl"), "-D", str(self.data), *args]
        return _run(argv, self.as_user, self.root, self.root / "setup.log")

    def restart(self) -> int:
        """Stop at once (connections cut, as a crash or a failover would) and start again."""
        log = str(self.root / "server.log")
        code = self.ctl("-m", "immediate", "-w", "stop")
        return code or self.ctl("-l", log, "-w", "-t", "60", "start")

    def create_database(self, name: str) -> str:
        import psycopg2

        conn = psycopg2.connect(
            host=PG_HOST, port=self.port, user=PG_USER, password=PG_PASSWORD, dbname="postgres"
        )
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)


@contextlib.contextmanager
def server(max_connections: int = 1000) -> Iterator[Server]:
    """A running server, stopped and removed when the block ends (even on an exception)."""
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("postgresql: no initdb/pg_ctl (apt-get install postgresql)")
    as_user = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="tunecb-scale-pg-"))
    data = root / "data"
    watchdog, started = None, False
    try:
        (root / "pwfile").write_text(PG_PASSWORD + "\n")
        if as_user is not None:
            owner = pwd.getpwnam(as_user)
            for path in (root, root / "pwfile"):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        argv = [str(bindir / "initdb"), "-D", str(data), "-U", PG_USER,
                f"--pwfile={root / 'pwfile'}", "--auth=scram-sha-256", "-E", "UTF8",
                "--locale=C", "--no-sync", "--no-instructions"]  # fmt: skip
        if _run(argv, as_user, root, root / "setup.log") != 0:
            raise SystemExit(f"initdb failed:\n{_tail(root / 'setup.log')}")
        (data / "pg_hba.conf").write_text(
            "local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n"
        )
        port = free_port()
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nlisten_addresses = '{PG_HOST}'\nport = {port}\n"
                # fsync off: a crash of the server's processes (the restart) loses nothing;
                # synchronous_commit on: no commit is acknowledged before it is in the WAL
                f"unix_socket_directories = '{root}'\nfsync = off\nsynchronous_commit = on\n"
                f"full_page_writes = off\nmax_connections = {max_connections}\n"
                "shared_buffers = 128MB\n"
            )
        pg = Server(bindir, data, root, port, as_user)
        if pg.ctl("-l", str(root / "server.log"), "-w", "-t", "60", "start") != 0:
            raise SystemExit(f"pg_ctl start failed:\n{_tail(root / 'server.log')}")
        started = True
        stop = [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
        watchdog = _stop_when_gone(os.getpid(), stop, as_user, root)
        yield pg
    finally:
        if watchdog is not None:
            watchdog.kill()
            watchdog.wait()
        if started:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                Server(bindir, data, root, 0, as_user).ctl("-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
