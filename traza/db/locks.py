"""PostgreSQL advisory locks: mutual exclusion across every process and machine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text

from traza.db.engine import direct, run

LOCK = text("SELECT pg_advisory_lock(:ns, :k)")
UNLOCK = text("SELECT pg_advisory_unlock(:ns, :k)")

CONVERSATION = 7301  # one graph run or delivery per conversation at a time


@asynccontextmanager
async def advisory_lock(namespace: int, key: int) -> AsyncIterator[None]:
    """Hold `pg_advisory_lock(namespace, key)` on a connection of its own."""
    async with direct() as conn:
        await run(conn, LOCK, {"ns": namespace, "k": key})
        try:
            yield
        finally:
            # A lock held by a connection the server dropped went with it.
            if not conn.closed:
                await run(conn, UNLOCK, {"ns": namespace, "k": key})
