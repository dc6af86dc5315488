"""`traza db upgrade`: application tables, procrastinate's schema and the checkpointer's.

All three are idempotent, so every start of `traza serve` runs them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from procrastinate import App, PsycopgConnector

from traza.db.engine import database_dsn, sqlalchemy_url

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(dsn: str) -> Config:
    """An Alembic config pointing at traza's migrations and the given database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(dsn).replace("%", "%%"))
    return cfg


async def upgrade(dsn: str | None = None) -> None:
    """Bring the database to the latest schema: tables, job queue and checkpoints."""
    dsn = dsn or database_dsn()
    command.upgrade(alembic_config(dsn), "head")
    await _apply_procrastinate_schema(dsn)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await AsyncPostgresSaver(conn).setup()  # type: ignore[arg-type]


def server_warnings(dsn: str) -> list[str]:
    """What in the server's configuration will hurt traza, one line each."""
    warnings = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SHOW autovacuum").fetchone()
    if row and row[0] != "on":
        warnings.append(
            "PostgreSQL's autovacuum is off on this server: the job queue's finished jobs "
            "and stale planner statistics will slow every worker as tables grow. "
            "Turn it back on (autovacuum = on, PostgreSQL's default)."
        )
    return warnings


async def _apply_procrastinate_schema(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
        row = await cur.fetchone()
        if row and row[0]:
            return
    app = App(connector=PsycopgConnector(conninfo=dsn))
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
    log.info("applied procrastinate schema")
