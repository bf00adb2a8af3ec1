"""A throwaway PostgreSQL server for ``benchmarks/scale.py``: started the way the tests start
theirs (``tests/pgfixture.py``'s :func:`running_server`: initdb in a temporary folder, password
auth, 127.0.0.1 only, no fsync, a watchdog that stops it when the benchmark is killed), with
room for hundreds of connections; restartable mid-run."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from common import ROOT  # noqa: F401  (puts tests/ on sys.path)
from pgfixture import (
    PG_HOST,
    PG_PASSWORD,
    PG_USER,
    Cluster,
    ServerFailed,
    ServerUnavailable,
    running_server,
)


@dataclass
class Server:
    cluster: Cluster

    def url(self, database: str) -> str:
        port = self.cluster.port
        return f"postgresql+psycopg2://{PG_USER}:{PG_PASSWORD}@{PG_HOST}:{port}/{database}"

    def dsn(self, database: str = "postgres") -> dict:
        """psycopg2's connection arguments for ``database``."""
        return {
            "host": PG_HOST, "port": self.cluster.port, "user": PG_USER,
            "password": PG_PASSWORD, "dbname": database,
        }  # fmt: skip

    def restart(self, down_s: float = 0.0) -> int:
        """Stop at once (connections cut, as a crash or a failover would), stay down for
        ``down_s`` seconds (a failover takes 30-60 s), and start again."""
        import time

        code = self.cluster.stop()
        time.sleep(down_s)
        return code or self.cluster.start()

    def create_database(self, name: str) -> str:
        import psycopg2

        conn = psycopg2.connect(
            host=PG_HOST,
            port=self.cluster.port,
            user=PG_USER,
            password=PG_PASSWORD,
            dbname="postgres",
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
    # fsync off: a crash of the server's processes (the restart) loses nothing;
    # synchronous_commit on: no commit is acknowledged before it is in the WAL
    try:
        with running_server(
            max_connections, synchronous_commit="on", extra_conf="shared_buffers = 128MB\n"
        ) as cluster:
            yield Server(cluster)
    except (ServerFailed, ServerUnavailable) as exc:
        raise SystemExit(f"postgresql: {exc}") from None
