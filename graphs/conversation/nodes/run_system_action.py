"""Run the system action routing chose: `traza.operations.actions.run_action`, then record it.

Decides only the state it leaves (the turn consumed, opted out or back in); the actions
(consent, CSAT, interview button, integration call) live in `traza.operations.actions`.
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from graphs.conversation.context import Context
from graphs.conversation.state import ConversationState
from graphs.conversation.tracing import record_step
from traza import trace
from traza.db.engine import session_scope
from traza.operations.actions import run_action
from traza.outbound.outbox import request_delivery
from traza.rules import active
from traza.trace import kinds
from traza.trace.buffer import flush


async def run_system_action(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Carry out the routed action and record it; unknown actions are recorded, not run."""
    started = time.perf_counter()
    cid = state["conversation_id"]
    decision = state["decision"]
    action = decision.get("action")
    classification = state.get("classification") or {}
    actor = trace.system(action or "unknown")
    rules = await active.current()
    async with session_scope() as session:
        await flush(session)
        outcome = await run_action(
            session,
            rules,
            action=action,
            rule=decision["rule"],
            conversation_id=cid,
            messages=state.get("turn") or [],
            actor=actor,
            language=state.get("language"),
            intent=classification.get("intent"),
            scores=classification.get("scores"),
            contact_wa_id=state.get("contact_wa_id"),
            contact_name=state.get("contact_name"),
            bot=runtime.context.bot_name,
        )
        await record_step(
            session,
            conversation_id=cid,
            kind=kinds.SYSTEM_ACTION,
            actor=actor,
            data=outcome.data,
            started=started,
        )
    if outcome.queued:
        await request_delivery(cid)
    opted_out = state.get("opted_out", False)
    if action == "opt_out":
        opted_out = True
    elif action == "opt_in":
        opted_out = False
    return {"turn": [], "opted_out": opted_out}
