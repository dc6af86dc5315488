"""classify: the offline judgment model for real; the language store and the model faked."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.runtime import Runtime

from graphs.conversation.context import Context
from graphs.conversation.nodes import classify as node
from tests.unit.graphs.conftest import Effects, run_step
from traza.decisions import llm
from traza.decisions.classifier import Classification
from traza.rules.loader import LoadedRules

CID = 5


def turn(*texts: str, type: str = "text") -> list[dict[str, Any]]:
    return [{"id": n, "type": type, "text": t, "payload": None} for n, t in enumerate(texts, 1)]


@pytest.fixture
def set_language(monkeypatch: pytest.MonkeyPatch, effects: Effects) -> Effects:
    monkeypatch.setattr(node, "set_language", effects.port("set_language"))
    return effects


async def test_a_request_for_a_person_is_classified_and_traced(
    set_language: Effects, rules: LoadedRules, runtime: Runtime[Context]
) -> None:
    state = {
        "conversation_id": CID,
        "language": "es",
        "turn": turn("Quiero hablar con una persona"),
    }
    step = await run_step(node.classify, state, runtime)

    c = step.update["classification"]
    assert c["wants_human"] is True and c["source"] == "model" and c["model"]
    assert step.update["language"] == "es"
    assert set_language.calls["set_language"] == []  # unchanged: nothing to store
    [event] = step.buffered
    assert event["kind"] == "classification" and event["actor"] == "bot:traza"
    assert event["data"] == c and event["llm"] is False


async def test_a_new_language_is_stored_for_the_conversation(
    set_language: Effects, rules: LoadedRules, runtime: Runtime[Context]
) -> None:
    text = "Hello, I would like to know the status of my application"
    state = {"conversation_id": CID, "language": "es", "turn": turn(text)}
    step = await run_step(node.classify, state, runtime)
    assert step.update["language"] == "en"
    assert set_language.call("set_language") == ((CID, "en"), {})


async def test_a_language_guessed_from_a_message_type_is_not_stored(
    set_language: Effects, rules: LoadedRules, runtime: Runtime[Context]
) -> None:
    step = await run_step(
        node.classify, {"conversation_id": CID, "turn": turn("", type="image")}, runtime
    )
    assert step.update["classification"]["source"] == "type"
    assert step.update["language"] == "es"
    assert set_language.calls["set_language"] == []


async def test_the_unknown_streak_grows_on_unknown_and_resets_otherwise(
    set_language: Effects, rules: LoadedRules, runtime: Runtime[Context]
) -> None:
    state = {"conversation_id": CID, "language": "es", "unknown_streak": 1, "turn": turn("mmm")}
    step = await run_step(node.classify, state, runtime)
    assert step.update["classification"]["intent"] == "unknown"
    assert step.update["unknown_streak"] == 2
    state |= {"turn": turn("gracias")}
    step = await run_step(node.classify, state, runtime)
    assert step.update["classification"]["intent"] == "thanks"
    assert step.update["unknown_streak"] == 0


async def test_the_model_adds_a_signal_the_offline_model_missed(
    monkeypatch: pytest.MonkeyPatch,
    set_language: Effects,
    rules: LoadedRules,
    runtime: Runtime[Context],
) -> None:
    model = object()
    monkeypatch.setattr(llm, "chat_model", lambda name=None: model)
    seen: list[Any] = []

    async def classify(m: Any, texts: list[str]) -> Classification:
        seen.append((m, texts))
        return Classification(
            intent="greeting",
            language="es",
            frustration=True,
            wants_human=False,
            opt_out=False,
            confidence=0.9,
            source="llm",
        )

    monkeypatch.setattr(llm, "classify", classify)
    runtime = Runtime(context=Context(use_llm=True))
    state = {"conversation_id": CID, "language": "es", "turn": turn("hola")}
    step = await run_step(node.classify, state, runtime)
    assert seen == [(model, ["hola"])]
    c = step.update["classification"]
    assert c["frustration"] is True and c["source"] == "model+llm"
    assert step.buffered[0]["llm"] is True


async def test_a_model_failure_keeps_the_offline_verdict_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
    set_language: Effects,
    rules: LoadedRules,
    runtime: Runtime[Context],
) -> None:
    async def fails(m: Any, texts: list[str]) -> Classification:
        raise llm.LLMError("model call timed out after 5s")

    monkeypatch.setattr(llm, "chat_model", lambda name=None: object())
    monkeypatch.setattr(llm, "classify", fails)
    state = {
        "conversation_id": CID,
        "language": "es",
        "turn": turn("Quiero hablar con una persona"),
    }
    offline = await run_step(node.classify, state, runtime)
    step = await run_step(node.classify, state, Runtime(context=Context(use_llm=True)))
    assert step.update == offline.update
    [event] = step.buffered
    assert event["data"]["llm_error"] == "model call timed out after 5s"
    assert event["data"]["fallback"] == "model"
    assert event["llm"] is True
