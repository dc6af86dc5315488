"""The decision point: bot, human or system — the winning rule is recorded."""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from graphs.conversation.context import Context
from graphs.conversation.state import ConversationState
from graphs.conversation.tracing import record_step
from traza import trace
from traza.decisions.routing import RoutingInputs, decide


async def decide_route(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Apply the routing rules to the classification and the conversation's context."""
    started = time.perf_counter()
    c = state["classification"]
    decision = decide(
        RoutingInputs(
            intent=c["intent"],
            confidence=c["confidence"],
            frustration=c["frustration"],
            wants_human=c["wants_human"],
            opt_out=c["opt_out"],
            owner=state.get("owner", "bot"),
            opted_out=state.get("opted_out", False),
            unknown_streak=state.get("unknown_streak", 0),
        )
    )
    await record_step(
        conversation_id=state["conversation_id"],
        kind="routing.decision",
        actor=trace.bot(runtime.context.bot_name),
        data=decision.as_dict(),
        started=started,
    )
    return {"decision": decision.as_dict()}
