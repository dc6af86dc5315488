"""Queue the approved reply in the outbox; the sender job delivers it."""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from graphs.conversation.context import Context
from graphs.conversation.state import ConversationState
from graphs.conversation.tracing import flush, step_event
from traza import trace
from traza.conversations import repository as repo
from traza.db.engine import get_engine
from traza.jobs.tasks import schedule_delivery
from traza.outbound.outbox import queue_message


async def send_reply(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Outbox row and "turn consumed" in one transaction, keyed by the turn's last message.

    A turn retried after a crash finds the key taken and queues nothing new.
    """
    started = time.perf_counter()
    draft = state.get("draft") or {}
    ids = [i["id"] for i in state.get("turn") or []]
    actor = trace.bot(runtime.context.bot_name)
    cid = state["conversation_id"]
    key = f"reply:{cid}:{max(ids) if ids else 'none'}"
    async with get_engine().begin() as session:  # Core: no ORM objects needed here
        message_id = await queue_message(
            session,
            conversation_id=cid,
            key=key,
            actor=actor,
            kind="text",
            text_body=str(draft.get("text") or ""),
            content={"body": draft.get("text"), "source": draft.get("source")},
            record=False,
        )
        await repo.mark_processed(session, ids)
        # The turn's buffered events and these two go in with one INSERT.
        events = [
            step_event(
                conversation_id=cid,
                kind="reply.sent_to_outbox",
                actor=actor,
                data={"message_id": message_id, "answers": ids},
                started=started,
                message_id=message_id,
            )
        ]
        if message_id is not None:
            events.insert(
                0,
                step_event(
                    conversation_id=cid,
                    kind="message.queued",
                    actor=actor,
                    data={"type": "text", "key": key},
                    message_id=message_id,
                ),
            )
        await flush(session, events)
    await schedule_delivery(state["conversation_id"])
    return {"turn": []}
