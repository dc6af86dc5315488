"""Load what this turn's decisions need: contact, owner, handoff, recent messages, window."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from langgraph.runtime import Runtime
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from graphs.conversation.context import Context
from graphs.conversation.state import RECENT_WINDOW, ConversationState, InboundItem
from graphs.conversation.tracing import record_step, thread_id
from traza import trace
from traza.conversations import repository as repo
from traza.db.engine import session_scope
from traza.db.models import Message

CONTEXT_SQL = text(
    """
    SELECT c.id, c.owner, c.last_inbound_at, ct.profile_name, ct.locale, ct.opted_out_at,
           (SELECT h.id FROM handoffs h
             WHERE h.conversation_id = c.id AND h.status IN ('open', 'assigned')) AS handoff_id
      FROM conversations c JOIN contacts ct ON ct.id = c.contact_id
     WHERE c.thread_id = :thread_id
    """
)


async def load_context(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Read the conversation from the database (and store messages typed in Studio)."""
    started = time.perf_counter()
    tid = thread_id()
    async with session_scope() as session:
        row = (await session.execute(CONTEXT_SQL, {"thread_id": tid})).first()
        if row is None:  # a thread started from LangGraph Studio
            await repo.studio_conversation(session, tid)
            row = (await session.execute(CONTEXT_SQL, {"thread_id": tid})).one()
        turn = [await _stored(session, row.id, item) for item in state.get("turn") or []]
        last_inbound_at = row.last_inbound_at
        if any("id" not in i for i in state.get("turn") or []):
            last_inbound_at = datetime.now(UTC)
            await session.execute(
                text("UPDATE conversations SET last_inbound_at = :at WHERE id = :id"),
                {"at": last_inbound_at, "id": row.id},
            )
        # A retried turn may find messages a previous attempt already consumed.
        ids = [i["id"] for i in turn]
        if ids:
            fresh = set(
                (
                    await session.execute(
                        select(Message.id).where(
                            Message.id.in_(ids), Message.processed_at.is_(None)
                        )
                    )
                ).scalars()
            )
            turn = [i for i in turn if i["id"] in fresh]
        recent = await repo.recent_messages(
            session, row.id, limit=RECENT_WINDOW, before_id=min(ids) if ids else None
        )
    if turn:
        await record_step(
            conversation_id=row.id,
            kind="turn.started",
            actor=trace.bot(runtime.context.bot_name),
            data={"messages": [i["id"] for i in turn], "owner": row.owner},
            started=started,
        )
    return {
        "turn": turn,
        "conversation_id": row.id,
        "contact_name": row.profile_name,
        "language": row.locale or state.get("language") or "es",
        "owner": row.owner,
        "opted_out": row.opted_out_at is not None,
        "in_window": repo.in_service_window(last_inbound_at),
        "handoff_id": row.handoff_id,
        "recent": recent,
        "draft": None,
        "guardrail": None,
    }


async def _stored(session: AsyncSession, conversation_id: int, item: InboundItem) -> InboundItem:
    """Messages typed in Studio have no row yet: store them like webhook messages."""
    if "id" in item:
        return item
    message = Message(
        conversation_id=conversation_id,
        direction="in",
        type=item.get("type") or "text",
        text=item.get("text"),
        content={"body": item.get("text")},
        actor=trace.CUSTOMER,
        status="received",
        channel="studio",
    )
    session.add(message)
    await session.flush()
    await trace.record(
        session,
        conversation_id=conversation_id,
        kind="message.received",
        actor=trace.CUSTOMER,
        data={"type": message.type, "source": "studio"},
        message_id=message.id,
    )
    return {"id": message.id, "type": message.type, "text": message.text}
