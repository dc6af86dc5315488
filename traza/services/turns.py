"""Run a conversation turn, and resume one that waits for a human.

Both take the conversation's advisory lock, so a resume from the API and a turn from a
worker never run the same thread at once, on any machine.
"""

from __future__ import annotations

from typing import Any

from langgraph.types import Command

from graphs.conversation.context import Context
from traza import clock, trace
from traza.conversations import repository as repo
from traza.db import queue
from traza.db.engine import autocommit, session_scope
from traza.db.locks import conversation_lock
from traza.db.models import Conversation
from traza.operations import handoffs
from traza.operations.assignment import give
from traza.outbound.sender import RetryLater, deliver
from traza.rules import active
from traza.services.runtime import conversation_graph, thread_config
from traza.settings import get_settings
from traza.trace import kinds
from traza.trace.buffer import flush, turn_scope

RETRY_DELAY_SECONDS = 2.0  # first retry of a send that failed inside the turn


class ConversationNotFound(LookupError):
    """No conversation has that id."""


class NotWaitingForHuman(RuntimeError):
    """The conversation is not paused for a human, so there is nothing to resume."""


def run_context() -> Context:
    """The context every service run uses."""
    return Context(bot_name=get_settings().traza_bot_name)


async def run_turn(conversation_id: int) -> str:
    """Consume the conversation's unprocessed inbound messages as one turn."""
    async with conversation_lock(conversation_id):
        async with autocommit() as conn:
            rows = await repo.pending_turn(conn, conversation_id=conversation_id)
        if not rows:
            return "no such conversation"
        pending = [r for r in rows if r.id is not None]
        if not pending:
            # A run that lost the database after its turn committed left the reply queued.
            await deliver_now(conversation_id, {conversation_id})
            return "nothing to do"
        owner, thread_id = rows[0].owner, rows[0].thread_id
        if owner == "human":
            return await _hold_for_human(conversation_id, [r.id for r in pending])
        turn = [{"id": r.id, "type": r.type, "text": r.text, "payload": r.payload} for r in pending]
        graph = await conversation_graph()
        with turn_scope() as scope:
            await graph.ainvoke(
                # A follow-up a proactive turn left unwritten (no template, a human
                # owner) is not this turn's business.
                {"turn": turn, "followup": None},
                config=thread_config(thread_id),
                context=run_context(),
            )
            if scope.events:  # a path that ended without writing (nothing to send)
                async with session_scope() as session:
                    await flush(session)
        await deliver_now(conversation_id, scope.deliveries)
        return f"turn over {len(turn)} message(s)"


async def _hold_for_human(conversation_id: int, ids: list[int]) -> str:
    """A human owns the conversation: record the messages on the handoff; the bot is silent."""
    rules = await active.current()
    async with session_scope() as session:
        handoff = await handoffs.current_handoff(session, conversation_id)
        await repo.mark_processed(session, ids, handoff_id=handoff.id if handoff else None)
        if handoff is not None:
            await handoffs.customer_waiting(session, handoff, rules)
        await trace.record(
            session,
            conversation_id=conversation_id,
            kind=kinds.MESSAGE_HELD_FOR_HUMAN,
            actor=trace.system("router"),
            data={"messages": ids, "handoff_id": handoff.id if handoff else None},
        )
    return f"held {len(ids)} for a human"


async def deliver_now(conversation_id: int, queued_for: set[int]) -> None:
    """Deliver what the turn queued, in this job (the caller holds the conversation lock).

    A transient failure, or messages for another conversation, become delivery jobs.
    """
    for cid in sorted(queued_for):
        if cid != conversation_id:
            await queue.defer_delivery(cid)
            continue
        try:
            await deliver(cid, locked=True)
        except RetryLater:
            await queue.defer_delivery(cid, delay=RETRY_DELAY_SECONDS)


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


async def take_over(conversation_id: int, *, agent: str) -> dict[str, Any]:
    """An agent takes the conversation from the bot: the graph hands off to them and waits."""
    return await hand_over(
        conversation_id,
        rule="agent-takeover",
        reason=f"{agent} took over the conversation",
        created_by=trace.human(agent),
        agent=agent,
    )


async def hand_over(
    conversation_id: int,
    *,
    rule: str,
    reason: str,
    created_by: str,
    agent: str | None = None,
) -> dict[str, Any]:
    """Hand a conversation to humans from outside a turn (an agent, a follow-up alert).

    Runs the graph's own handoff path (as if routing had chosen a human), so the handoff,
    the owner change and the wait are the same as for a routed handoff.
    """
    async with conversation_lock(conversation_id):
        async with session_scope() as session:
            conversation = await session.get(Conversation, conversation_id)
            if conversation is None:
                raise ConversationNotFound(conversation_id)
            thread_id, team = conversation.thread_id, conversation.team
        if await waiting_interrupts(thread_id):
            raise NotWaitingForHuman("the conversation is already with a human")
        graph = await conversation_graph()
        config = thread_config(thread_id)
        await graph.aupdate_state(
            config,
            {
                "conversation_id": conversation_id,
                "turn": [],
                "followup": None,
                "decision": {
                    "route": "human",
                    "rule": rule,
                    "reason": reason,
                    "action": None,
                    "team": team,
                    "created_by": created_by,
                },
            },
            as_node="decide_route",
        )
        with turn_scope() as scope:
            await graph.ainvoke(None, config=config, context=run_context())
        async with session_scope() as session:
            handoff = await handoffs.current_handoff(session, conversation_id)
            if agent is not None and handoff is not None:
                if handoff.assigned_agent != agent:
                    await give(
                        session, handoff, agent, actor=created_by, kind=kinds.HANDOFF_CLAIMED
                    )
                handoff.status, handoff.accepted_at = "accepted", clock.now()
        await deliver_now(conversation_id, scope.deliveries)
        return {"owner": "human", "waiting_for_human": bool(await waiting_interrupts(thread_id))}


async def run_followup(
    conversation_id: int, thread_id: str, followup: dict[str, Any]
) -> tuple[int | None, bool]:
    """A proactive turn: the graph writes, checks and queues the agent's follow-up.

    Returns the follow-up's message id and whether this run queued it (`send_reply` then
    marked the follow-up sent in the same statement). The id is None when nothing was
    queued: a guardrail blocked it and the conversation went to a human, or a human owns
    the conversation (`load_context` reads the owner under this lock; the bot is silent).
    """
    key = f"followup:{followup['id']}"
    async with conversation_lock(conversation_id):
        graph = await conversation_graph()
        with turn_scope() as scope:
            # Checkpointed once, when the turn ends: a proactive turn has no human step to
            # resume, and a crash re-runs it whole (its send is keyed by the follow-up).
            await graph.ainvoke(
                {"turn": [], "followup": followup},
                config=thread_config(thread_id),
                context=run_context(),
                durability="exit",
            )
            if scope.events:
                async with session_scope() as session:
                    await flush(session)
        message_id = scope.queued.get(key)
        queued_now = message_id is not None
        if message_id is None:  # queued by an earlier run of this follow-up (a crash), or not
            async with autocommit() as conn:
                message_id = await repo.message_id_by_key(conn, idempotency_key=key)
        await deliver_now(conversation_id, scope.deliveries)
        return message_id, queued_now
