"""The model path over the wire: langchain-openai against a local OpenAI-compatible server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import prompts
from tests.fakes.servers import LocalServer, OpenAICompatible
from tests.support import configure, say
from traza.rules.schema import INTENTS


def outbound(db) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT actor, text, status FROM messages WHERE direction='out' ORDER BY id"
    ).fetchall()


def events(db, kind: str) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT data, llm, actor FROM trace_events WHERE kind=%s ORDER BY id", (kind,)
    ).fetchall()


def event(db, kind: str) -> dict[str, Any]:
    found = events(db, kind)
    assert len(found) == 1, (kind, found)
    return found[0]


def conversation(db) -> dict[str, Any]:
    return db.execute("SELECT id, owner FROM conversations").fetchone()


def handoffs(db) -> list[dict[str, Any]]:
    return db.execute("SELECT reason, status, summary FROM handoffs ORDER BY id").fetchall()


def reply_requests(fake: OpenAICompatible) -> list[dict[str, Any]]:
    return [r for r in fake.requests if not r.get("tools")]


@pytest.fixture
async def fake() -> AsyncIterator[OpenAICompatible]:
    """A model server on a real socket, configured as the service's model."""
    model = OpenAICompatible()
    async with LocalServer(model.app()) as server:
        configure(
            OPENAI_BASE_URL=server.url + "/v1",
            OPENAI_API_KEY="test",
            TRAZA_LLM_MODEL="fake-model",
            TRAZA_LLM_TIMEOUT="1",
        )
        yield model


# --- classification --------------------------------------------------------------------


async def test_the_model_classifies_the_turn_with_a_structured_tool_call(client, db, fake):
    fake.classification = {
        "intent": "application_status",
        "language": "es",
        "frustration": False,
        "wants_human": False,
        "opt_out": False,
        "confidence": 0.88,
    }
    # The offline model reads "Ok" as no intent; the model's confident intent is taken.
    await say(client, "Ok")

    classification = event(db, "classification")
    assert classification["data"]["source"] == "model+llm"
    assert classification["data"]["intent"] == "application_status"
    assert classification["data"]["llm"]["confidence"] == 0.88
    assert classification["data"]["model"].startswith("judgment-")
    assert "llm_error" not in classification["data"]
    assert classification["llm"] is True
    decision = event(db, "routing.decision")["data"]
    assert decision["rule"] == "default-bot"
    assert decision["inputs"]["intent"] == "application_status"

    [request] = fake.calls_of("ClassificationOutput")
    assert request["model"] == "fake-model"
    [tool] = request["tools"]
    assert tool["type"] == "function"
    assert tool["function"]["name"] == "ClassificationOutput"
    properties = tool["function"]["parameters"]["properties"]
    assert set(properties) >= {
        "intent",
        "language",
        "frustration",
        "wants_human",
        "negotiation",
        "out_of_scope",
        "opt_out",
        "opt_in",
        "confidence",
    }
    assert tuple(properties["intent"]["enum"]) == INTENTS
    system, user = request["messages"]
    assert system["role"] == "system" and "application_status" in system["content"]
    assert user == {"role": "user", "content": "Ok"}

    # The model's intent reaches the reply prompt too.
    [reply] = reply_requests(fake)
    assert 'intent is "application_status"' in reply["messages"][0]["content"]


async def test_a_model_that_hears_a_request_for_a_person_hands_off(client, db, fake):
    fake.classification = {
        "intent": "unknown",
        "language": "es",
        "frustration": False,
        "wants_human": True,
        "opt_out": False,
        "confidence": 0.8,
    }
    # No keyword of the offline rules here: only the model can tell.
    await say(client, "¿me pasas con alguien de carne y hueso?")

    assert event(db, "classification")["data"]["wants_human"] is True
    assert event(db, "routing.decision")["data"]["rule"] == "asks-for-person"
    assert conversation(db)["owner"] == "human"
    assert [h["reason"] for h in handoffs(db)] == ["asks-for-person"]
    out = outbound(db)
    assert [(m["actor"], m["text"]) for m in out] == [
        ("system:handoff", prompts.reply("handoff_notice", "es"))
    ]
    # Handed off: no reply was drafted, judged or sent by the bot.
    assert reply_requests(fake) == [] and fake.calls_of("JudgeOutput") == []
    assert events(db, "reply.drafted") == []


