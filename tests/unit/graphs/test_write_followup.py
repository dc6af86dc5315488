"""write_followup: the follow-up from `followup_message`, personalised by the model or not."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.runtime import Runtime

from graphs.conversation.context import Context
from graphs.conversation.nodes import write_followup as node
from tests.unit.graphs.conftest import Effects, run_step
from traza.decisions import llm
from traza.recruiting.agents import BotAgentConfig
from traza.recruiting.messages import FollowupMessage
from traza.trace import kinds

AGENT = BotAgentConfig.model_validate(
    {
        "name": "reclutadora",
        "objective": "acompañar al candidato",
        "tone": "formal",
        "context": {"company": "Acme", "signature": "Equipo Acme"},
        "templates": {"interview_24h": {"es": {"text": "Hola {nombre}, ¿confirmas?"}}},
    }
)
FOLLOWUP = {
    "id": 7,
    "agent": "reclutadora",
    "trigger": "interview_24h",
    "language": "es",
    "values": {"nombre": "Ana"},
    "channels": ["whatsapp", "email"],
    "due_at": "2026-03-20T09:00:00+00:00",
    "fired_at": "2026-03-20T09:00:05+00:00",
}
WITH_MODEL = Runtime(context=Context(use_llm=True))


def message(**overrides: Any) -> FollowupMessage:
    buttons = [{"id": "interview:confirm:3", "title": "Confirmo"}]
    fields: dict[str, Any] = {
        "channel": "whatsapp",
        "fallback": ["email"],
        "agent": AGENT,
        "text": "Hola Ana, ¿confirmas?",
        "key": "followup:7",
        "kind": "interactive",
        "content": {"body": "Hola Ana, ¿confirmas?", "followup_id": 7, "buttons": buttons},
        "subject": "Tu entrevista",
        "buttons": buttons,
    }
    return FollowupMessage(**(fields | overrides))


def state(**extra: Any) -> dict[str, Any]:
    return {"conversation_id": 5, "in_window": True, "followup": FOLLOWUP, "recent": []} | extra


def compose(monkeypatch: pytest.MonkeyPatch, effects: Effects, composed: FollowupMessage) -> None:
    monkeypatch.setattr(
        node, "followup_message", effects.port("followup_message", composed, sync=True)
    )


def script_model(monkeypatch: pytest.MonkeyPatch, reply: str | Exception) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    async def write_reply(model: Any, **kwargs: Any) -> str:
        seen.append(kwargs)
        if isinstance(reply, Exception):
            raise reply
        return reply

    monkeypatch.setattr(llm, "chat_model", lambda name=None: object())
    monkeypatch.setattr(llm, "write_reply", write_reply)
    return seen


async def test_the_followup_becomes_a_keyed_draft_with_its_fallback(
    monkeypatch: pytest.MonkeyPatch, effects: Effects, runtime: Runtime[Context]
) -> None:
    compose(monkeypatch, effects, message())
    step = await run_step(node.write_followup, state(), runtime)

    assert effects.call("followup_message") == ((), {"followup": FOLLOWUP, "in_window": True})
    assert step.update["guardrail"] is None
    assert step.update["decision"] == {
        "route": "bot",
        "rule": "followup:interview_24h",
        "reason": "proactive follow-up",
        "action": None,
        "bot": "reclutadora",
        "inputs": {"followup_id": 7},
    }
    draft = step.update["draft"]
    assert (draft["key"], draft["kind"], draft["source"]) == (
        "followup:7",
        "interactive",
        "followup:interview_24h",
    )
    assert draft["text"] == "Hola Ana, ¿confirmas?"
    assert draft["content"]["fallback"] == {
        "channels": ["email"],
        "text": "Hola Ana, ¿confirmas?",
        "subject": "Tu entrevista",
        "buttons": [{"id": "interview:confirm:3", "title": "Confirmo"}],
    }
    [event] = step.buffered
    assert (event["kind"], event["actor"], event["llm"]) == (
        kinds.FOLLOWUP_DRAFTED,
        "bot:reclutadora",
        False,
    )
    assert event["data"] == {
        "followup_id": 7,
        "trigger": "interview_24h",
        "message_kind": "interactive",
        "in_window": True,
        "channel": "whatsapp",
        "fallback": ["email"],
        "unavailable": {},
        "due_at": FOLLOWUP["due_at"],
        "fired_at": FOLLOWUP["fired_at"],
        "error": None,
        "llm_error": None,
        "source": "followup:interview_24h",
    }


async def test_without_a_template_nothing_is_drafted_and_the_gap_is_recorded(
    monkeypatch: pytest.MonkeyPatch, effects: Effects, runtime: Runtime[Context]
) -> None:
    compose(monkeypatch, effects, FollowupMessage(channel="whatsapp", fallback=[]))
    step = await run_step(node.write_followup, state(in_window=False), runtime)
    assert step.update["draft"] is None
    data = step.buffered[0]["data"]
    assert data["error"] == "no template for this trigger and language"
    assert (data["message_kind"], data["source"], data["in_window"]) == (None, None, False)


async def test_the_model_personalises_the_text_every_channel_sends(
    monkeypatch: pytest.MonkeyPatch, effects: Effects
) -> None:
    compose(monkeypatch, effects, message())
    seen = script_model(monkeypatch, "Buenos días, Ana: ¿nos confirma su entrevista?")
    step = await run_step(node.write_followup, state(), WITH_MODEL)

    [call] = seen
    assert call["intent"] == "proactive follow-up (interview_24h): acompañar al candidato"
    assert (call["template"], call["name"], call["company"], call["tone"]) == (
        "Hola Ana, ¿confirmas?",
        "Ana",
        "Acme",
        "formal",
    )
    draft = step.update["draft"]
    personalised = "Buenos días, Ana: ¿nos confirma su entrevista?"
    assert draft["text"] == draft["content"]["body"] == personalised
    assert draft["content"]["fallback"]["text"] == personalised
    assert draft["source"] == "llm:followup:interview_24h"
    assert step.buffered[0]["llm"] is True


async def test_an_approved_template_is_never_rewritten(
    monkeypatch: pytest.MonkeyPatch, effects: Effects
) -> None:
    compose(monkeypatch, effects, message(kind="template", fallback=[]))
    seen = script_model(monkeypatch, "should not be used")
    step = await run_step(node.write_followup, state(in_window=False), WITH_MODEL)
    assert seen == []
    draft = step.update["draft"]
    assert draft["kind"] == "template" and draft["text"] == "Hola Ana, ¿confirmas?"
    assert "fallback" not in draft["content"]


async def test_a_model_failure_sends_the_template_text_and_is_recorded(
    monkeypatch: pytest.MonkeyPatch, effects: Effects
) -> None:
    compose(monkeypatch, effects, message())
    script_model(monkeypatch, llm.LLMError("model call timed out after 5s"))
    step = await run_step(node.write_followup, state(), WITH_MODEL)
    assert step.update["draft"]["text"] == "Hola Ana, ¿confirmas?"
    assert step.update["draft"]["source"] == "followup:interview_24h"
    assert step.buffered[0]["data"]["llm_error"] == "model call timed out after 5s"
