"""hand_off_to_human: one `hand_off` in the turn's transaction, the owner change traced."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.runtime import Runtime

from graphs.conversation.context import Context
from graphs.conversation.nodes import hand_off_to_human as node
from graphs.conversation.state import RECENT_WINDOW
from tests.unit.graphs.conftest import Effects, run_step
from traza.rules.loader import LoadedRules
from traza.trace import kinds

DECISION = {"route": "human", "rule": "asks-for-person", "team": "general", "reason": "asked"}


def state(**extra: Any) -> dict[str, Any]:
    return {
        "conversation_id": 5,
        "owner": "bot",
        "language": "en",
        "unknown_streak": 2,
        "decision": DECISION,
        "turn": [{"id": 41, "type": "text", "text": "I want a person"}],
        "recent": [{"who": "bot:traza", "type": "text", "text": "Hi"}],
    } | extra


async def test_a_new_handoff_changes_the_owner_and_asks_for_the_notice_delivery(
    monkeypatch: pytest.MonkeyPatch,
    effects: Effects,
    rules: LoadedRules,
    runtime: Runtime[Context],
) -> None:
    effects.install(monkeypatch, node, hand_off=(12, True))
    step = await run_step(node.hand_off_to_human, state(), runtime)

    assert effects.log == [
        "begin",
        "flush",
        "hand_off",
        f"trace:{kinds.OWNER_CHANGED}",
        "commit",
        "deliver",  # after the commit: the notice is in the outbox
    ]
    args, kwargs = effects.call("hand_off")
    assert args == (effects.session, rules)
    assert kwargs == {
        "conversation_id": 5,
        "decision": DECISION,
        "created_by": "bot:traza",
        "language": "en",
        "message_ids": [41],
    }
    [event] = effects.steps
    assert event["actor"] == "bot:traza"
    assert event["data"] == {"from": "bot", "to": "human", "handoff_id": 12}
    assert step.update == {
        "owner": "human",
        "handoff_id": 12,
        "turn": [],
        "unknown_streak": 0,
        "recent": [
            {"who": "bot:traza", "type": "text", "text": "Hi"},
            {"who": "customer", "type": "text", "text": "I want a person"},
        ],
    }


async def test_an_open_handoff_is_reused_without_a_second_owner_change(
    monkeypatch: pytest.MonkeyPatch,
    effects: Effects,
    rules: LoadedRules,
    runtime: Runtime[Context],
) -> None:
    effects.install(monkeypatch, node, hand_off=(12, False))
    step = await run_step(node.hand_off_to_human, state(owner="human"), runtime)
    assert effects.log == ["begin", "flush", "hand_off", "commit"]
    assert effects.steps == [] and effects.deliveries == []
    assert step.update["handoff_id"] == 12 and step.update["owner"] == "human"


async def test_who_asked_for_the_handoff_is_its_creator(
    monkeypatch: pytest.MonkeyPatch,
    effects: Effects,
    rules: LoadedRules,
    runtime: Runtime[Context],
) -> None:
    effects.install(monkeypatch, node, hand_off=(12, True))
    decision = DECISION | {"created_by": "human:ana"}
    await run_step(node.hand_off_to_human, state(decision=decision), runtime)
    assert effects.call("hand_off")[1]["created_by"] == "human:ana"
    assert effects.steps[0]["actor"] == "human:ana"


async def test_recent_keeps_only_the_window(
    monkeypatch: pytest.MonkeyPatch,
    effects: Effects,
    rules: LoadedRules,
    runtime: Runtime[Context],
) -> None:
    effects.install(monkeypatch, node, hand_off=(12, True))
    recent = [{"who": "customer", "type": "text", "text": str(n)} for n in range(RECENT_WINDOW)]
    step = await run_step(node.hand_off_to_human, state(recent=recent), runtime)
    assert len(step.update["recent"]) == RECENT_WINDOW
    assert step.update["recent"][-1]["text"] == "I want a person"
    assert step.update["recent"][0]["text"] == "1"
