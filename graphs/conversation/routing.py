"""Routers: pure functions from state to the next node (drawn by Studio as edges)."""

from __future__ import annotations

from typing import Literal

from graphs.conversation.state import ConversationState


def route_after_load_context(
    state: ConversationState,
) -> Literal["classify", "write_followup", "__end__"]:
    """A proactive follow-up is written; an empty turn (a retried job) ends.

    When a human owns the conversation, the bot is silent: the follow-up is not written.
    """
    if state.get("followup"):
        return "__end__" if state.get("owner") == "human" else "write_followup"
    if state.get("turn"):
        return "classify"
    return "__end__"


def route_after_write_followup(
    state: ConversationState,
) -> Literal["check_guardrails", "__end__"]:
    """A follow-up with no template for the candidate's language is recorded, not sent."""
    return "check_guardrails" if state.get("draft") else "__end__"


def route_after_decide_route(
    state: ConversationState,
) -> Literal["write_reply", "hand_off_to_human", "run_system_action"]:
    """Follow the routing decision."""
    route = state["decision"]["route"]
    if route == "human":
        return "hand_off_to_human"
    if route == "system":
        return "run_system_action"
    return "write_reply"


def route_after_check_guardrails(
    state: ConversationState,
) -> Literal["send_reply", "hand_off_to_human"]:
    """A blocked reply goes to a human instead of the customer."""
    verdict = state.get("guardrail") or {}
    return "send_reply" if verdict.get("allowed", False) else "hand_off_to_human"


def route_after_wait_for_human(state: ConversationState) -> Literal["wait_for_human", "__end__"]:
    """Keep waiting while a human owns the conversation; end once it is back with the bot."""
    if state.get("owner") == "human":
        return "wait_for_human"
    return "__end__"
