"""The handoff lifecycle, each change recorded in the conversation's trace.

A handoff is queued for a team, assigned, accepted, answered, transferred, and finally
resolved or returned to the bot.

These functions run in the caller's transaction; jobs they queue (assignment, SLA
timers, integration calls) commit with them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

import prompts
from traza import clock, trace
from traza.conversations.repository import mark_processed
from traza.db.models import Handoff, Note
from traza.db.queue import defer_in
from traza.operations import csat, repository, sla
from traza.operations.agents import OperationsError
from traza.operations.assignment import give
from traza.outbound.outbox import queue_message
from traza.rules.loader import LoadedRules
from traza.trace import kinds

ASSIGN_TASK = "assign_team"
OPEN = repository.OPEN


async def queue_assignment(
    session: AsyncSession, team: str | None, *, at: datetime | None = None
) -> None:
    """Queue a round of assignment for `team`, now or at `at` (its opening time).

    One waiting round per team and moment (queueing lock). No procrastinate `lock`: a
    round scheduled for Monday's opening must not hold back today's rounds; rounds
    serialise on a transaction-scoped advisory lock instead.
    """
    if team:
        await defer_in(
            session,
            ASSIGN_TASK,
            {"team": team},
            delay=clock.delay_until(at) if at else 0.0,
            queueing_lock=f"assign:{team}:{at.isoformat()}" if at else f"assign:{team}",
        )


async def open_handoff(
    session: AsyncSession,
    rules: LoadedRules,
    *,
    conversation_id: int,
    decision: dict[str, Any],
    created_by: str,
    language: str | None,
) -> tuple[Handoff, bool]:
    """The conversation's open handoff, or a new one queued for the decided team."""
    existing = await repository.active_handoff_of(session, conversation_id=conversation_id)
    if existing is not None:
        return existing, False
    team = decision.get("team") or rules.rules.default_team
    team_rules = rules.rules.teams.get(team)
    priority = decision.get("priority") or (
        team_rules.priority if team_rules and team_rules.priority else rules.rules.default_priority
    )
    hours = sla.hours_for(rules, team)
    now = clock.now()
    opens = hours.next_open(now)
    closed = opens is None or opens > now
    handoff = Handoff(
        conversation_id=conversation_id,
        reason=decision.get("rule") or "handoff",
        summary=decision.get("reason"),
        created_by=created_by,
        team=team,
        priority=priority,
        query_type=decision.get("query_type"),
        rules_version=rules.version,
        waiting_until=opens if closed else None,
    )
    session.add(handoff)
    await session.flush()
    await repository.give_to_humans(session, conversation_id=conversation_id, team=team)
    await trace.record(
        session,
        conversation_id=conversation_id,
        kind=kinds.HANDOFF_CREATED,
        actor=created_by,
        data={
            "handoff_id": handoff.id,
            "rule": decision.get("rule"),
            "reason": decision.get("reason"),
            "team": team,
            "priority": priority,
            "query_type": handoff.query_type,
            "out_of_hours": closed,
            "waiting_until": opens.isoformat() if closed and opens else None,
            "rules_version": rules.version,
        },
    )
    if closed:
        opens_local = opens.astimezone(hours.zone).strftime("%H:%M %d/%m") if opens else "?"
        text = (team_rules.out_of_hours.message if team_rules else None) or prompts.reply(
            "out_of_hours", language, opens=opens_local
        )
        # Keyed by the closure (its reopening time): once per conversation per closure.
        await queue_message(
            session,
            conversation_id=conversation_id,
            key=f"out-of-hours:{conversation_id}:{opens.isoformat() if opens else 'never'}",
            actor=trace.system("hours"),
            kind="text",
            text_body=text,
        )
        if opens:
            await queue_assignment(session, team, at=opens)
    else:
        notice = "guardrail_fallback" if decision.get("rule") == "guardrail" else "handoff_notice"
        await queue_message(
            session,
            conversation_id=conversation_id,
            key=f"handoff-notice:{handoff.id}",
            actor=trace.system("handoff"),
            kind="text",
            text_body=prompts.reply(notice, language),
        )
        await queue_assignment(session, team)
    await sla.start(session, rules, handoff, "first_response", at=now)
    await sla.start(session, rules, handoff, "resolution", at=now)
    return handoff, True


async def hand_off(
    session: AsyncSession,
    rules: LoadedRules,
    *,
    conversation_id: int,
    decision: dict[str, Any],
    created_by: str,
    language: str | None,
    message_ids: list[int],
) -> tuple[int, bool]:
    """Give the conversation to humans: `(handoff id, whether it was opened now)`.

    The open handoff is reused (see `open_handoff`); the turn's messages are consumed and
    attached to it.
    """
    handoff, created = await open_handoff(
        session,
        rules,
        conversation_id=conversation_id,
        decision=decision,
        created_by=created_by,
        language=language,
    )
    await mark_processed(session, message_ids, handoff_id=handoff.id)
    return handoff.id, created


async def human_replied(
    session: AsyncSession, handoff_id: int | None, agent: str, rules: LoadedRules
) -> None:
    """An agent answered the customer: the response clocks stop, the handoff is accepted."""
    handoff = await session.get(Handoff, handoff_id) if handoff_id else None
    if handoff is None:
        return
    now = clock.now()
    if handoff.first_response_at is None:
        handoff.first_response_at = now
    handoff.last_response_at = now
    if handoff.status in ("open", "assigned"):
        handoff.status = "accepted"
        handoff.assigned_agent = handoff.assigned_agent or agent
        handoff.assigned_at = handoff.assigned_at or now
        handoff.accepted_at = now
    await sla.stop(session, handoff, ("first_response", "next_response"), actor=trace.human(agent))


