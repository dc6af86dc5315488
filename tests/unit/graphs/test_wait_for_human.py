"""wait_for_human: the agent-inbox interrupt, then the human's answer through the handoff ports."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command

from graphs.conversation.context import Context
from graphs.conversation.nodes import wait_for_human as node
from graphs.conversation.routing import route_after_wait_for_human
from graphs.conversation.state import ConversationState
from tests.unit.graphs.conftest import Effects, run_step
from traza.rules.loader import LoadedRules
from traza.trace import kinds

RESUMED, OWNER = f"trace:{kinds.HANDOFF_RESUMED}", f"trace:{kinds.OWNER_CHANGED}"


def state(**extra: Any) -> dict[str, Any]:
    return {
        "conversation_id": 5,
        "handoff_id": 12,
        "owner": "human",
        "language": "es",
        "resumes": 2,
        "decision": {"route": "human", "reason": "customer asked for a person"},
        "draft": None,
        "guardrail": None,
        "recent": [
            {"who": "customer", "type": "text", "text": "Quiero una persona"},
            {"who": "system:handoff", "type": "text", "text": "Te paso con el equipo"},
        ],
    } | extra


@pytest.fixture
def inbox(monkeypatch: pytest.MonkeyPatch, effects: Effects, rules: LoadedRules) -> Effects:
    effects.install(monkeypatch, node, queue_human_reply=301, resume_handoff=None)
    return effects


def answer(monkeypatch: pytest.MonkeyPatch, effects: Effects, response: dict[str, Any]) -> None:
    """The human's answer to the interrupt (the payload shown is kept in `calls`)."""
    monkeypatch.setattr(node, "interrupt", effects.port("interrupt", response, sync=True))


def test_the_interrupt_is_an_agent_inbox_request_with_the_draft_only_if_allowed() -> None:
    blocked = state(draft={"text": "El salario es 30k"}, guardrail={"allowed": False})
    request = node.human_interrupt(blocked)
    assert request["action_request"] == {
        "action": "reply_to_customer",
        "args": {"conversation_id": 5, "handoff_id": 12, "text": ""},
    }
    assert request["config"] == {
        "allow_ignore": True,
        "allow_respond": True,
        "allow_edit": False,
        "allow_accept": False,
    }
    assert request["description"] == (
        "Handoff #12: customer asked for a person. Last customer message: Quiero una persona"
    )
    allowed = node.human_interrupt(state(draft={"text": "Hola"}, guardrail={"allowed": True}))
    assert allowed["action_request"]["args"]["text"] == "Hola"
    assert allowed["config"]["allow_edit"] and allowed["config"]["allow_accept"]


@pytest.mark.parametrize(
    ("response", "text"),
    [
        ({"type": "response", "args": "Hola, soy Ana"}, "Hola, soy Ana"),
        ({"type": "response", "args": ""}, None),
        ({"type": "edit", "args": {"action": "reply", "args": {"text": "Editado"}}}, "Editado"),
        ({"type": "edit", "args": {"text": "Plano"}}, "Plano"),
        ({"type": "accept", "args": None}, "El borrador"),
        ({"type": "ignore", "args": None}, None),
    ],
)
def test_the_text_a_human_response_sends(response: dict[str, Any], text: str | None) -> None:
    assert node.reply_text(response, state(draft={"text": "El borrador"})) == text


async def test_a_reply_is_sent_and_the_conversation_stays_with_the_human(
    monkeypatch: pytest.MonkeyPatch,
    inbox: Effects,
    rules: LoadedRules,
    runtime: Runtime[Context],
) -> None:
    answer(monkeypatch, inbox, {"type": "response", "args": "Hola, soy Ana", "agent": "ana"})
    step = await run_step(node.wait_for_human, state(), runtime)

    assert inbox.log == [
        "interrupt",  # nothing happens before the human answers
        "begin",
        "flush",
        "queue_human_reply",
        RESUMED,
        "resume_handoff",
        "commit",
        "deliver",
    ]
    assert inbox.call("interrupt")[0] == (node.human_interrupt(state()),)
    assert inbox.call("queue_human_reply") == (
        (inbox.session,),
        {
            "conversation_id": 5,
            "handoff_id": 12,
            "resume": 2,  # keyed by the resume: a re-run queues nothing new
            "actor": "human:ana",
            "text": "Hola, soy Ana",
            "response_type": "response",
        },
    )
    assert inbox.call("resume_handoff") == (
        (inbox.session, rules),
        {
            "conversation_id": 5,
            "handoff_id": 12,
            "agent": "ana",
            "replied": True,
            "close_as": None,
            "language": "es",
        },
    )
    [resumed] = inbox.steps
    assert resumed["actor"] == "human:ana" and resumed["message_id"] == 301
    assert resumed["data"] == {
        "handoff_id": 12,
        "response_type": "response",
        "sent_message_id": 301,
        "return_to_bot": False,
    }
    assert step.update == {"resumes": 3, "owner": "human", "draft": None}