# --- replies and the judge ---------------------------------------------------------------


async def test_the_model_writes_the_reply_and_the_judge_allows_it(client, db, fake):
    fake.reply = "¡Hola María! Con gusto te ayudo con tu proceso."
    await say(client, "Hola, buenas")

    out = outbound(db)
    assert [(m["actor"], m["text"]) for m in out] == [("bot:traza", fake.reply)]
    drafted = event(db, "reply.drafted")
    assert drafted["data"]["source"] == "llm" and drafted["llm"] is True
    assert "llm_error" not in drafted["data"]

    [request] = reply_requests(fake)
    system = request["messages"][0]
    assert system["role"] == "system"
    template = prompts.reply("greeting", "es", nombre="María G.")
    assert template in system["content"]
    assert request["messages"][-1] == {"role": "user", "content": "Hola, buenas"}

    [judged] = fake.calls_of("JudgeOutput")
    assert judged["messages"][-1] == {
        "role": "user",
        "content": f"<reply>\n{fake.reply}\n</reply>",
    }
    verdict = event(db, "guardrail.verdict")["data"]
    assert verdict["allowed"] is True and verdict["source"] == "judge"
    assert [layer["layer"] for layer in verdict["layers"]] == [
        "entities",
        "people",
        "classifier",
        "judge",
    ]
    assert verdict["draft_source"] == "llm"
    assert conversation(db)["owner"] == "bot" and handoffs(db) == []


async def test_a_model_reply_with_a_salary_is_blocked_and_handed_to_a_human(client, db, fake):
    fake.reply = "El salario es de $30.000 al mes"
    await say(client, "Hola")

    drafted = event(db, "reply.drafted")
    assert drafted["data"]["source"] == "llm"
    verdict = event(db, "guardrail.verdict")["data"]
    assert verdict["allowed"] is False
    assert verdict["policies"] == ["salary"]
    assert verdict["source"] == "entities" and "30.000" in verdict["span"]
    assert verdict["blocked_text"] == fake.reply
    # The offline policy decided; the judge was not needed.
    assert fake.calls_of("JudgeOutput") == []

    texts = [m["text"] for m in outbound(db)]
    assert fake.reply not in texts and not any("30.000" in t for t in texts)
    assert [(m["actor"], m["text"]) for m in outbound(db)] == [
        ("system:handoff", prompts.reply("guardrail_fallback", "es"))
    ]
    assert conversation(db)["owner"] == "human"
    [handoff] = handoffs(db)
    assert handoff["reason"] == "guardrail" and handoff["status"] == "open"
    assert "salary" in handoff["summary"] and "30.000" in handoff["summary"]
    assert event(db, "handoff.created")["data"]["rule"] == "guardrail"
    assert events(db, "reply.sent_to_outbox") == []


async def test_the_judge_can_block_a_reply_the_policies_allow(client, db, fake):
    fake.reply = "Hola. Qué pregunta tan tonta."
    fake.judge = {"allowed": False, "reason": "rude"}
    await say(client, "Hello")

    [judged] = fake.calls_of("JudgeOutput")
    assert judged["messages"][-1]["content"] == f"<reply>\n{fake.reply}\n</reply>"
    verdict = event(db, "guardrail.verdict")["data"]
    assert verdict["allowed"] is False
    assert verdict["policies"] == ["llm_judge"]
    assert verdict["reason"] == "rude" and verdict["source"] == "judge"
    assert verdict["blocked_text"] == fake.reply
    assert [m["text"] for m in outbound(db)] == [prompts.reply("guardrail_fallback", "es")]
    assert conversation(db)["owner"] == "human"
    assert [h["reason"] for h in handoffs(db)] == ["guardrail"]


# --- failures degrade, never to silence -----------------------------------------------------


