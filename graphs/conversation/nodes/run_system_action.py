"""System actions chosen by routing (opt-out today; integrations plug in here)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from langgraph.runtime import Runtime
from sqlalchemy import select

import prompts
from graphs.conversation.context import Context
from graphs.conversation.state import ConversationState
from graphs.conversation.tracing import flush, record_step
from traza import trace
from traza.conversations import repository as repo
from traza.db.engine import session_scope
from traza.db.models import Contact, Conversation
from traza.jobs.tasks import schedule_delivery
from traza.outbound.outbox import queue_message


async def run_system_action(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Carry out the routed action and record it; unknown actions are recorded, not run."""
    started = time.perf_counter()
    cid = state["conversation_id"]
    action = state["decision"].get("action")
    ids = [i["id"] for i in state.get("turn") or []]
    actor = trace.system(action or "unknown")
    queued = False
    async with session_scope() as session:
        await flush(session)
        data: dict[str, Any] = {"action": action, "rule": state["decision"]["rule"]}
        if action == "opt_out":
            contact = (
                await session.execute(
                    select(Contact)
                    .join(Conversation, Conversation.contact_id == Contact.id)
                    .where(Conversation.id == cid)
                    .with_for_update()
                )
            ).scalar_one()
            first_time = contact.opted_out_at is None
            if first_time:
                contact.opted_out_at = datetime.now(UTC)
                queued = (
                    await queue_message(
                        session,
                        conversation_id=cid,
                        key=f"opt-out:{contact.id}:{contact.opted_out_at.isoformat()}",
                        actor=actor,
                        kind="text",
                        text_body=prompts.reply("opt_out_confirmation", state.get("language")),
                    )
                    is not None
                )
            data |= {"opted_out": True, "confirmed": first_time}
        else:
            data["error"] = "no such system action"
        await repo.mark_processed(session, ids)
        await record_step(
            session,
            conversation_id=cid,
            kind="system.action",
            actor=actor,
            data=data,
            started=started,
        )
    if queued:
        await schedule_delivery(cid)
    return {"turn": [], "opted_out": action == "opt_out" or state.get("opted_out", False)}
