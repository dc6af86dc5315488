"""Send the approved draft: one `traza.outbound.outbox.queue_reply`, then `request_delivery`.

Decides only the message from the draft (its key, kind, content) and who sends it (the
decision's bot); the statement that queues it with the turn's trace lives in the outbox.
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from graphs.conversation.context import Context
from graphs.conversation.state import ConversationState
from graphs.conversation.tracing import run_position
from traza import trace
from traza.outbound.outbox import queue_reply, request_delivery


async def send_reply(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Write the reply to the outbox, keyed by the turn's last message, and ask for delivery."""
    started = time.perf_counter()
    draft = state.get("draft") or {}
    cid = state["conversation_id"]
    thread, step = run_position()
    await queue_reply(
        conversation_id=cid,
        answers=[i["id"] for i in state.get("turn") or []],
        actor=trace.bot((state.get("decision") or {}).get("bot") or runtime.context.bot_name),
        kind=draft.get("kind") or "text",
        text_body=str(draft.get("text") or ""),
        content=draft.get("content") or {"body": draft.get("text"), "source": draft.get("source")},
        key=draft.get("key"),
        followup_id=(state.get("followup") or {}).get("id"),
        thread_id=thread,
        step=step,
        started=started,
    )
    await request_delivery(cid)
    return {"turn": [], "followup": None}
