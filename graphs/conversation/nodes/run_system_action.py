"""System actions chosen by routing: opt-out, a CSAT answer, or an integration call."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from langgraph.runtime import Runtime
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import prompts
from graphs.conversation.context import Context
from graphs.conversation.state import ConversationState
from graphs.conversation.tracing import record_step
from traza import trace
from traza.conversations import repository as repo
from traza.db.engine import session_scope
from traza.db.models import Contact, Conversation
from traza.decisions.routing import OPT_OUT_KEEP, OPT_OUT_STOP
from traza.operations import csat
from traza.outbound.integrations import queue_call
from traza.outbound.outbox import queue_message, request_delivery
from traza.recruiting.interviews import confirm_by_button
from traza.rules import active
from traza.trace import kinds
from traza.trace.buffer import flush


async def _locked_contact(session: AsyncSession, conversation_id: int) -> Contact:
    """The conversation's contact, locked for the consent change this action makes."""
    return (
        await session.execute(
            select(Contact)
            .join(Conversation, Conversation.contact_id == Contact.id)
            .where(Conversation.id == conversation_id)
            .with_for_update()
        )
    ).scalar_one()


async def run_system_action(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Carry out the routed action and record it; unknown actions are recorded, not run."""
    started = time.perf_counter()
    cid = state["conversation_id"]
    action = state["decision"].get("action")
    ids = [i["id"] for i in state.get("turn") or []]
    actor = trace.system(action or "unknown")
    queued = False
    rules = await active.current()
    async with session_scope() as session:
        await flush(session)
        data: dict[str, Any] = {
            "action": action,
            "rule": state["decision"]["rule"],
            "rules_version": rules.version,
        }
        if action == "opt_out":
            contact = await _locked_contact(session, cid)
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
        elif action == "confirm_opt_out":
            # Ambiguous: never act on it; ask with two buttons and let the answer decide.
            language = state.get("language")
            first_id = ids[0] if ids else 0
            queued = (
                await queue_message(
                    session,
                    conversation_id=cid,
                    key=f"opt-out-question:{cid}:{first_id}",
                    actor=actor,
                    kind="interactive",
                    text_body=prompts.reply("opt_out_question", language),
                    content={
                        "buttons": [
                            {"id": OPT_OUT_STOP, "title": prompts.reply("opt_out_stop", language)},
                            {"id": OPT_OUT_KEEP, "title": prompts.reply("opt_out_keep", language)},
                        ]
                    },
                )
                is not None
            )
            data |= {"asked": True, "scores": (state.get("classification") or {}).get("scores")}
        elif action in ("keep_messages", "opt_in"):
            contact = await _locked_contact(session, cid)
            was_opted_out = contact.opted_out_at is not None
            if action == "opt_in" and was_opted_out:
                contact.opted_out_at = None
            first_id = ids[0] if ids else 0
            reply_key = "opt_in_confirmation" if action == "opt_in" else "opt_out_kept"
            queued = (
                await queue_message(
                    session,
                    conversation_id=cid,
                    key=f"{action}:{cid}:{first_id}",
                    actor=actor,
                    kind="text",
                    text_body=prompts.reply(reply_key, state.get("language")),
                )
                is not None
            )
            data |= {
                "opted_out": action != "opt_in" and was_opted_out,
                "consent_restored": action == "opt_in" and was_opted_out,
            }
        elif action == "csat":
            payload = next((i.get("payload") for i in state.get("turn") or []), None) or ""
            data |= await csat.record(
                session,
                cid,
                payload,
                bot=runtime.context.bot_name,
                language=state.get("language"),
            )
            queued = bool(data.get("recorded"))
        elif action == "interview":
            payload = next((i.get("payload") for i in state.get("turn") or []), None) or ""
            data |= await confirm_by_button(session, cid, payload)
            if data.get("confirmed"):
                queued = (
                    await queue_message(
                        session,
                        conversation_id=cid,
                        key=f"interview-confirmed:{data['interview_id']}",
                        actor=actor,
                        kind="text",
                        text_body=prompts.reply("interview_confirmed", state.get("language")),
                    )
                    is not None
                )
        elif action in rules.rules.integrations:
            integration = rules.rules.integrations[action]
            data["call_id"] = await queue_call(
                session,
                integration=action,
                event="routing.action",
                payload={
                    "rule": state["decision"]["rule"],
                    "intent": (state.get("classification") or {}).get("intent"),
                    "contact": {
                        "wa_id": state.get("contact_wa_id"),
                        "name": state.get("contact_name"),
                    },
                    "messages": [
                        {"id": i.get("id"), "type": i.get("type"), "text": i.get("text")}
                        for i in state.get("turn") or []
                    ],
                    "rules_version": rules.version,
                },
                conversation_id=cid,
                actor=actor,
            )
            if integration.reply:
                queued = (
                    await queue_message(
                        session,
                        conversation_id=cid,
                        key=f"integration-reply:{data['call_id']}",
                        actor=actor,
                        kind="text",
                        text_body=integration.reply,
                    )
                    is not None
                )
        else:
            data["error"] = "no such system action"
        await repo.mark_processed(session, ids)
        await record_step(
            session,
            conversation_id=cid,
            kind=kinds.SYSTEM_ACTION,
            actor=actor,
            data=data,
            started=started,
        )
    if queued:
        await request_delivery(cid)
    opted_out = state.get("opted_out", False)
    if action == "opt_out":
        opted_out = True
    elif action == "opt_in":
        opted_out = False
    return {"turn": [], "opted_out": opted_out}
