"""One place that knows how to reach the database, for every process and for Studio.

`database_dsn()` resolves `DATABASE_URL` or starts the embedded server; the engine,
the session factory, procrastinate's pool and the LangGraph checkpointer all use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql.elements import TextClause

from traza.db.embedded import start_embedded
from traza.settings import get_settings


@lru_cache(maxsize=1)
def database_dsn() -> str:
    """A libpq URI (`postgresql://…`) for the configured or embedded database."""
    settings = get_settings()
    if settings.database_url:
        return settings.database_url.replace("postgresql+psycopg://", "postgresql://").replace(
            "postgres://", "postgresql://", 1
        )
    return start_embedded(settings.traza_home)


def sqlalchemy_url(dsn: str | None = None) -> str:
    """The same DSN spelled for SQLAlchemy's psycopg 3 dialect."""
    return (dsn or database_dsn()).replace("postgresql://", "postgresql+psycopg://", 1)


_engine: AsyncEngine | None = None
_sessionmaker: async_sessionmaker[AsyncSession] | None = None


def get_engine() -> AsyncEngine:
    """The process-wide async engine, created on first use."""
    global _engine, _sessionmaker
    if _engine is None:
        settings = get_settings()
        _engine = create_async_engine(
            sqlalchemy_url(),
            pool_size=settings.traza_db_pool_size,
            # Room for the sessions of running jobs above the pool; the conversation locks
            # live in the `direct()` pool. Beyond this a request waits for a connection
            # instead of opening more than the server may accept ("too many clients").
            max_overflow=2 * settings.traza_worker_concurrency,
            pool_pre_ping=False,
            connect_args={"prepare_threshold": settings.prepare_threshold()},
            # Errors and logs never echo a statement's parameters: they carry wa_ids,
            # names, message texts and notes (psycopg's own errors never include them).
            hide_parameters=True,
        )
        _sessionmaker = async_sessionmaker(_engine, expire_on_commit=False)
    return _engine


def get_sessionmaker() -> async_sessionmaker[AsyncSession]:
    """The process-wide session factory (graph nodes and jobs use this)."""
    get_engine()
    assert _sessionmaker is not None
    return _sessionmaker


@asynccontextmanager
async def session_scope() -> AsyncIterator[AsyncSession]:
    """A session in one transaction: committed on success, rolled back on error."""
    async with get_sessionmaker()() as session, session.begin():
        yield session


@asynccontextmanager
async def autocommit() -> AsyncIterator[AsyncConnection]:
    """A connection where each statement commits on its own (one round trip per statement)."""
    async with get_engine().connect() as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT")


# The hot path's statements (each follow-up and turn runs a handful, one round trip each)
# go straight to psycopg: SQLAlchemy's async layer (greenlet switch, compile cache lookup,
# result wrapping, autocommit toggled on every checkout) costs more CPU than the driver.
_direct_pool: AsyncConnectionPool[Any] | None = None
_direct_ready: asyncio.Future[None] | None = None


@asynccontextmanager
async def direct() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A psycopg connection in autocommit mode whose rows have attribute access.

    Run SQLAlchemy `text()` statements on it with `run(conn, STATEMENT, params)`.
    """
    global _direct_pool, _direct_ready
    if _direct_pool is None:
        settings = get_settings()
        _direct_pool = AsyncConnectionPool(
            conninfo=database_dsn(),
            min_size=1,
            # Each running job may hold a conversation lock here while it runs statements.
            max_size=2 * settings.traza_worker_concurrency + 4,
            open=False,
            kwargs={
                "autocommit": True,
                "prepare_threshold": settings.prepare_threshold(),
                "row_factory": namedtuple_row,
            },
        )
        _direct_ready = asyncio.ensure_future(_direct_pool.open(wait=True))
    assert _direct_ready is not None
    await asyncio.shield(_direct_ready)
    async with _direct_pool.connection() as conn:
        yield conn


@lru_cache(maxsize=256)
def _psycopg_sql(statement: TextClause) -> str:
    """A `text()` statement in psycopg's placeholder style (`:name` → `%(name)s`)."""
    return str(statement.compile(dialect=psycopg_dialect.dialect()))  # type: ignore[no-untyped-call]


async def run(
    conn: psycopg.AsyncConnection[Any], statement: TextClause, params: dict[str, Any]
) -> psycopg.AsyncCursor[Any]:
    """Execute a SQLAlchemy `text()` statement on a `direct()` connection."""
    return await conn.execute(_psycopg_sql(statement), params)


async def drop_dead_connections() -> None:
    """After a database outage: close the idle connections the server dropped.

    The `direct()` pool checks each idle connection (dead ones are replaced); the
    engine's pool is replaced, so no session gets a connection of the old server.
    """
    if _direct_pool is not None and _direct_ready is not None and _direct_ready.done():
        await _direct_pool.check()
    if _engine is not None:
        await _engine.dispose()


async def dispose_engine() -> None:
    """Close the pools (at shutdown, and between tests that change settings)."""
    global _engine, _sessionmaker, _direct_pool, _direct_ready
    if _engine is not None:
        await _engine.dispose()
    _engine = None
    _sessionmaker = None
    if _direct_pool is not None:
        pool, ready = _direct_pool, _direct_ready
        _direct_pool = _direct_ready = None
        if ready is not None and not ready.done():
            ready.cancel()
        await pool.close()
