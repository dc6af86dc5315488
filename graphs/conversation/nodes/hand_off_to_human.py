"""Hand the conversation to humans: queue a handoff for the decided team, tell the customer.

The lifecycle (team, priority, out-of-hours message, assignment, SLA clocks) lives in
`traza.operations.handoffs`; this node runs it in the turn's transaction.
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from graphs.conversation.context import Context
from graphs.conversation.state import RECENT_WINDOW, ConversationState
from graphs.conversation.tracing import record_step
from traza import trace
from traza.conversations import repository as repo
from traza.db.engine import session_scope
from traza.operations import handoffs
from traza.outbound.outbox import request_delivery
from traza.rules import active
from traza.trace import kinds
from traza.trace.buffer import flush


async def hand_off_to_human(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Idempotent: an open handoff is reused, and the notice is keyed by the handoff."""
    started = time.perf_counter()
    cid = state["conversation_id"]
    decision = state["decision"]
    ids = [i["id"] for i in state.get("turn") or []]
    creator = decision.get("created_by") or trace.bot(runtime.context.bot_name)
    rules = await active.current()
    async with session_scope() as session:
        await flush(session)
        handoff, created = await handoffs.open_handoff(
            session,
            rules,
            conversation_id=cid,
            decision=decision,
            created_by=creator,
            language=state.get("language"),
        )
        await repo.mark_processed(session, ids, handoff_id=handoff.id)
        if created:
            await record_step(
                session,
                conversation_id=cid,
                kind=kinds.OWNER_CHANGED,
                actor=creator,
                data={"from": state.get("owner", "bot"), "to": "human", "handoff_id": handoff.id},
                started=started,
            )
    if created:
        await request_delivery(cid)
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
