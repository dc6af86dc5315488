"""The routers: pure functions from the state a node left to the next node."""

from __future__ import annotations

import inspect
from typing import Any, get_args, get_type_hints

import pytest

from graphs.conversation import routing
from graphs.conversation.graph import NODES
from graphs.conversation.routing import (
    route_after_check_guardrails,
    route_after_decide_route,
    route_after_load_context,
    route_after_wait_for_human,
    route_after_write_followup,
)

ROUTERS = [
    f
    for name, f in inspect.getmembers(routing, inspect.isfunction)
    if name.startswith("route_after_")
]


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"turn": [{"id": 1}], "owner": "bot"}, "classify"),
        ({"turn": [{"id": 1}], "owner": "human"}, "classify"),  # classify; routing keeps it human
        ({"turn": []}, "__end__"),  # a retried job whose messages were answered
        ({"followup": {"id": 7}, "owner": "bot"}, "write_followup"),
        ({"followup": {"id": 7}, "owner": "human", "turn": [{"id": 1}]}, "__end__"),
    ],
)
def test_after_load_context(state: dict[str, Any], expected: str) -> None:
    assert route_after_load_context(state) == expected  # type: ignore[arg-type]


def test_a_followup_without_a_draft_is_recorded_not_sent() -> None:
    assert route_after_write_followup({"draft": {"text": "Hola"}}) == "check_guardrails"
    assert route_after_write_followup({"draft": None}) == "__end__"


@pytest.mark.parametrize(
    ("route", "expected"),
    [("bot", "write_reply"), ("human", "hand_off_to_human"), ("system", "run_system_action")],
)
def test_after_decide_route_follows_the_decision(route: str, expected: str) -> None:
    assert route_after_decide_route({"decision": {"route": route}}) == expected


@pytest.mark.parametrize(
    ("guardrail", "expected"),
    [
        ({"allowed": True}, "send_reply"),
        ({"allowed": False, "policies": ["salary"]}, "hand_off_to_human"),
        (None, "hand_off_to_human"),  # no verdict: never sent
        ({}, "hand_off_to_human"),
    ],
)
def test_only_an_allowed_draft_is_sent(guardrail: dict[str, Any] | None, expected: str) -> None:
    assert route_after_check_guardrails({"guardrail": guardrail}) == expected


def test_wait_for_human_waits_while_a_human_owns_the_conversation() -> None:
    assert route_after_wait_for_human({"owner": "human"}) == "wait_for_human"
    assert route_after_wait_for_human({"owner": "bot"}) == "__end__"
    assert route_after_wait_for_human({}) == "__end__"


def test_every_router_names_only_nodes_of_the_graph() -> None:
    assert len(ROUTERS) == 5
    for router in ROUTERS:
        targets = set(get_args(get_type_hints(router)["return"]))
        assert targets - {"__end__"} <= set(NODES), router.__name__
