"""Hand the conversation to humans: `traza.operations.handoffs.hand_off`, in the turn's transaction.

Decides who asked for it (the decision's creator or the bot) and records the owner change
when the handoff is new; the lifecycle (team, priority, out-of-hours notice, assignment,
SLA clocks) lives in `traza.operations.handoffs`.
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from graphs.conversation.context import Context
from graphs.conversation.state import RECENT_WINDOW, ConversationState
from graphs.conversation.tracing import record_step
from traza import trace
from traza.db.engine import session_scope
from traza.operations.handoffs import hand_off
from traza.outbound.outbox import request_delivery
from traza.rules import active
from traza.trace import kinds
from traza.trace.buffer import flush


async def hand_off_to_human(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Idempotent: an open handoff is reused, and the notice is keyed by the handoff."""
    started = time.perf_counter()
    cid = state["conversation_id"]
    decision = state["decision"]
    turn = state.get("turn") or []
    ids = [i["id"] for i in turn]
    creator = decision.get("created_by") or trace.bot(runtime.context.bot_name)
    rules = await active.current()
    async with session_scope() as session:
        await flush(session)
        handoff_id, created = await hand_off(
            session,
            rules,
            conversation_id=cid,
            decision=decision,
            created_by=creator,
            language=state.get("language"),
            message_ids=ids,
        )
        if created:
            await record_step(
                session,
                conversation_id=cid,
                kind=kinds.OWNER_CHANGED,
                actor=creator,
                data={"from": state.get("owner", "bot"), "to": "human", "handoff_id": handoff_id},
                started=started,
            )
    if created:
        await request_delivery(cid)
    said = [{"who": "customer", "type": i.get("type"), "text": i.get("text")} for i in turn]
    return {
        "owner": "human",
        "handoff_id": handoff_id,
        "turn": [],
        "unknown_streak": 0,
        "recent": [*state.get("recent", []), *said][-RECENT_WINDOW:],
    }
