"""run_system_action: one `run_action` in the turn's transaction, recorded as `system.action`."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.runtime import Runtime

from graphs.conversation.context import Context
from graphs.conversation.nodes import run_system_action as node
from tests.unit.graphs.conftest import Effects, run_step
from traza.operations.actions import ActionOutcome
from traza.rules.loader import LoadedRules
from traza.trace import kinds

TURN = [{"id": 41, "type": "interactive", "text": None, "payload": "csat:12:5"}]


def state(action: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "conversation_id": 5,
        "language": "en",
        "opted_out": False,
        "contact_wa_id": "5215550001111",
        "contact_name": "Ana",
        "classification": {"intent": "unknown", "scores": {"opt_out": 0.4}},
        "decision": {"route": "system", "rule": "csat-answer", "action": action},
        "turn": TURN,
    } | extra


async def test_the_action_runs_in_the_turns_transaction_and_is_traced(
    monkeypatch: pytest.MonkeyPatch,
    effects: Effects,
    rules: LoadedRules,
    runtime: Runtime[Context],
) -> None:
    outcome = ActionOutcome(data={"action": "csat", "recorded": True}, queued=True)
    effects.install(monkeypatch, node, run_action=outcome)
    step = await run_step(node.run_system_action, state("csat"), runtime)

    assert effects.log == [
        "begin",
        "flush",
        "run_action",
        f"trace:{kinds.SYSTEM_ACTION}",
        "commit",
        "deliver",
    ]
    assert effects.call("run_action") == (
        (effects.session, rules),
        {
            "action": "csat",
            "rule": "csat-answer",
            "conversation_id": 5,
            "messages": TURN,
            "actor": "system:csat",
            "language": "en",
            "intent": "unknown",
            "scores": {"opt_out": 0.4},
            "contact_wa_id": "5215550001111",
            "contact_name": "Ana",
            "bot": "traza",
        },
    )
    [event] = effects.steps
    assert event["actor"] == "system:csat" and event["data"] == outcome.data
    assert step.update == {"turn": [], "opted_out": False}


async def test_nothing_queued_asks_for_no_delivery(
    monkeypatch: pytest.MonkeyPatch,
    effects: Effects,
    rules: LoadedRules,
    runtime: Runtime[Context],
) -> None:
    effects.install(monkeypatch, node, run_action=ActionOutcome(data={}, queued=False))
    await run_step(node.run_system_action, state("csat"), runtime)
    assert effects.log[-1] == "commit" and effects.deliveries == []


@pytest.mark.parametrize(
    ("action", "was", "now"),
    [
        ("opt_out", False, True),
        ("opt_out", True, True),
        ("opt_in", True, False),
        ("keep_messages", True, True),
        ("confirm_opt_out", False, False),
    ],
)
async def test_the_state_follows_consent(
    monkeypatch: pytest.MonkeyPatch,
    effects: Effects,
    rules: LoadedRules,
    runtime: Runtime[Context],
    action: str,
    was: bool,
    now: bool,
) -> None:
    effects.install(monkeypatch, node, run_action=ActionOutcome(data={}, queued=True))
    step = await run_step(node.run_system_action, state(action, opted_out=was), runtime)
    assert step.update == {"turn": [], "opted_out": now}
    assert effects.call("run_action")[1]["actor"] == f"system:{action}"


async def test_an_action_routing_did_not_name_is_run_as_unknown(
    monkeypatch: pytest.MonkeyPatch,
    effects: Effects,
    rules: LoadedRules,
    runtime: Runtime[Context],
) -> None:
    outcome = ActionOutcome(data={"action": None, "error": "no such system action"}, queued=False)
    effects.install(monkeypatch, node, run_action=outcome)
    step = await run_step(node.run_system_action, state(None), runtime)
    assert effects.call("run_action")[1]["action"] is None
    assert effects.steps[0]["actor"] == "system:unknown"
    assert effects.steps[0]["data"]["error"] == "no such system action"
    assert step.update == {"turn": [], "opted_out": False}
