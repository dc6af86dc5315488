"""Wait for a human with `interrupt()` (agent-inbox shape) and carry out their answer.

Decides what the `HumanResponse` asks (a text to send, an end: ignore, return to bot or
resolve); `traza.operations.handoffs` queues the text and changes the handoff and owner.
Resumed with `Command(resume=HumanResponse)`, the node re-runs from its start, so
everything before `interrupt()` is read-only and every write after it is keyed.
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from graphs.conversation.context import Context
from graphs.conversation.state import ConversationState
from graphs.conversation.tracing import record_step
from traza import trace
from traza.db.engine import session_scope
from traza.operations.handoffs import queue_human_reply, resume_handoff
from traza.outbound.outbox import request_delivery
from traza.rules import active
from traza.trace import kinds
from traza.trace.buffer import flush


def human_interrupt(state: ConversationState) -> dict[str, Any]:
    """The agent-inbox `HumanInterrupt` for this conversation."""
    draft: dict[str, Any] = state.get("draft") or {}
    decision = state.get("decision") or {}
    has_draft = bool(draft.get("text")) and (state.get("guardrail") or {}).get("allowed", False)
    last = next(
        (i.get("text") for i in reversed(state.get("recent") or []) if i.get("who") == "customer"),
        None,
    )
    return {
        "action_request": {
            "action": "reply_to_customer",
            "args": {
                "conversation_id": state["conversation_id"],
                "handoff_id": state.get("handoff_id"),
                "text": draft.get("text") if has_draft else "",
            },
        },
        "config": {
            "allow_ignore": True,
            "allow_respond": True,
            "allow_edit": has_draft,
            "allow_accept": has_draft,
        },
        "description": (
            f"Handoff #{state.get('handoff_id')}: {decision.get('reason', 'needs a person')}."
            + (f" Last customer message: {last}" if last else "")
        ),
    }


def reply_text(response: dict[str, Any], state: ConversationState) -> str | None:
    """The text an agent-inbox `HumanResponse` asks to send, if any."""
    kind, args = response.get("type"), response.get("args")
    if kind == "response":
        return str(args) if args else None
    if kind == "edit" and isinstance(args, dict):
        nested = args.get("args")
        inner: dict[str, Any] = nested if isinstance(nested, dict) else args
        return str(inner.get("text") or "") or None
    if kind == "accept":
        return str((state.get("draft") or {}).get("text") or "") or None
    return None


async def wait_for_human(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Pause until a human answers; send their text; hand back to the bot when asked."""
    response: dict[str, Any] = interrupt(human_interrupt(state))
    started = time.perf_counter()
    cid, handoff_id = state["conversation_id"], state.get("handoff_id")
    agent = str(response.get("agent") or "operator")
    actor = trace.human(agent)
    resumes = state.get("resumes", 0)
    text = reply_text(response, state)
    ends = (
        response.get("type") == "ignore" or response.get("return_to_bot") or response.get("resolve")
    )
    status = ("resolved" if response.get("resolve") else "returned") if ends else None
    rules = await active.current()
    async with session_scope() as session:
        await flush(session)
        message_id = None
        if text:
            message_id = await queue_human_reply(
                session,
                conversation_id=cid,
                handoff_id=handoff_id,
                resume=resumes,
                actor=actor,
                text=text,
                response_type=response.get("type"),
            )
        await record_step(
            session,
            conversation_id=cid,
            kind=kinds.HANDOFF_RESUMED,
            actor=actor,
            data={
                "handoff_id": handoff_id,
                "response_type": response.get("type"),
                "sent_message_id": message_id,
                "return_to_bot": bool(ends),
            },
            started=started,
            message_id=message_id,
        )
        await resume_handoff(
            session,
            rules,
            conversation_id=cid,
            handoff_id=handoff_id,
            agent=agent,
            replied=bool(text),
            close_as=status,
            language=state.get("language"),
        )
        if ends:
            await record_step(
                session,
                conversation_id=cid,
                kind=kinds.OWNER_CHANGED,
                actor=actor,
                data={"from": "human", "to": "bot", "handoff_id": handoff_id, "handoff": status},
            )
    if text or ends:
        await request_delivery(cid)
    if ends:
        return {"resumes": resumes + 1, "owner": "bot", "handoff_id": None, "draft": None}
    return {"resumes": resumes + 1, "owner": "human", "draft": None}
