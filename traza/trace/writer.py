"""Where the trace is written: one row per step, with actor, reason, duration, checkpoint.

Actors are `customer`, `bot:<name>`, `human:<agent>` or `system:<name>`. Statements that
must write an event in the same round trip as their own row (the webhook's store, the
sender) embed `EVENT_COLUMNS` in their CTE; everything else calls `record` or
`write_events`.
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
