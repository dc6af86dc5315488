"""The decision point: bot, team or system action, by `traza.decisions.routing.decide`.

The winning rule and the rules version are recorded. A team that is closed and
configured with `out_of_hours: {mode: bot}` leaves the turn to the bot (recorded).
No database: the active rules and the clock are all it reads.
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from graphs.conversation.context import Context
from graphs.conversation.state import ConversationState
from graphs.conversation.tracing import record_step
from traza import clock, trace
from traza.decisions.routing import RoutingInputs, decide
from traza.rules import active
from traza.rules.hours import BusinessHours
from traza.trace import kinds


async def decide_route(state: ConversationState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Apply the rules to the classification and the conversation's context."""
    started = time.perf_counter()
    c = state["classification"]
    turn = state.get("turn") or []
    rules = await active.current()
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
            text=" ".join(i.get("text") or "" for i in turn),
            contact=state.get("contact_wa_id"),
            inbox=state.get("inbox"),
            payload=next((i["payload"] for i in turn if i.get("payload")), None),
            negotiation=c.get("negotiation", False),
            out_of_scope=c.get("out_of_scope", False),
            uncertain=c.get("uncertain", False),
            opt_out_mode=c.get("opt_out_mode"),
            opt_in=c.get("opt_in", False),
            scores=c.get("scores") or {},
            model=c.get("model"),
        ),
        rules,
    ).as_dict()
    if decision["route"] == "human" and decision["team"]:
        team = rules.rules.teams.get(decision["team"])
        if team and team.out_of_hours.mode == "bot":
            hours = BusinessHours(team.hours)
            if not hours.is_open(clock.now()):
                decision |= {
                    "route": "bot",
                    "reason": f"{decision['reason']}; team '{decision['team']}' is closed, "
                    "the bot keeps serving (out_of_hours: bot)",
                    "out_of_hours": True,
                }
    await record_step(
        conversation_id=state["conversation_id"],
        kind=kinds.ROUTING_DECISION,
        actor=trace.bot(runtime.context.bot_name),
        data=decision,
        started=started,
    )
    return {"decision": decision}