@pytest.mark.parametrize(
    ("response", "status"),
    [
        ({"type": "ignore", "args": None}, "returned"),
        ({"type": "response", "args": "", "return_to_bot": True}, "returned"),
        ({"type": "response", "args": "", "resolve": True}, "resolved"),
    ],
)
async def test_ending_without_a_text_gives_the_conversation_back_to_the_bot(
    monkeypatch: pytest.MonkeyPatch,
    inbox: Effects,
    runtime: Runtime[Context],
    response: dict[str, Any],
    status: str,
) -> None:
    answer(monkeypatch, inbox, response)
    step = await run_step(node.wait_for_human, state(), runtime)
    assert inbox.log == [
        "interrupt",
        "begin",
        "flush",
        RESUMED,
        "resume_handoff",
        OWNER,
        "commit",
        "deliver",
    ]
    _, kwargs = inbox.call("resume_handoff")
    assert (kwargs["replied"], kwargs["close_as"], kwargs["agent"]) == (False, status, "operator")
    resumed, owner = inbox.steps
    assert resumed["data"]["sent_message_id"] is None and resumed["data"]["return_to_bot"]
    assert owner["actor"] == "human:operator"
    assert owner["data"] == {"from": "human", "to": "bot", "handoff_id": 12, "handoff": status}
    assert step.update == {"resumes": 3, "owner": "bot", "handoff_id": None, "draft": None}


async def test_a_resolving_reply_is_sent_then_the_handoff_closes(
    monkeypatch: pytest.MonkeyPatch, inbox: Effects, runtime: Runtime[Context]
) -> None:
    answer(monkeypatch, inbox, {"type": "response", "args": "¡Listo!", "resolve": True})
    step = await run_step(node.wait_for_human, state(), runtime)
    assert inbox.log.index("queue_human_reply") < inbox.log.index("resume_handoff")
    _, kwargs = inbox.call("resume_handoff")
    assert (kwargs["replied"], kwargs["close_as"]) == (True, "resolved")
    assert step.update["owner"] == "bot"


async def test_a_repeated_resume_queues_nothing_new_and_still_delivers(
    monkeypatch: pytest.MonkeyPatch, inbox: Effects, runtime: Runtime[Context]
) -> None:
    monkeypatch.setattr(node, "queue_human_reply", inbox.port("queue_human_reply", None))
    answer(monkeypatch, inbox, {"type": "response", "args": "Hola"})
    await run_step(node.wait_for_human, state(), runtime)
    [resumed] = inbox.steps
    assert resumed["message_id"] is None and resumed["data"]["sent_message_id"] is None
    assert inbox.deliveries == [5]


async def test_in_a_graph_it_pauses_first_and_acts_once_per_answer(
    monkeypatch: pytest.MonkeyPatch, inbox: Effects
) -> None:
    # The real interrupt: a checkpointed one-node graph, resumed as the service resumes it.
    builder = StateGraph(ConversationState, context_schema=Context)
    builder.add_node(node.wait_for_human)
    builder.add_edge(START, "wait_for_human")
    builder.add_conditional_edges("wait_for_human", route_after_wait_for_human)
    graph = builder.compile(checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t-1"}}
    context = Context(use_llm=False)

    paused = await graph.ainvoke(state(resumes=0), config, context=context)
    [request] = paused["__interrupt__"]
    assert request.value["action_request"]["action"] == "reply_to_customer"
    assert inbox.log == []  # a paused node has done nothing

    waiting = await graph.ainvoke(
        Command(resume={"type": "response", "args": "Hola", "agent": "ana"}),
        config,
        context=context,
    )
    assert "__interrupt__" in waiting  # still a human's: waits for the next answer
    assert waiting["resumes"] == 1 and waiting["owner"] == "human"
    assert [c[1]["resume"] for c in inbox.calls["queue_human_reply"]] == [0]

    done = await graph.ainvoke(Command(resume={"type": "ignore"}), config, context=context)
    assert "__interrupt__" not in done
    assert (done["owner"], done["resumes"], done["handoff_id"]) == ("bot", 2, None)
    assert len(inbox.calls["queue_human_reply"]) == 1
    assert [c[1]["close_as"] for c in inbox.calls["resume_handoff"]] == [None, "returned"]
