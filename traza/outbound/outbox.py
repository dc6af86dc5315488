"""The outbox: graph nodes write what to say here; the sender job delivers it.

An outbound message is a `messages` row with `direction='out'`, unique on its
idempotency key, so a retried turn can never queue the same reply twice. Having queued
a row, the writer asks for its delivery (`request_delivery`): inside a turn the turn's
own job delivers right after the graph run; elsewhere a delivery job is queued.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from traza import trace
from traza.db import queue
from traza.trace import kinds
from traza.trace.buffer import current_scope

QUEUE = text(
    """
    INSERT INTO messages (conversation_id, direction, idempotency_key, type, content, text,
                          actor, status, channel)
    VALUES (:cid, 'out', :key, :type, CAST(:content AS jsonb), :text, :actor, 'queued',
            :channel)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id
    """
)


async def queue_message(
    session: AsyncSession | AsyncConnection,
    *,
    conversation_id: int,
    key: str,
    actor: str,
    kind: str,
    text_body: str,
    content: dict[str, Any] | None = None,
    channel: str = "whatsapp",
) -> int | None:
    """Queue one outbound message; None when this key was queued before."""
    message_id: int | None = (
        await session.execute(
            QUEUE,
            {
                "cid": conversation_id,
                "key": key,
                "type": kind,
                "content": json.dumps(content or {}),
                "text": text_body,
                "actor": actor,
                "channel": channel,
            },
        )
    ).scalar_one_or_none()
    if message_id is not None:
        await trace.record(
            session,
            conversation_id=conversation_id,
            kind=kinds.MESSAGE_QUEUED,
            actor=actor,
            data={"type": kind, "key": key},
            message_id=message_id,
        )
    return message_id


async def request_delivery(conversation_id: int, *, delay: float = 0) -> None:
    """Ask for the conversation's outbox to be delivered (after the caller commits).

    Inside a worker turn the turn's own job delivers right after the graph run (no
    second job); everywhere else a `deliver_outbox` job is queued.
    """
    scope = current_scope()
    if scope is not None:
        scope.deliveries.add(conversation_id)
        return
    await queue.defer_delivery(conversation_id, delay=delay)
