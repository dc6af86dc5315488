"""Run a conversation turn, and resume one that waits for a human.

Both take the conversation's advisory lock, so a resume from the API and a turn from a
worker never run the same thread at once, on any machine.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from langgraph.types import Command

from graphs.conversation.context import Context
from graphs.conversation.tracing import flush, turn_scope
from traza import trace
from traza.conversations import repository as repo
from traza.db import locks
from traza.db.engine import session_scope
from traza.db.locks import advisory_lock
from traza.db.models import Conversation
from traza.runtime import conversation_graph, thread_config
from traza.settings import get_settings

RETRY_DELAY_SECONDS = 2.0  # first retry of a send that failed inside the turn


class ConversationNotFound(LookupError):
    """No conversation has that id."""


class NotWaitingForHuman(RuntimeError):
    """The conversation is not paused for a human, so there is nothing to resume."""


def conversation_lock(conversation_id: int) -> AbstractAsyncContextManager[None]:
    """The conversation's advisory lock: one graph run at a time, on any machine."""
    return advisory_lock(locks.CONVERSATION, conversation_id)


def run_context() -> Context:
    """The context every service run uses."""
    return Context(bot_name=get_settings().traza_bot_name)


async def run_turn(conversation_id: int) -> str:
    """Consume the conversation's unprocessed inbound messages as one turn."""
    async with conversation_lock(conversation_id):
        async with session_scope() as session:
            conversation = await session.get(Conversation, conversation_id)
            if conversation is None:
                return "no such conversation"
            pending = await repo.unprocessed_inbound(session, conversation_id)
            if not pending:
                return "nothing to do"
            if conversation.owner == "human":
                handoff = await repo.open_handoff(session, conversation_id)
                ids = [m.id for m in pending]
                await repo.mark_processed(session, ids, handoff_id=handoff.id if handoff else None)
                await trace.record(
                    session,
                    conversation_id=conversation_id,
                    kind="message.held_for_human",
                    actor=trace.system("router"),
                    data={"messages": ids, "handoff_id": handoff.id if handoff else None},
                )
                return f"held {len(ids)} for a human"
            turn = [
                {
                    "id": m.id,
                    "type": m.type,
                    "text": m.text,
                    "payload": (m.content or {}).get("reply_id")
                    or (m.content or {}).get("payload"),
                }
                for m in pending
            ]
            thread_id = conversation.thread_id
        graph = await conversation_graph()
        with turn_scope() as scope:
            await graph.ainvoke(
                {"turn": turn}, config=thread_config(thread_id), context=run_context()
            )
            if scope.events:  # a path that ended without writing (nothing to send)
                async with session_scope() as session:
                    await flush(session)
        await deliver_now(conversation_id, scope.deliveries)
        return f"turn over {len(turn)} message(s)"


async def deliver_now(conversation_id: int, queued_for: set[int]) -> None:
    """Deliver what the turn queued, in this job (the caller holds the conversation lock).

    A transient failure, or messages for another conversation, become delivery jobs.
    """
    from traza.jobs.tasks import schedule_delivery
    from traza.outbound.sender import RetryLater, deliver

    for cid in sorted(queued_for):
        if cid != conversation_id:
            await schedule_delivery(cid)
            continue
        try:
            await deliver(cid, locked=True)
        except RetryLater:
            await schedule_delivery(cid, delay=RETRY_DELAY_SECONDS)


async def waiting_interrupts(thread_id: str) -> list[Any]:
    """The pending interrupts of a thread (empty when it is not waiting)."""
    graph = await conversation_graph()
    snapshot = await graph.aget_state(thread_config(thread_id))
    return list(snapshot.interrupts)


async def resume(conversation_id: int, *, response: dict[str, Any], agent: str) -> dict[str, Any]:
    """Resume a conversation paused for a human with an agent-inbox `HumanResponse`."""
    async with conversation_lock(conversation_id):
        async with session_scope() as session:
            conversation = await session.get(Conversation, conversation_id)
            if conversation is None:
                raise ConversationNotFound(conversation_id)
            thread_id = conversation.thread_id
        if not await waiting_interrupts(thread_id):
            raise NotWaitingForHuman(conversation_id)
        graph = await conversation_graph()
        result = await graph.ainvoke(
            Command(resume={**response, "agent": agent}),
            config=thread_config(thread_id),
            context=run_context(),
        )
        return {
            "owner": result.get("owner"),
            "waiting_for_human": bool(await waiting_interrupts(thread_id)),
        }
