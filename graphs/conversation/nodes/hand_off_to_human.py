"""Hand the conversation to humans: open a handoff, make a human the owner, tell the customer."""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime
from sqlalchemy import update

import prompts
from graphs.conversation.context import Context
from graphs.conversation.state import RECENT_WINDOW, ConversationState
from graphs.conversation.tracing import flush, record_step
from traza import trace
from traza.conversations import repository as repo
from traza.db.engine import session_scope
from traza.db.models import Conversation, Handoff
from traza.jobs.tasks import schedule_delivery
from traza.outbound.outbox import queue_message


async def hand_off_to_human(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Idempotent: an open handoff is reused, and the notice is keyed by the handoff."""
    started = time.perf_counter()
    cid = state["conversation_id"]
    decision = state["decision"]
    ids = [i["id"] for i in state.get("turn") or []]
    bot = trace.bot(runtime.context.bot_name)
    async with session_scope() as session:
        await flush(session)
        handoff = await repo.open_handoff(session, cid)
        created = handoff is None
        if handoff is None:
            handoff = Handoff(
                conversation_id=cid,
                reason=decision["rule"],
                summary=decision["reason"],
                created_by=bot,
            )
            session.add(handoff)
            await session.flush()
        await session.execute(
            update(Conversation)
            .where(Conversation.id == cid)
            .values(owner="human", owner_agent=None)
        )
        await repo.mark_processed(session, ids, handoff_id=handoff.id)
        if created:
            await record_step(
                session,
                conversation_id=cid,
                kind="handoff.created",
                actor=bot,
                data={
                    "handoff_id": handoff.id,
                    "rule": decision["rule"],
                    "reason": decision["reason"],
                },
                started=started,
            )
            await record_step(
                session,
                conversation_id=cid,
                kind="owner.changed",
                actor=bot,
                data={"from": state.get("owner", "bot"), "to": "human", "handoff_id": handoff.id},
            )
            notice = "guardrail_fallback" if decision["rule"] == "guardrail" else "handoff_notice"
            await queue_message(
                session,
                conversation_id=cid,
                key=f"handoff-notice:{handoff.id}",
                actor=trace.system("handoff"),
                kind="text",
                text_body=prompts.reply(notice, state.get("language")),
            )
    if created:
        await schedule_delivery(cid)
    said = [
        {"who": "customer", "type": i.get("type"), "text": i.get("text")}
        for i in state.get("turn") or []
    ]
    return {
        "owner": "human",
        "handoff_id": handoff.id,
        "turn": [],
        "unknown_streak": 0,
        "recent": [*state.get("recent", []), *said][-RECENT_WINDOW:],
    }
