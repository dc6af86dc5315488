"""send_reply: the draft becomes one `queue_reply`, then a delivery request."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.runtime import Runtime

from graphs.conversation.context import Context
from graphs.conversation.nodes import send_reply as node
from tests.unit.graphs.conftest import STEP, THREAD, Effects, run_step


@pytest.fixture
def outbox(monkeypatch: pytest.MonkeyPatch, effects: Effects) -> Effects:
    effects.install(monkeypatch, node, queue_reply=101)
    return effects


async def test_a_bot_reply_is_queued_for_the_turn_and_delivered(
    outbox: Effects, runtime: Runtime[Context]
) -> None:
    state: dict[str, Any] = {
        "conversation_id": 5,
        "turn": [{"id": 41, "type": "text"}, {"id": 43, "type": "text"}],
        "decision": {"route": "bot", "bot": None},
        "draft": {"kind": "text", "text": "¡Hola!", "source": "template"},
    }
    step = await run_step(node.send_reply, state, runtime)
    assert step.update == {"turn": [], "followup": None}
    args, kwargs = outbox.call("queue_reply")
    started = kwargs.pop("started")
    assert isinstance(started, float)
    assert (args, kwargs) == (
        (),
        {
            "conversation_id": 5,
            "answers": [41, 43],
            "actor": "bot:traza",
            "kind": "text",
            "text_body": "¡Hola!",
            "content": {"body": "¡Hola!", "source": "template"},
            "key": None,  # the outbox keys it by the last message it answers
            "followup_id": None,
            "thread_id": THREAD,
            "step": STEP,
        },
    )
    assert outbox.log == ["queue_reply", "deliver"]
    assert outbox.deliveries == [5]


async def test_a_followup_goes_out_under_its_own_key_content_and_agent(
    outbox: Effects, runtime: Runtime[Context]
) -> None:
    content = {"body": "Hola Ana", "followup_id": 7, "channel": "email", "subject": "Tu CV"}
    state: dict[str, Any] = {
        "conversation_id": 5,
        "turn": [],
        "followup": {"id": 7, "trigger": "application_received"},
        "decision": {"route": "bot", "bot": "reclutadora"},
        "draft": {"kind": "text", "text": "Hola Ana", "key": "followup:7", "content": content},
    }
    step = await run_step(node.send_reply, state, runtime)
    assert step.update == {"turn": [], "followup": None}
    _, kwargs = outbox.call("queue_reply")
    assert kwargs["key"] == "followup:7" and kwargs["followup_id"] == 7
    assert kwargs["content"] is content and kwargs["answers"] == []
    assert kwargs["actor"] == "bot:reclutadora"
    assert outbox.deliveries == [5]


async def test_a_retried_turn_still_asks_for_delivery(
    outbox: Effects, monkeypatch: pytest.MonkeyPatch, runtime: Runtime[Context]
) -> None:
    # Queued before (the key exists): nothing new, but the earlier row may be undelivered.
    monkeypatch.setattr(node, "queue_reply", outbox.port("queue_reply", None))
    state: dict[str, Any] = {"conversation_id": 5, "turn": [{"id": 41}], "draft": {"text": "x"}}
    step = await run_step(node.send_reply, state, runtime)
    assert step.update == {"turn": [], "followup": None}
    assert outbox.call("queue_reply")[1]["kind"] == "text"
    assert outbox.deliveries == [5]