async def customer_waiting(session: AsyncSession, handoff: Handoff, rules: LoadedRules) -> None:
    """The customer wrote while a human owns the conversation: the next-response clock runs."""
    if handoff.first_response_at is not None:
        await sla.start(session, rules, handoff, "next_response")


async def close(
    session: AsyncSession,
    rules: LoadedRules,
    handoff_id: int | None,
    *,
    status: str,
    actor: str,
    language: str | None,
) -> bool:
    """Resolve or return the handoff: clocks stop, the team's queue moves, CSAT is asked."""
    handoff = await session.get(Handoff, handoff_id, with_for_update=True) if handoff_id else None
    if handoff is None or handoff.status not in OPEN:
        return False
    handoff.status = status
    handoff.closed_at = clock.now()
    handoff.closed_by = actor
    await sla.stop(
        session,
        handoff,
        ("first_response", "next_response", "resolution"),
        status="met" if status == "resolved" else "cancelled",
        actor=actor,
    )
    await queue_assignment(session, handoff.team)  # the agent has room for the next one
    if status == "resolved":
        await csat.ask(session, rules, handoff, language)
    return True


async def queue_human_reply(
    session: AsyncSession,
    *,
    conversation_id: int,
    handoff_id: int | None,
    resume: int,
    actor: str,
    text: str,
    response_type: str | None,
) -> int | None:
    """Queue a human's answer from the inbox; None when this resume queued it before.

    Keyed by the handoff and the resume it answers: a re-run resume queues nothing new.
    """
    return await queue_message(
        session,
        conversation_id=conversation_id,
        key=f"human:{conversation_id}:{handoff_id}:{resume}",
        actor=actor,
        kind="text",
        text_body=text,
        content={"body": text, "response_type": response_type},
    )


async def resume_handoff(
    session: AsyncSession,
    rules: LoadedRules,
    *,
    conversation_id: int,
    handoff_id: int | None,
    agent: str,
    replied: bool,
    close_as: str | None,
    language: str | None,
) -> None:
    """What a human's answer changes: their reply, closing the handoff, who owns the chat.

    A reply (`replied`) stops the response clocks and accepts the handoff (`human_replied`).
    `close_as` (`resolved` or `returned`) closes the handoff (`close`) and gives the
    conversation back to the bot; without it the first agent to answer owns the
    conversation.
    """
    if replied:
        await human_replied(session, handoff_id, agent, rules)
    if close_as:
        await close(
            session,
            rules,
            handoff_id,
            status=close_as,
            actor=trace.human(agent),
            language=language,
        )
        await repository.give_back_to_bot(session, conversation_id=conversation_id)
    else:
        await repository.claim_conversation(session, conversation_id=conversation_id, agent=agent)


async def add_note(
    session: AsyncSession, *, conversation_id: int, handoff_id: int | None, author: str, body: str
) -> Note:
    """An internal note: in the trace and the inbox, never sent to the customer."""
    note = Note(conversation_id=conversation_id, handoff_id=handoff_id, author=author, body=body)
    session.add(note)
    await session.flush()
    await trace.record(
        session,
        conversation_id=conversation_id,
        kind=kinds.NOTE_ADDED,
        actor=trace.human(author),
        data={"note_id": note.id, "handoff_id": handoff_id, "body": body},
    )
    return note


async def transfer(
    session: AsyncSession,
    rules: LoadedRules,
    handoff: Handoff,
    *,
    by: str,
    to_team: str | None,
    to_agent: str | None,
    note: str | None,
) -> None:
    """Move the handoff to another team (queued there) and/or a named agent."""
    team = to_team or handoff.team
    if team is None:
        raise OperationsError("the handoff has no team: name one with 'team'")
    if to_team and not await repository.team_id_named(session, name=to_team):
        raise OperationsError(f"unknown team '{to_team}'")
    if to_agent and not await repository.is_member(session, agent=to_agent, team=team):
        raise OperationsError(f"agent '{to_agent}' is not in team '{team}'")
    from_team, from_agent = handoff.team, handoff.assigned_agent
    note_id = None
    if note:
        note_id = (
            await add_note(
                session,
                conversation_id=handoff.conversation_id,
                handoff_id=handoff.id,
                author=by,
                body=note,
            )
        ).id
    handoff.team = team
    await repository.move_conversation(session, conversation_id=handoff.conversation_id, team=team)
    await trace.record(
        session,
        conversation_id=handoff.conversation_id,
        kind=kinds.HANDOFF_TRANSFERRED,
        actor=trace.human(by),
        data={
            "handoff_id": handoff.id,
            "from_team": from_team,
            "to_team": team,
            "from_agent": from_agent,
            "to_agent": to_agent,
            "note_id": note_id,
            "rules_version": rules.version,
        },
    )
    if to_agent:
        await give(
            session,
            handoff,
            to_agent,
            actor=trace.human(by),
            kind=kinds.HANDOFF_ASSIGNED,
            rule="transfer",
        )
    else:
        handoff.status, handoff.assigned_agent, handoff.assigned_at = "open", None, None
        await repository.unassign_conversation(session, conversation_id=handoff.conversation_id)
        await queue_assignment(session, team)
    if from_agent and from_agent != to_agent:
        await queue_assignment(session, from_team)


async def current_handoff(session: AsyncSession, conversation_id: int) -> Handoff | None:
    """The conversation's open (queued, assigned or accepted) handoff, if any."""
    return await repository.only_active_handoff(session, conversation_id=conversation_id)
