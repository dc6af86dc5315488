"""The follow-up agent's clock: plan a message at a time, then re-check it when it fires.

A follow-up is a `followups` row plus a procrastinate job at its due time, committed
together. When the job fires, everything that could make the message stale or unwelcome
is checked again — the stage moved, the interview moved or was cancelled, the candidate
answered, a human owns the conversation, the candidate opted out, the attempt limit was
reached, it is outside the candidate's contact hours — and the outcome is recorded.
A message that survives runs through the conversation graph (same thread, same trace,
same guardrails) as a proactive turn.

Channels: the agent's `channels`, in its order, less those that cannot reach the
candidate now (unreachable on WhatsApp, no e-mail address or phone, channel not
configured). The first is the message's channel; the e-mail and SMS channels after it
are its fallback plan, used by the sender if the first turns out unreachable.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy.ext.asyncio import AsyncSession

from traza import clock, trace
from traza.db.engine import direct, session_scope
from traza.db.models import Candidate, Contact
from traza.db.queue import cancel_in, defer_in
from traza.outbound.sender import address_of, unavailable
from traza.recruiting import repository
from traza.recruiting.agents import BotAgentConfig, active_agents, next_contact_time
from traza.recruiting.messages import placeholders
from traza.trace import kinds

log = logging.getLogger(__name__)

FIRE_TASK = "fire_followup"
# Triggers that ask for an answer: a reply from the candidate makes them moot.
ANSWER_MOOTS = {"no_activity", "reactivation"}
# Contact attempts: messages that ask the candidate for an answer. Notices (a stage
# change, a reminder, thanks) are not attempts, but once the limit is reached the agent
# pauses everything until the candidate writes.
ATTEMPTS = ["application_received", "no_activity", "reactivation", "interview_24h"]


def actor(agent: str) -> str:
    """The trace actor of an agent (its messages are `bot:<agent>`)."""
    return trace.bot(agent)


async def schedule(
    session: AsyncSession,
    *,
    agent: BotAgentConfig,
    trigger: str,
    key: str,
    candidate_id: int,
    due_at: datetime,
    application_id: int | None = None,
    interview_id: int | None = None,
    expect: dict[str, Any] | None = None,
) -> int | None:
    """Plan a follow-up (once per key); None when disabled or already planned."""
    if not agent.trigger(trigger).enabled:
        return None
    followup_id = await repository.add_followup(
        session,
        key=key,
        agent=agent.name,
        trigger=trigger,
        candidate_id=candidate_id,
        application_id=application_id,
        interview_id=interview_id,
        due_at=due_at,
        expect=expect or {},
    )
    if followup_id is None:
        return None
    job_id = await defer_in(
        session,
        FIRE_TASK,
        {"followup_id": followup_id},
        delay=clock.delay_until(due_at),
        queueing_lock=f"followup:{followup_id}",
    )
    await repository.set_followup_job(session, followup_id=followup_id, job_id=job_id)
    await trace.record(
        session,
        conversation_id=await conversation_of(session, candidate_id),
        kind=kinds.FOLLOWUP_SCHEDULED,
        actor=actor(agent.name),
        data={"followup_id": followup_id, "trigger": trigger, "due_at": due_at.isoformat()},
    )
    return followup_id


async def cancel(
    session: AsyncSession, reason: str, *, triggers: tuple[str, ...] | None = None, **where: int
) -> int:
    """Cancel planned follow-ups matching `where` (application_id=…, interview_id=…)."""
    rows = await repository.lock_scheduled_followups(session, triggers=triggers, **where)
    for row in rows:
        row.status, row.reason = "cancelled", reason
        await cancel_in(session, row.job_id)
        await trace.record(
            session,
            conversation_id=await conversation_of(session, row.candidate_id),
            kind=kinds.FOLLOWUP_CANCELLED,
            actor=trace.system("followups"),
            data={"followup_id": row.id, "trigger": row.trigger, "reason": reason},
        )
    return len(rows)


async def conversation_of(session: AsyncSession, candidate_id: int) -> int | None:
    """The candidate's open WhatsApp conversation, if any."""
    return await repository.open_conversation_of_candidate(session, candidate_id=candidate_id)


