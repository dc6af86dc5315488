"""PostgreSQL advisory locks: mutual exclusion across every process and machine.

The registry: every advisory-lock namespace traza uses, with its key and its holder.
A lock is `(namespace, key)`; a new one takes the next free number here, never a bare
number in a module. Migrations are frozen history and spell their numbers in SQL:
`tests/unit/test_locks.py` checks they still match.

Two namespaces are shared, for history: the assignment round (key 0) with the audit
chain (keys are conversation ids, never 0), and the metric fold's try-lock with the
audit anchor (the fold skips while an anchor is written; the next sweep folds).

Procrastinate's job locks (`conversation:<id>`, `send:<id>`) are strings, not advisory
locks: see `traza.db.queue`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from sqlalchemy import text

from traza.db.engine import direct, run

LOCK = text("SELECT pg_advisory_lock(:ns, :k)")
UNLOCK = text("SELECT pg_advisory_unlock(:ns, :k)")

CONVERSATION = 7301
"""One graph run or delivery per conversation at a time (key: the conversation id)."""
AUDIT_CHAIN = 7302
"""One link of a conversation's audit chain at a time (migration 0004's trigger)."""
ASSIGNMENT = AUDIT_CHAIN
"""One assignment round at a time, key 0: shares the chain's namespace (history)."""
AUDIT_ANCHOR = 7303
"""One audit anchor written at a time, key 0."""
METRIC_COMPACTION = AUDIT_ANCHOR
"""The metric fold's try-lock, key 0 (migration 0009): shares the anchor's (history)."""


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


def conversation_lock(conversation_id: int) -> AbstractAsyncContextManager[None]:
    """The conversation's advisory lock: one graph run or delivery at a time, on any machine."""
    return advisory_lock(CONVERSATION, conversation_id)
