"""PostgreSQL advisory locks: mutual exclusion across every process and machine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text

from traza.db.engine import get_engine

CONVERSATION = 7301  # one graph run or delivery per conversation at a time


@asynccontextmanager
async def advisory_lock(namespace: int, key: int) -> AsyncIterator[None]:
    """Hold `pg_advisory_lock(namespace, key)` on a connection of its own."""
    async with get_engine().connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("SELECT pg_advisory_lock(:ns, :k)"), {"ns": namespace, "k": key})
        try:
            yield
        finally:
            await conn.execute(
                text("SELECT pg_advisory_unlock(:ns, :k)"), {"ns": namespace, "k": key}
            )