def _why_not(
    loaded: repository.LoadedFollowup, agent: BotAgentConfig | None
) -> tuple[str, str] | None:
    """(status, reason) when the follow-up must not be sent now; None when it may."""
    followup, candidate, owner = loaded.followup, loaded.candidate, loaded.owner
    if agent is None:
        return "cancelled", f"agent '{followup.agent}' is no longer configured"
    contact = loaded.contact
    if contact is not None and contact.opted_out_at is not None:
        return "cancelled", "the candidate opted out"
    expect = followup.expect or {}
    if followup.application_id is not None:
        application = loaded.application
        if application is None:
            return "cancelled", "the application no longer exists"
        if "stage" in expect and application.stage != expect["stage"]:
            return "skipped", f"stale: the stage moved to '{application.stage}'"
    if followup.interview_id is not None:
        interview = loaded.interview
        if interview is None or interview.status in ("cancelled", "no_show"):
            return "skipped", "stale: the interview was cancelled"
        planned = expect.get("starts_at")
        if planned and interview.starts_at != datetime.fromisoformat(planned):
            return "skipped", "stale: the interview moved"
        if (
            followup.trigger in ("interview_24h", "interview_1h")
            and interview.status == "completed"
        ):
            return "skipped", "stale: the interview already happened"
    if owner == "human":
        return "skipped", "a human owns the conversation"
    if candidate.contact_id is not None:
        if (
            followup.trigger in ANSWER_MOOTS
            and loaded.last_reply
            and loaded.last_reply > followup.created_at
        ):
            return "skipped", "the candidate answered"
        if loaded.unanswered >= agent.limits.max_attempts:
            return "paused", (
                f"{loaded.unanswered} messages without an answer "
                f"(limit {agent.limits.max_attempts}): paused until the candidate writes"
            )
    return None


@dataclass(frozen=True)
class Alert:
    """The team must be told: hand the conversation to humans (`services.turns.hand_over`)."""

    conversation_id: int
    rule: str
    reason: str
    created_by: str


@dataclass(frozen=True)
class Send:
    """The follow-up is due and allowed: the graph writes, checks and queues it."""

    conversation_id: int
    thread_id: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Firing:
    """What a follow-up's due time decided (`prepare`); the service carries it out."""

    done: str | None = None
    """The outcome when nothing is left to do (or only `alert`)."""
    alert: Alert | None = None
    send: Send | None = None


