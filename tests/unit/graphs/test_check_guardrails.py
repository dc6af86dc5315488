"""check_guardrails: the guardrails for real; whose data a reply holds is a fake port."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.runtime import Runtime

from graphs.conversation.context import Context
from graphs.conversation.nodes import check_guardrails as node
from tests.unit.graphs.conftest import Effects, run_step
from traza.decisions import guardrails, llm
from traza.decisions.guardrails import People
from traza.trace import kinds

DECISION = {"route": "bot", "rule": "default-bot", "reason": "the bot can answer this"}


def state(text: str) -> dict[str, Any]:
    return {
        "conversation_id": 5,
        "contact_name": "Ana Pérez",
        "decision": DECISION,
        "draft": {"kind": "text", "text": text, "source": "template"},
    }


def people(
    monkeypatch: pytest.MonkeyPatch, effects: Effects, found: People | None = None
) -> Effects:
    found = found or People(own_names=frozenset({"Ana Pérez"}))
    monkeypatch.setattr(node, "people_for_reply", effects.port("people_for_reply", found))
    return effects


async def test_an_allowed_draft_keeps_the_decision(
    monkeypatch: pytest.MonkeyPatch, effects: Effects, runtime: Runtime[Context]
) -> None:
    people(monkeypatch, effects)
    text = "Hola Ana Pérez, ¿en qué te ayudo?"
    step = await run_step(node.check_guardrails, state(text), runtime)
    assert effects.call("people_for_reply") == ((5, text), {"contact_name": "Ana Pérez"})
    assert step.update["guardrail"]["allowed"] is True
    assert "decision" not in step.update
    [event] = step.buffered
    assert event["kind"] == kinds.GUARDRAIL_VERDICT
    assert event["data"]["draft_source"] == "template" and "blocked_text" not in event["data"]


async def test_another_candidates_data_is_blocked_and_goes_to_a_human(
    monkeypatch: pytest.MonkeyPatch, effects: Effects, runtime: Runtime[Context]
) -> None:
    people(
        monkeypatch,
        effects,
        People(own_names=frozenset({"Ana Pérez"}), other_names=frozenset({"María López"})),
    )
    text = "María López va muy bien, Ana Pérez"
    step = await run_step(node.check_guardrails, state(text), runtime)
    verdict = step.update["guardrail"]
    assert verdict["allowed"] is False and verdict["source"] == "people"
    decision = step.update["decision"]
    assert (decision["route"], decision["rule"]) == ("human", "guardrail")
    assert decision["reason"].startswith("reply blocked by people: ")
    assert decision["reason"].endswith("(«María López»)")
    assert decision["guardrail"] == {
        "categories": verdict["policies"],
        "span": "María López",
        "layer": "people",
    }
    [event] = step.buffered
    assert event["kind"] == kinds.GUARDRAIL_VERDICT and event["data"]["blocked_text"] == text


async def test_a_judge_that_cannot_answer_holds_the_reply(
    monkeypatch: pytest.MonkeyPatch, effects: Effects
) -> None:
    people(monkeypatch, effects)

    async def unavailable(model: Any, text: str) -> tuple[bool, str]:
        raise llm.LLMError("model call timed out after 5s")

    monkeypatch.setattr(llm, "chat_model", lambda name=None: object())
    monkeypatch.setattr(llm, "judge", unavailable)
    runtime = Runtime(context=Context(use_llm=True))
    step = await run_step(node.check_guardrails, state("Hola, ¿en qué te ayudo?"), runtime)
    assert step.update["guardrail"]["allowed"] is False
    assert guardrails.UNAVAILABLE in step.update["guardrail"]["policies"]
    assert step.update["decision"]["route"] == "human"
    [event] = step.buffered
    assert event["kind"] == kinds.GUARDRAIL_UNAVAILABLE and event["llm"] is True
