"""The conversation graph: load → classify → route → (reply → guardrails → send | human | system).

`graph` is compiled without a checkpointer for `langgraph dev`; the service compiles
`builder` with the Postgres saver (see `traza.runtime`).
"""

from __future__ import annotations

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

builder = StateGraph(ConversationState, context_schema=Context, input_schema=TurnInput)
builder.add_node(load_context)
builder.add_node(classify)
builder.add_node(decide_route)
builder.add_node(write_reply)
builder.add_node(check_guardrails)
builder.add_node(send_reply)
builder.add_node(hand_off_to_human)
builder.add_node(wait_for_human)
builder.add_node(run_system_action)
builder.add_node(write_followup)

builder.add_edge(START, "load_context")
builder.add_conditional_edges("load_context", route_after_load_context)
builder.add_edge("classify", "decide_route")
builder.add_conditional_edges("decide_route", route_after_decide_route)
builder.add_edge("write_reply", "check_guardrails")
builder.add_conditional_edges("check_guardrails", route_after_check_guardrails)
builder.add_edge("send_reply", END)
builder.add_edge("hand_off_to_human", "wait_for_human")
builder.add_conditional_edges("wait_for_human", route_after_wait_for_human)
builder.add_edge("run_system_action", END)
builder.add_conditional_edges("write_followup", route_after_write_followup)

graph = builder.compile(name="conversation")

prompts.preload()  # file reads happen at import, never inside a run