async def prepare(followup_id: int) -> Firing:
    """A follow-up's due time: re-check, wait for contact hours, or say what to send.

    Every check and every write of the follow-up's row happens here, in one transaction;
    `traza.services.followups.fire` then runs the turn that sends it.
    """
    agents = active_agents()
    # psycopg directly (one transaction, detached objects): this runs for every follow-up.
    async with direct() as conn, conn.transaction():
        loaded = await repository.load_followup(conn, followup_id=followup_id, attempts=ATTEMPTS)
        followup = loaded.followup if loaded else None
        if loaded is None or followup is None or followup.status != "scheduled":
            return Firing(
                done=f"follow-up {followup_id} is {followup.status if followup else 'gone'}"
            )
        now = clock.now()
        if followup.due_at > now:  # early (a re-armed job, clock skew): wait again
            job_id = await defer_in(
                conn,
                FIRE_TASK,
                {"followup_id": followup.id},
                delay=clock.delay_until(followup.due_at),
            )
            await repository.update_followup(conn, followup_id=followup.id, job_id=job_id)
            return Firing(done=f"follow-up {followup_id} not due yet")
        candidate = loaded.candidate
        agent = agents.get(followup.agent)
        cid = loaded.conversation_id
        verdict = _why_not(loaded, agent)
        if verdict is not None:
            await repository.update_followup(
                conn, followup_id=followup.id, status=verdict[0], reason=verdict[1], fired_at=now
            )
            await trace.record(
                conn,
                conversation_id=cid,
                kind=kinds.followup_outcome(verdict[0]),
                actor=trace.system("followups"),
                data={
                    "followup_id": followup.id,
                    "trigger": followup.trigger,
                    "reason": verdict[1],
                },
            )
            return Firing(done=f"follow-up {followup_id} {verdict[0]}: {verdict[1]}")
        assert agent is not None
        local = now.astimezone(ZoneInfo(candidate.timezone))
        opens = next_contact_time(agent, local)
        if opens != local:  # outside contact hours: wait for the next window
            due_at = opens.astimezone(now.tzinfo)
            job_id = await defer_in(
                conn,
                FIRE_TASK,
                {"followup_id": followup.id},
                delay=clock.delay_until(due_at),
            )
            await repository.update_followup(
                conn, followup_id=followup.id, due_at=due_at, job_id=job_id
            )
            await trace.record(
                conn,
                conversation_id=cid,
                kind=kinds.FOLLOWUP_DEFERRED,
                actor=trace.system("followups"),
                data={
                    "followup_id": followup.id,
                    "trigger": followup.trigger,
                    "reason": "outside contact hours in the candidate's time zone",
                    "candidate_time": local.isoformat(),
                    "until": opens.isoformat(),
                },
            )
            return Firing(done=f"follow-up {followup_id} deferred to {opens.isoformat()}")
        if followup.trigger == "interview_unconfirmed":
            alert = agent.trigger("interview_unconfirmed").alert
            await repository.update_followup(
                conn,
                followup_id=followup.id,
                fired_at=now,
                status="sent" if alert == "handoff" else "skipped",
                reason="the candidate has not confirmed: the team is alerted",
            )
            await trace.record(
                conn,
                conversation_id=cid,
                kind=kinds.FOLLOWUP_ALERT,
                actor=actor(agent.name),
                data={"followup_id": followup.id, "interview_id": followup.interview_id},
            )
        else:  # read once, in the transaction that marks it fired
            payload = await _payload(conn, loaded, agent)
            opened = await open_conversation(
                conn, agent, candidate, loaded=loaded, fired=(followup.id, now)
            )
    if followup.trigger == "interview_unconfirmed":
        told: Alert | None = None
        if cid is not None and agent.trigger("interview_unconfirmed").alert == "handoff":
            told = Alert(
                conversation_id=cid,
                rule="interview-unconfirmed",
                reason="the candidate has not confirmed tomorrow's interview",
                created_by=actor(agent.name),
            )
        return Firing(done=f"follow-up {followup_id}: team alerted", alert=told)
    if opened is None:
        reason = (
            "no WhatsApp contact: every follow-up, on any channel, lives in the candidate's "
            "conversation, which needs one"
            if candidate.contact_id is None
            else "no way to reach the candidate"
        )
        return Firing(done=await finish(followup_id, "skipped", reason))
    return Firing(send=Send(conversation_id=opened[0], thread_id=opened[1], payload=payload))


async def finish(
    followup_id: int,
    status: str,
    reason: str | None,
    *,
    message_id: int | None = None,
    channel: str | None = None,
) -> str:
    """Write a follow-up's final status (and the message that carried it)."""
    async with session_scope() as session:
        await repository.set_followup_outcome(
            session,
            followup_id=followup_id,
            status=status,
            reason=reason,
            message_id=message_id,
            channel=channel,
        )
    return f"follow-up {followup_id} {status}"


def channel_plan(
    agent: BotAgentConfig, candidate: Candidate, contact: Contact | None
) -> tuple[list[str], dict[str, str]]:
    """The channels to try, in the agent's order, and why the others cannot be used now.

    When none can reach the candidate, the agent's first channel stays, so the sender
    records why the message could not go.
    """
    plan: list[str] = []
    not_now: dict[str, str] = {}
    for channel in agent.channels:
        address = address_of(
            channel,
            wa_id=contact.wa_id if contact else candidate.wa_id,
            bsuid=contact.bsuid if contact else None,
            email=candidate.email,
            phone=candidate.phone,
        )
        if channel == "whatsapp" and contact is None:
            problem: str | None = "no WhatsApp contact"
        else:
            problem = unavailable(
                channel,
                address=address,
                unreachable=contact is not None and contact.unreachable_at is not None,
            )
        if problem:
            not_now[channel] = problem
        else:
            plan.append(channel)
    return plan or [agent.channels[0]], not_now


