"""Load what this turn decides with: `traza.conversations.repository.load_turn_context`.

Decides the state the turn starts from (language fallback, recent window as speakers)
and records `turn.started` with the inputs a replay feeds back.
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from graphs.conversation.context import Context
from graphs.conversation.state import RECENT_WINDOW, ConversationState
from graphs.conversation.tracing import record_step, thread_id
from traza import trace
from traza.conversations.repository import TurnContext, load_turn_context
from traza.trace import kinds


async def load_context(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Read the conversation from the database (and store messages typed in Studio)."""
    started = time.perf_counter()
    context = await load_turn_context(
        thread_id=thread_id(), turn=state.get("turn") or [], window=RECENT_WINDOW
    )
    recent = [
        {
            "who": "customer" if r["direction"] == "in" else r["actor"],
            "type": r["type"],
            "text": r["text"] or "",
        }
        for r in context.recent
    ]
    loaded: dict[str, Any] = {
        "conversation_id": context.conversation_id,
        "contact_name": context.contact_name,
        "contact_wa_id": context.contact_wa_id,
        "candidate_id": context.candidate_id,
        "inbox": context.inbox,
        "language": context.language or context.locale or state.get("language") or "es",
        "owner": context.owner,
        "opted_out": context.opted_out,
        "in_window": context.in_window,
        "handoff_id": context.handoff_id,
    }
    if context.turn:
        await record_step(
            conversation_id=context.conversation_id,
            kind=kinds.TURN_STARTED,
            actor=trace.bot(runtime.context.bot_name),
            data={
                "messages": [i["id"] for i in context.turn],
                "owner": context.owner,
                "inputs": turn_inputs(loaded, context, state),
            },
            started=started,
        )
    return {
        "turn": context.turn,
        **loaded,
        "recent": recent,
        "draft": None,
        "guardrail": None,
    }


def turn_inputs(
    loaded: dict[str, Any], context: TurnContext, state: ConversationState
) -> dict[str, Any]:
    """What this turn's decisions read, as the trace keeps it for replay.

    The context the turn loaded, the candidate's own data (the guardrails' `people` layer
    reads it), the ids of the messages before the turn (their text never changes) and
    the unknown-answer streak carried from the previous turn. A replay feeds the turn
    exactly this, so a later change of profile name or candidate record changes nothing.
    """
    return {
        **{k: v for k, v in loaded.items() if k not in ("conversation_id", "owner")},
        "candidate": context.candidate,
        "recent": [int(r["id"]) for r in context.recent],
        "unknown_streak": int(state.get("unknown_streak") or 0),
    }
