"""The conversation graph: load → classify → route → (reply → guardrails → send | human | system).

`graph` is compiled without a checkpointer for `langgraph dev`; the service compiles
`builder` with the Postgres saver (see `traza.services.runtime`).
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

import prompts
from graphs.conversation.context import Context
from graphs.conversation.nodes.check_guardrails import check_guardrails
from graphs.conversation.nodes.classify import classify
from graphs.conversation.nodes.decide_route import decide_route
from graphs.conversation.nodes.hand_off_to_human import hand_off_to_human
from graphs.conversation.nodes.load_context import load_context
from graphs.conversation.nodes.run_system_action import run_system_action
from graphs.conversation.nodes.send_reply import send_reply
from graphs.conversation.nodes.wait_for_human import wait_for_human
from graphs.conversation.nodes.write_followup import write_followup
from graphs.conversation.nodes.write_reply import write_reply
from graphs.conversation.routing import (
    route_after_check_guardrails,
    route_after_decide_route,
    route_after_load_context,
    route_after_wait_for_human,
    route_after_write_followup,
)
from graphs.conversation.state import ConversationState, TurnInput
from traza.decisions.preload import preload as preload_decisions

NODES: dict[str, Any] = {
    "load_context": load_context,
    "classify": classify,
    "decide_route": decide_route,
    "write_reply": write_reply,
    "check_guardrails": check_guardrails,
    "send_reply": send_reply,
    "hand_off_to_human": hand_off_to_human,
    "wait_for_human": wait_for_human,
    "run_system_action": run_system_action,
    "write_followup": write_followup,
}
"""The nodes by name; the nodes that act on the world are the ones a replay swaps out."""


def build(**replace: Any) -> StateGraph[Any, Any, Any, Any]:
    """The graph's topology, with some nodes replaced (`traza replay` swaps the effects)."""
    unknown = set(replace) - set(NODES)
    if unknown:
        raise ValueError(f"no such nodes: {sorted(unknown)}")
    g = StateGraph(ConversationState, context_schema=Context, input_schema=TurnInput)
    for name, node in NODES.items():
        g.add_node(name, replace.get(name, node))
    g.add_edge(START, "load_context")
    g.add_conditional_edges("load_context", route_after_load_context)
    g.add_edge("classify", "decide_route")
    g.add_conditional_edges("decide_route", route_after_decide_route)
    g.add_edge("write_reply", "check_guardrails")
    g.add_conditional_edges("check_guardrails", route_after_check_guardrails)
    g.add_edge("send_reply", END)
    g.add_edge("hand_off_to_human", "wait_for_human")
    g.add_conditional_edges("wait_for_human", route_after_wait_for_human)
    g.add_edge("run_system_action", END)
    g.add_conditional_edges("write_followup", route_after_write_followup)
    return g


builder = build()

graph = builder.compile(name="conversation")

prompts.preload()  # file reads happen at import, never inside a run
preload_decisions()  # so does loading (or, the first time, training) the models