async def test_a_slow_model_times_out_and_the_judge_fails_closed(client, db, fake):
    fake.delay = 3
    started = time.monotonic()
    await say(client, "Hola, ¿cómo va mi aplicación?")
    elapsed = time.monotonic() - started
    # Three bounded calls (classify, reply, judge) of 1 s each, not three of 3 s.
    assert elapsed < 8, elapsed

    classification = event(db, "classification")["data"]
    assert classification["source"] == "model"
    assert classification["intent"] == "application_status"
    assert "timed out" in classification["llm_error"]
    assert classification["fallback"] == "model"
    drafted = event(db, "reply.drafted")["data"]
    assert drafted["source"] == "template" and drafted["fallback"] == "template"
    assert "timed out" in drafted["llm_error"]
    # The judge could not answer: the reply is held, never sent, and a human takes over.
    assert events(db, "guardrail.verdict") == []
    held = event(db, "guardrail.unavailable")["data"]
    assert held["allowed"] is False and held["policies"] == ["unavailable"]
    assert held["source"] == "judge" and "timed out" in held["layers"][-1]["error"]
    assert [(m["actor"], m["text"]) for m in outbound(db)] == [
        ("system:handoff", prompts.reply("guardrail_fallback", "es"))
    ]
    assert conversation(db)["owner"] == "human"
    assert [h["reason"] for h in handoffs(db)] == ["guardrail"]
    assert len(fake.requests) == 3


async def test_a_failing_model_server_falls_back_offline_and_records_it(client, db, fake):
    fake.fail_status = 500
    await say(client, "Hi, any news on my application?")

    classification = event(db, "classification")
    assert classification["llm"] is True
    assert classification["data"]["source"] == "model"
    assert classification["data"]["intent"] == "application_status"
    assert classification["data"]["fallback"] == "model"
    assert "500" in classification["data"]["llm_error"]
    drafted = event(db, "reply.drafted")["data"]
    assert drafted["source"] == "template" and "500" in drafted["llm_error"]
    held = event(db, "guardrail.unavailable")["data"]
    assert held["allowed"] is False and "500" in held["layers"][-1]["error"]

    # Never silence: the candidate is told a person will answer, in their language.
    out = outbound(db)
    assert [(m["actor"], m["text"]) for m in out] == [
        ("system:handoff", prompts.reply("guardrail_fallback", "en"))
    ]
    assert len(fake.requests) == 3  # no retries


async def test_a_failing_model_still_routes_a_request_for_a_person(client, db, fake):
    fake.fail_status = 503
    await say(client, "Quiero hablar con una persona")

    classification = event(db, "classification")["data"]
    assert classification["fallback"] == "model" and classification["wants_human"] is True
    assert conversation(db)["owner"] == "human"
    assert [m["text"] for m in outbound(db)] == [prompts.reply("handoff_notice", "es")]


async def test_a_malformed_model_answer_falls_back_offline(client, db, fake):
    # An intent outside the schema and an empty reply are failures like any other.
    fake.classification = {**fake.classification, "intent": "weather"}
    fake.reply = "   "
    await say(client, "Muchas gracias")

    classification = event(db, "classification")["data"]
    assert classification["source"] == "model" and classification["intent"] == "thanks"
    assert classification["fallback"] == "model" and classification["llm_error"]
    drafted = event(db, "reply.drafted")["data"]
    assert drafted["source"] == "template" and "empty reply" in drafted["llm_error"]
    assert [m["text"] for m in outbound(db)] == [prompts.reply("thanks", "es", nombre="María G.")]


# --- offline ----------------------------------------------------------------------------------


async def test_without_a_model_no_request_leaves_the_service(client, db):
    fake = OpenAICompatible()
    async with LocalServer(fake.app()) as server:
        # A server and a key, but no model name: the model path stays off.
        configure(OPENAI_BASE_URL=server.url + "/v1", OPENAI_API_KEY="test", TRAZA_LLM_MODEL=None)
        await say(client, "Hola, ¿cómo va mi aplicación?")
        await say(client, "El sueldo, ¿cuánto es?")

    assert fake.requests == []
    classifications = events(db, "classification")
    assert [c["data"]["source"] for c in classifications] == ["model", "model"]
    assert not any("llm_error" in c["data"] for c in classifications)
    assert not any(e["llm"] for e in events(db, "classification"))
    assert event(db, "reply.drafted")["data"]["source"] == "template"
    assert event(db, "guardrail.verdict")["data"]["source"] == "offline"
    out = outbound(db)
    assert out[0]["text"] == prompts.reply("application_status", "es")
    assert [h["reason"] for h in handoffs(db)] == ["negotiation"]
