"""One place that knows how to reach the database, for every process and for Studio.

`database_dsn()` resolves `DATABASE_URL` or starts the embedded server; the engine,
the session factory, procrastinate's pool and the LangGraph checkpointer all use it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache

from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

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
            # Each running job may hold a conversation lock, a delivery lock and a
            # session at once: leave room so they never starve each other.
            max_overflow=settings.traza_db_pool_size + 3 * settings.traza_worker_concurrency,
            pool_pre_ping=False,
            connect_args={"prepare_threshold": settings.prepare_threshold()},
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


async def dispose_engine() -> None:
    """Close the pool (at shutdown, and between tests that change settings)."""
    global _engine, _sessionmaker
    if _engine is not None:
        await _engine.dispose()
    _engine = None
    _sessionmaker = None
