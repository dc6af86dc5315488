"""Load what this turn's decisions need: contact, owner, handoff, recent messages, window."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from langgraph.runtime import Runtime
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from graphs.conversation.context import Context
from graphs.conversation.state import RECENT_WINDOW, ConversationState, InboundItem
from graphs.conversation.tracing import record_step, thread_id
from traza import trace
from traza.conversations import repository as repo
from traza.db.engine import direct, run, session_scope
from traza.db.models import Message
from traza.trace import kinds

# One round trip: the conversation, its contact, its open handoff and its last messages
# before this turn.
CONTEXT_SQL = text(
    """
    SELECT c.id, c.owner, c.last_inbound_at, ct.profile_name, ct.locale, ct.opted_out_at,
           c.language,
           ct.wa_id, (SELECT i.phone_number_id FROM inboxes i WHERE i.id = c.inbox_id) AS inbox,
           (SELECT k.id FROM candidates k WHERE k.contact_id = c.contact_id) AS candidate_id,
           (SELECT json_build_object('name', k.name, 'email', k.email, 'phone', k.phone)
              FROM candidates k WHERE k.contact_id = c.contact_id) AS candidate,
           (SELECT h.id FROM handoffs h
             WHERE h.conversation_id = c.id
               AND h.status IN ('open', 'assigned', 'accepted')) AS handoff_id,
           (SELECT coalesce(json_agg(r ORDER BY r.id), '[]'::json) FROM (
               SELECT m.id, m.direction, m.actor, m.type, left(m.text, 500) AS text
                 FROM messages m
                WHERE m.conversation_id = c.id
                  AND (CAST(:before AS bigint) IS NULL OR m.id < CAST(:before AS bigint))
                ORDER BY m.id DESC LIMIT :window) r) AS recent
      FROM conversations c JOIN contacts ct ON ct.id = c.contact_id
     WHERE c.thread_id = :thread_id
    """
)


async def load_context(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Read the conversation from the database (and store messages typed in Studio)."""
    started = time.perf_counter()
    tid = thread_id()
    items = state.get("turn") or []
    # Workers pass the stored, unprocessed messages (selected under the conversation lock);
    # Studio passes bare texts, stored here first.
    before = min((i["id"] for i in items if "id" in i), default=None)
    params = {"thread_id": tid, "before": before, "window": RECENT_WINDOW}
    typed_in_studio = any("id" not in i for i in items)
    row = None
    if not typed_in_studio:  # the worker's case: one read, nothing to write
        async with direct() as conn:
            row = await (await run(conn, CONTEXT_SQL, params)).fetchone()
        turn, last_inbound_at = list(items), row.last_inbound_at if row else None
    if row is None:
        async with session_scope() as session:
            row = (await session.execute(CONTEXT_SQL, params)).first()
            if row is None:  # a thread started from LangGraph Studio
                await repo.studio_conversation(session, tid)
                row = (await session.execute(CONTEXT_SQL, params)).one()
            turn = [await _stored(session, row.id, item) for item in items]
            last_inbound_at = row.last_inbound_at
            if typed_in_studio:
                last_inbound_at = datetime.now(UTC)
                await session.execute(
                    text("UPDATE conversations SET last_inbound_at = :at WHERE id = :id"),
                    {"at": last_inbound_at, "id": row.id},
                )
    recent = [
        {
            "who": "customer" if r["direction"] == "in" else r["actor"],
            "type": r["type"],
            "text": r["text"] or "",
        }
        for r in row.recent
    ]
    loaded: dict[str, Any] = {
        "conversation_id": row.id,
        "contact_name": row.profile_name,
        "contact_wa_id": row.wa_id,
        "candidate_id": row.candidate_id,
        "inbox": row.inbox,
        "language": row.language or row.locale or state.get("language") or "es",
        "owner": row.owner,
        "opted_out": row.opted_out_at is not None,
        "in_window": repo.in_service_window(last_inbound_at),
        "handoff_id": row.handoff_id,
    }
    if turn:
        await record_step(
            conversation_id=row.id,
            kind=kinds.TURN_STARTED,
            actor=trace.bot(runtime.context.bot_name),
            data={
                "messages": [i["id"] for i in turn],
                "owner": row.owner,
                "inputs": turn_inputs(loaded, row, state),
            },
            started=started,
        )
    return {
        "turn": turn,
        **loaded,
        "recent": recent,
        "draft": None,
        "guardrail": None,
    }


def turn_inputs(loaded: dict[str, Any], row: Any, state: ConversationState) -> dict[str, Any]:
    """What this turn's decisions read, as the trace keeps it for replay.

    The context the turn loaded, the candidate's own data (the guardrails' `people` layer
    reads it), the ids of the messages before the turn (their text never changes) and
    the unknown-answer streak carried from the previous turn. A replay feeds the turn
    exactly this, so a later change of profile name or candidate record changes nothing.
    """
    return {
        **{k: v for k, v in loaded.items() if k not in ("conversation_id", "owner")},
        "candidate": row.candidate,
        "recent": [int(r["id"]) for r in row.recent],
        "unknown_streak": int(state.get("unknown_streak") or 0),
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
        kind=kinds.MESSAGE_RECEIVED,
        actor=trace.CUSTOMER,
        data={"type": message.type, "source": "studio"},
        message_id=message.id,
    )
    return {"id": message.id, "type": message.type, "text": message.text}
