"""load_context: the turn's state from `load_turn_context`, and `turn.started` for replay."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from langgraph.runtime import Runtime

from graphs.conversation.context import Context
from graphs.conversation.nodes import load_context as node
from graphs.conversation.state import RECENT_WINDOW
from tests.unit.graphs.conftest import STEP, THREAD, Effects, run_step
from traza.conversations.repository import TurnContext
from traza.trace import kinds

TURN = [{"id": 41, "type": "text", "text": "¿Cuándo es la entrevista?", "payload": None}]
CONTEXT = TurnContext(
    conversation_id=5,
    owner="bot",
    contact_name="Ana",
    contact_wa_id="5215550001111",
    locale="es",
    language="en",
    opted_out=False,
    in_window=True,
    inbox="109876543210",
    candidate_id=9,
    candidate={"name": "Ana Pérez", "email": "ana@example.com", "phone": None},
    handoff_id=None,
    recent=[
        {"id": 38, "direction": "in", "actor": "customer", "type": "text", "text": "Hola"},
        {"id": 39, "direction": "out", "actor": "bot:traza", "type": "text", "text": None},
    ],
    turn=TURN,
)


def fake_context(
    monkeypatch: pytest.MonkeyPatch, effects: Effects, context: TurnContext = CONTEXT
) -> None:
    monkeypatch.setattr(node, "load_turn_context", effects.port("load_turn_context", context))


async def test_a_worker_turn_starts_from_the_stored_conversation(
    monkeypatch: pytest.MonkeyPatch, effects: Effects, runtime: Runtime[Context]
) -> None:
    fake_context(monkeypatch, effects)
    step = await run_step(node.load_context, {"turn": TURN, "unknown_streak": 1}, runtime)

    assert effects.call("load_turn_context") == (
        (),
        {"thread_id": THREAD, "turn": TURN, "window": RECENT_WINDOW},
    )
    assert step.update == {
        "turn": TURN,
        "conversation_id": 5,
        "contact_name": "Ana",
        "contact_wa_id": "5215550001111",
        "candidate_id": 9,
        "inbox": "109876543210",
        "language": "en",
        "owner": "bot",
        "opted_out": False,
        "in_window": True,
        "handoff_id": None,
        "recent": [
            {"who": "customer", "type": "text", "text": "Hola"},
            {"who": "bot:traza", "type": "text", "text": ""},
        ],
        "draft": None,
        "guardrail": None,
    }
    [event] = step.buffered
    assert (event["kind"], event["actor"], event["conversation_id"]) == (
        kinds.TURN_STARTED,
        "bot:traza",
        5,
    )
    assert (event["thread_id"], event["step"]) == (THREAD, STEP)
    assert event["data"]["messages"] == [41]
    assert event["data"]["owner"] == "bot"
    inputs = event["data"]["inputs"]
    assert "conversation_id" not in inputs and "owner" not in inputs
    assert inputs["candidate"] == CONTEXT.candidate
    assert inputs["recent"] == [38, 39]  # ids only: a replay reads the texts back
    assert inputs["unknown_streak"] == 1
    assert inputs["language"] == "en" and inputs["in_window"] is True


@pytest.mark.parametrize(
    ("language", "locale", "state_language", "expected"),
    [
        ("pt", "es", "en", "pt"),  # the detected language first
        (None, "es", "en", "es"),  # then the contact's locale
        (None, None, "en", "en"),  # then what the state knew
        (None, None, None, "es"),
    ],
)
async def test_the_language_falls_back_from_detected_to_locale_to_spanish(
    monkeypatch: pytest.MonkeyPatch,
    effects: Effects,
    runtime: Runtime[Context],
    language: str | None,
    locale: str | None,
    state_language: str | None,
    expected: str,
) -> None:
    fake_context(monkeypatch, effects, replace(CONTEXT, language=language, locale=locale))
    state: dict[str, Any] = {"turn": TURN}
    if state_language:
        state["language"] = state_language
    step = await run_step(node.load_context, state, runtime)
    assert step.update["language"] == expected


async def test_an_empty_turn_records_nothing(
    monkeypatch: pytest.MonkeyPatch, effects: Effects, runtime: Runtime[Context]
) -> None:
    # A retried job whose messages another run answered, or a follow-up's turn.
    fake_context(monkeypatch, effects, replace(CONTEXT, turn=[]))
    step = await run_step(node.load_context, {"turn": [], "followup": {"id": 3}}, runtime)
    assert step.update["turn"] == [] and step.update["conversation_id"] == 5
    assert step.buffered == []


async def test_messages_typed_in_studio_come_back_stored(
    monkeypatch: pytest.MonkeyPatch, effects: Effects, runtime: Runtime[Context]
) -> None:
    typed = [{"type": "text", "text": "hola"}]
    stored = [{"id": 77, "type": "text", "text": "hola"}]
    fake_context(monkeypatch, effects, replace(CONTEXT, turn=stored))
    step = await run_step(node.load_context, {"turn": typed}, runtime)
    assert effects.call("load_turn_context")[1]["turn"] == typed
    assert step.update["turn"] == stored
    assert step.buffered[0]["data"]["messages"] == [77]
