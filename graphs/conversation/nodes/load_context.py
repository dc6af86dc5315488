"""Load what this turn's decisions need: contact, owner, handoff, recent messages, window."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from langgraph.runtime import Runtime
from sqlalchemy import select

from graphs.conversation.context import Context
from graphs.conversation.state import RECENT_WINDOW, ConversationState, InboundItem
from graphs.conversation.tracing import record_step, thread_id
from traza import trace
from traza.conversations import repository as repo
from traza.db.engine import session_scope
from traza.db.models import Message


async def load_context(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Read the conversation from the database and store Studio-typed messages."""
    started = time.perf_counter()
    tid = thread_id()
    async with session_scope() as session:
        conversation = await repo.conversation_by_thread(session, tid)
        if conversation is None:
            conversation = await repo.studio_conversation(session, tid)
        contact, _ = await repo.contact_and_inbox(session, conversation)
        turn = [await _stored(session, conversation.id, item) for item in state.get("turn") or []]
        if turn and any("id" not in i for i in state.get("turn") or []):
            conversation.last_inbound_at = datetime.now(UTC)
        # A retried turn may find messages a previous attempt already consumed.
        ids = [i["id"] for i in turn]
        if ids:
            unprocessed = set(
                (
                    await session.execute(
                        select(Message.id).where(
                            Message.id.in_(ids), Message.processed_at.is_(None)
                        )
                    )
                ).scalars()
            )
            turn = [i for i in turn if i["id"] in unprocessed]
        handoff = await repo.open_handoff(session, conversation.id)
        recent = await repo.recent_messages(
            session,
            conversation.id,
            limit=RECENT_WINDOW,
            before_id=min(ids) if ids else None,
        )
        in_window = repo.in_service_window(conversation.last_inbound_at)
        await record_step(
            session,
            conversation_id=conversation.id,
            kind="turn.started",
            actor=trace.bot(runtime.context.bot_name),
            data={"messages": [i["id"] for i in turn], "owner": conversation.owner},
            started=started,
        )
    return {
        "turn": turn,
        "conversation_id": conversation.id,
        "contact_name": contact.profile_name,
        "language": contact.locale or state.get("language") or "es",
        "owner": conversation.owner,
        "opted_out": contact.opted_out_at is not None,
        "in_window": in_window,
        "handoff_id": handoff.id if handoff else None,
        "recent": recent,
        "draft": None,
        "guardrail": None,
    }


async def _stored(session: Any, conversation_id: int, item: InboundItem) -> InboundItem:
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