async def open_conversation(
    conn: psycopg.AsyncConnection[Any],
    agent: BotAgentConfig,
    candidate: Candidate,
    *,
    loaded: repository.LoadedFollowup,
    fired: tuple[int, datetime],
) -> tuple[int, str] | None:
    """(id, thread id) of the candidate's open conversation, started when there is none.

    A new one is on the agent's inbox. None when there is no WhatsApp contact or no inbox
    to write from. Marks the follow-up fired (`fired`: its id and time) in the same round
    trip.
    """
    followup_id, now = fired
    if loaded.conversation_id is not None and loaded.thread_id is not None:
        await repository.update_followup(conn, followup_id=followup_id, fired_at=now)
        return loaded.conversation_id, loaded.thread_id
    if candidate.contact_id is None:
        await repository.update_followup(conn, followup_id=followup_id, fired_at=now)
        return None
    new_thread = f"wa-{uuid.uuid4().hex}"
    opened = await repository.open_conversation_firing(
        conn,
        inbox=agent.inbox,
        now=now,
        followup_id=followup_id,
        contact_id=candidate.contact_id,
        thread_id=new_thread,
    )
    if opened is not None:
        return opened
    # Rare: another transaction created the inbox while the statement ran (its snapshot
    # could not see the row; a new statement does), or opened a conversation first.
    inbox_id = await repository.inbox_id_of(conn, phone_number_id=agent.inbox)
    if inbox_id is None and agent.inbox is None:
        log.warning("agent %s: no WhatsApp inbox to write from", agent.name)
        return None
    if inbox_id is not None:
        opened = await repository.add_conversation(
            conn, inbox_id=inbox_id, contact_id=candidate.contact_id, thread_id=new_thread
        )
    if opened is None:
        opened = await repository.open_conversation_of_contact(
            conn, contact_id=candidate.contact_id
        )
    return opened


async def _payload(
    conn: psycopg.AsyncConnection[Any], loaded: repository.LoadedFollowup, agent: BotAgentConfig
) -> dict[str, Any]:
    """What the graph's `write_followup` node needs, read once here."""
    followup, candidate = loaded.followup, loaded.candidate
    application, vacancy, interview = loaded.application, loaded.vacancy, loaded.interview
    if vacancy is None and followup.trigger == "reactivation":  # invite to the newest vacancy
        vacancy = await repository.newest_open_vacancy(conn)
    channels, not_now = channel_plan(agent, candidate, loaded.contact)
    return {
        "id": followup.id,
        "agent": agent.name,
        "trigger": followup.trigger,
        "language": candidate.locale,
        "values": placeholders(agent, candidate, application, vacancy, interview),
        "interview_id": interview.id if interview else None,
        "due_at": followup.due_at.isoformat(),
        "fired_at": clock.now().isoformat(),
        "channels": channels,
        "unavailable": not_now,
    }


async def plan_reactivations(batch: int = 1000) -> int:
    """Plan a reactivation for inactive candidates of every agent that has it enabled."""
    planned = 0
    now = clock.now()
    for agent in active_agents().values():
        config = agent.trigger("reactivation")
        if not config.enabled or config.after is None:
            continue
        period = int(now.timestamp() // config.after.total_seconds())
        async with session_scope() as session:
            ids = await repository.inactive_candidate_ids(
                session, cutoff=now - config.after, batch=batch
            )
            for candidate_id in ids:
                if await schedule(
                    session,
                    agent=agent,
                    trigger="reactivation",
                    key=f"reactivation:{candidate_id}:{period}",
                    candidate_id=candidate_id,
                    due_at=now,
                ):
                    planned += 1
    return planned
