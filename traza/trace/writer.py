"""Where the trace is written: one row per step, with actor, reason, duration, checkpoint.

Actors are `customer`, `bot:<name>`, `human:<agent>` or `system:<name>`. Every event
outside the hot paths is written here: one at a time (`record`) or a turn's buffer at
once (`write_events`). Three hot paths write their event inside their own statement, so
the row and its event commit in one round trip: the webhook's store
(`traza.ingest.store`, a message and a status), the reply queued by a turn
(`traza.outbound.outbox.queue_reply`) and a send's outcome (`traza.outbound.sender`).
They write the same columns, with kinds from `traza.trace.kinds`.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from traza.db.engine import run
from traza.db.models import TraceEvent

CUSTOMER = "customer"


def bot(name: str) -> str:
    """Actor name of a bot."""
    return f"bot:{name}"


def human(agent: str) -> str:
    """Actor name of a human agent."""
    return f"human:{agent}"


def system(name: str) -> str:
    """Actor name of an internal system or job."""
    return f"system:{name}"


RECORD = text(
    "INSERT INTO trace_events (conversation_id, kind, actor, data, duration_ms, message_id, "
    "thread_id, step, llm) VALUES (:conversation_id, :kind, :actor, CAST(:data AS jsonb), "
    ":duration_ms, :message_id, :thread_id, :step, :llm)"
)


async def write_events(
    session: AsyncSession | AsyncConnection, events: list[dict[str, Any]]
) -> None:
    """Write many events (dicts of `TraceEvent` columns) in the caller's transaction, one INSERT."""
    if events:
        await session.execute(insert(TraceEvent), events)


async def record(
    db: AsyncSession | AsyncConnection | psycopg.AsyncConnection[Any],
    *,
    conversation_id: int | None,
    kind: str,
    actor: str,
    data: dict[str, Any] | None = None,
    duration_ms: float | None = None,
    message_id: int | None = None,
    thread_id: str | None = None,
    step: int | None = None,
    llm: bool = False,
) -> None:
    """Append one event to the conversation's trace (in the caller's transaction).

    `db`: a SQLAlchemy session or connection, or a `direct()` psycopg connection.
    """
    params = {
        "conversation_id": conversation_id,
        "kind": kind,
        "actor": actor,
        "data": json.dumps(data or {}),
        "duration_ms": duration_ms,
        "message_id": message_id,
        "thread_id": thread_id,
        "step": step,
        "llm": llm,
    }
    if isinstance(db, psycopg.AsyncConnection):
        await run(db, RECORD, params)
    else:
        await db.execute(RECORD, params)
