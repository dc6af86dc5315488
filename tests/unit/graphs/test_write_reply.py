"""write_reply: the template offline, the model (a scripted chat model) when configured."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langgraph.runtime import Runtime

import prompts
from graphs.conversation.context import Context
from graphs.conversation.nodes import write_reply as node
from tests.unit.graphs.conftest import run_step
from traza.decisions import llm
from traza.trace import kinds

WITH_MODEL = Runtime(context=Context(use_llm=True, company="Acme"))


def state(**extra: Any) -> dict[str, Any]:
    return {
        "conversation_id": 5,
        "language": "en",
        "contact_name": "Ana",
        "classification": {"intent": "greeting"},
        "recent": [{"who": "bot:traza", "type": "text", "text": "Hi"}],
        "turn": [{"id": 1, "type": "text", "text": "hello"}],
    } | extra


async def test_offline_the_draft_is_the_template_in_the_language(
    runtime: Runtime[Context],
) -> None:
    step = await run_step(node.write_reply, state(), runtime)
    template = prompts.reply("greeting", "en", nombre="Ana")
    assert step.update == {"draft": {"kind": "text", "text": template, "source": "template"}}
    [event] = step.buffered
    assert event["kind"] == kinds.REPLY_DRAFTED and event["llm"] is False
    assert event["data"] == {"template": "greeting", "language": "en", "source": "template"}


async def test_the_model_writes_within_the_template_seeing_the_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = FakeListChatModel(responses=["Hi Ana! How can I help you today?"])
    monkeypatch.setattr(llm, "chat_model", lambda name=None: model)
    seen: list[dict[str, Any]] = []
    write = llm.write_reply

    async def spy(m: Any, **kwargs: Any) -> str:
        seen.append(kwargs)
        return await write(m, **kwargs)

    monkeypatch.setattr(llm, "write_reply", spy)
    step = await run_step(node.write_reply, state(), WITH_MODEL)
    assert step.update["draft"] == {
        "kind": "text",
        "text": "Hi Ana! How can I help you today?",
        "source": "llm",
    }
    [call] = seen
    assert call["recent"][-1] == {"who": "customer", "type": "text", "text": "hello"}
    assert call["template"] == prompts.reply("greeting", "en", nombre="Ana")
    assert (call["company"], call["tools"]) == ("Acme", None)  # no candidate: no tools
    assert step.buffered[0]["llm"] is True
    assert step.buffered[0]["data"]["source"] == "llm"


async def test_a_model_failure_falls_back_to_the_template_and_is_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def fails(m: Any, **kwargs: Any) -> str:
        raise llm.LLMError("model returned an empty reply")

    monkeypatch.setattr(llm, "chat_model", lambda name=None: object())
    monkeypatch.setattr(llm, "write_reply", fails)
    step = await run_step(node.write_reply, state(), WITH_MODEL)
    assert step.update["draft"]["source"] == "template"
    assert step.update["draft"]["text"] == prompts.reply("greeting", "en", nombre="Ana")
    data = step.buffered[0]["data"]
    assert data["llm_error"] == "model returned an empty reply"
    assert data["fallback"] == "template"
