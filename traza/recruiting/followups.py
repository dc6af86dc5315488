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

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import TextClause

from traza import clock, trace
from traza.db.engine import direct, run, session_scope
from traza.db.models import Application, Candidate, Contact, FollowUp, Interview, Vacancy
from traza.db.queue import cancel_in, defer_in
from traza.outbound.sender import address_of, unavailable
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
    followup_id: int | None = (
        await session.execute(
            text(
                "INSERT INTO followups (key, agent, trigger, candidate_id, application_id, "
                "interview_id, due_at, expect) VALUES (:key, :agent, :trigger, :cand, :app, "
                ":iv, :due, CAST(:expect AS jsonb)) ON CONFLICT (key) DO NOTHING RETURNING id"
            ),
            {
                "key": key,
                "agent": agent.name,
                "trigger": trigger,
                "cand": candidate_id,
                "app": application_id,
                "iv": interview_id,
                "due": due_at,
                "expect": _json(expect or {}),
            },
        )
    ).scalar_one_or_none()
    if followup_id is None:
        return None
    job_id = await defer_in(
        session,
        FIRE_TASK,
        {"followup_id": followup_id},
        delay=clock.delay_until(due_at),
        queueing_lock=f"followup:{followup_id}",
    )
    await session.execute(update(FollowUp).where(FollowUp.id == followup_id).values(job_id=job_id))
    await trace.record(
        session,
        conversation_id=await conversation_of(session, candidate_id),
        kind=kinds.FOLLOWUP_SCHEDULED,
        actor=actor(agent.name),
        data={"followup_id": followup_id, "trigger": trigger, "due_at": due_at.isoformat()},
    )
    return followup_id


def _json(value: Any) -> str:
    return json.dumps(value, default=str)


async def cancel(
    session: AsyncSession, reason: str, *, triggers: tuple[str, ...] | None = None, **where: int
) -> int:
    """Cancel planned follow-ups matching `where` (application_id=…, interview_id=…)."""
    query = select(FollowUp).where(FollowUp.status == "scheduled")
    for column, value in where.items():
        query = query.where(getattr(FollowUp, column) == value)
    if triggers:
        query = query.where(FollowUp.trigger.in_(triggers))
    rows = (await session.scalars(query.with_for_update())).all()
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
    cid: int | None = (
        await session.execute(
            text(
                "SELECT c.id FROM conversations c JOIN candidates k ON k.contact_id = c.contact_id "
                "WHERE k.id = :id AND c.status = 'open' ORDER BY c.id DESC LIMIT 1"
            ),
            {"id": candidate_id},
        )
    ).scalar_one_or_none()
    return cid


def _why_not(loaded: _Loaded, agent: BotAgentConfig | None) -> tuple[str, str] | None:
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


def _columns(alias: str, model: Any) -> str:
    return ", ".join(f"{alias}.{c.name} AS {alias}__{c.name}" for c in model.__table__.columns)


# The follow-up, locked, with everything its checks and its message read: candidate,
# contact, application, vacancy, interview, the open conversation (the newest) and the
# candidate's answers. Rows are built into (detached) model objects.
LOAD = text(
    f"""
    SELECT {_columns("f", FollowUp)}, {_columns("k", Candidate)}, {_columns("ct", Contact)},
           {_columns("a", Application)}, {_columns("v", Vacancy)}, {_columns("i", Interview)},
           o.id AS open__id, o.owner AS open__owner, o.thread_id AS open__thread_id,
           (SELECT max(m.created_at) FROM messages m JOIN conversations c
               ON c.id = m.conversation_id
             WHERE c.contact_id = k.contact_id AND m.direction = 'in') AS last_reply,
           (SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id
             WHERE c.contact_id = k.contact_id AND m.direction = 'out'
               AND m.idempotency_key LIKE 'followup:%'
               AND m.content->>'trigger' = ANY(CAST(:attempts AS text[]))
               AND m.status NOT IN ('failed', 'skipped', 'template_required')
               AND m.created_at > coalesce(
                   (SELECT max(i2.created_at) FROM messages i2 JOIN conversations c2
                       ON c2.id = i2.conversation_id
                     WHERE c2.contact_id = k.contact_id AND i2.direction = 'in'),
                   '-infinity')) AS unanswered
      FROM followups f
      JOIN candidates k ON k.id = f.candidate_id
      LEFT JOIN contacts ct ON ct.id = k.contact_id
      LEFT JOIN applications a ON a.id = f.application_id
      LEFT JOIN vacancies v ON v.id = a.vacancy_id
      LEFT JOIN interviews i ON i.id = f.interview_id
      LEFT JOIN LATERAL (
        SELECT c.id, c.owner, c.thread_id FROM conversations c
         WHERE c.contact_id = k.contact_id AND c.status = 'open'
         ORDER BY c.id DESC LIMIT 1) o ON true
     WHERE f.id = :followup_id
       FOR UPDATE OF f
    """
)


def _model(model: Any, row: dict[str, Any], alias: str) -> Any:
    """A detached model object from the `alias__column` fields of a row (None if absent)."""
    values = {
        attr.key: row[f"{alias}__{attr.columns[0].name}"] for attr in model.__mapper__.column_attrs
    }
    return model(**values) if values.get("id") is not None else None


@dataclass
class _Loaded:
    """What `fire` reads in its first statement (detached objects: writes go by UPDATE)."""

    followup: FollowUp
    candidate: Candidate
    contact: Contact | None
    application: Application | None
    vacancy: Vacancy | None
    interview: Interview | None
    conversation_id: int | None
    owner: str | None
    thread_id: str | None
    last_reply: datetime | None
    unanswered: int


async def _load(conn: psycopg.AsyncConnection[Any], followup_id: int) -> _Loaded | None:
    """The follow-up, locked, with everything its checks read, in one statement."""
    found = await (
        await run(conn, LOAD, {"followup_id": followup_id, "attempts": ATTEMPTS})
    ).fetchone()
    if found is None:
        return None
    row = found._asdict()
    return _Loaded(
        followup=_model(FollowUp, row, "f"),
        candidate=_model(Candidate, row, "k"),
        contact=_model(Contact, row, "ct"),
        application=_model(Application, row, "a"),
        vacancy=_model(Vacancy, row, "v"),
        interview=_model(Interview, row, "i"),
        conversation_id=row["open__id"],
        owner=row["open__owner"],
        thread_id=row["open__thread_id"],
        last_reply=row["last_reply"],
        unanswered=int(row["unanswered"] or 0),
    )


@lru_cache(maxsize=16)
def _update_sql(columns: tuple[str, ...]) -> TextClause:
    return text(f"UPDATE followups SET {', '.join(f'{c} = :{c}' for c in columns)} WHERE id = :id")


async def _update(conn: psycopg.AsyncConnection[Any], followup_id: int, **values: Any) -> None:
    """Write a follow-up's columns (its object is detached: nothing is flushed)."""
    await run(conn, _update_sql(tuple(values)), {"id": followup_id, **values})


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
        loaded = await _load(conn, followup_id)
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
            await _update(conn, followup.id, job_id=job_id)
            return Firing(done=f"follow-up {followup_id} not due yet")
        candidate = loaded.candidate
        agent = agents.get(followup.agent)
        cid = loaded.conversation_id
        verdict = _why_not(loaded, agent)
        if verdict is not None:
            await _update(conn, followup.id, status=verdict[0], reason=verdict[1], fired_at=now)
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
            await _update(conn, followup.id, due_at=due_at, job_id=job_id)
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
            await _update(
                conn,
                followup.id,
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
        await session.execute(
            update(FollowUp)
            .where(FollowUp.id == followup_id)
            .values(status=status, reason=reason, message_id=message_id, channel=channel)
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


# A new conversation for the candidate, on the agent's inbox (created when named and
# new) or else the first inbox, and the follow-up marked fired: one round trip.
OPEN_SQL = text(
    """
    WITH made AS (
      INSERT INTO inboxes (phone_number_id) SELECT CAST(:pn AS text) WHERE :pn IS NOT NULL
      ON CONFLICT (phone_number_id) DO NOTHING RETURNING id
    ), inbox AS (
      SELECT id FROM made
      UNION ALL
      (SELECT id FROM inboxes WHERE CAST(:pn AS text) IS NULL OR phone_number_id = :pn
        ORDER BY id LIMIT 1)
      LIMIT 1
    ), fired AS (
      UPDATE followups SET fired_at = :now WHERE id = CAST(:followup AS bigint)
    )
    INSERT INTO conversations (inbox_id, contact_id, thread_id)
    SELECT id, :c, :t FROM inbox
    ON CONFLICT DO NOTHING
    RETURNING id, thread_id
    """
)
INBOX_AGAIN_SQL = text("SELECT id FROM inboxes WHERE phone_number_id = :pn")
CONVERSATION_SQL = text(
    "INSERT INTO conversations (inbox_id, contact_id, thread_id) VALUES (:i, :c, :t) "
    "ON CONFLICT DO NOTHING RETURNING id, thread_id"
)
OPEN_AGAIN_SQL = text(
    "SELECT id, thread_id FROM conversations WHERE contact_id = :c AND status = 'open' "
    "ORDER BY id DESC LIMIT 1"
)


async def open_conversation(
    conn: psycopg.AsyncConnection[Any],
    agent: BotAgentConfig,
    candidate: Candidate,
    *,
    loaded: _Loaded,
    fired: tuple[int, datetime],
) -> tuple[int, str] | None:
    """(id, thread id) of the candidate's open conversation, started when there is none.

    A new one is on the agent's inbox. None when there is no WhatsApp contact or no inbox
    to write from. Marks the follow-up fired (`fired`: its id and time) in the same round
    trip.
    """
    followup_id, now = fired
    if loaded.conversation_id is not None and loaded.thread_id is not None:
        await _update(conn, followup_id, fired_at=now)
        return loaded.conversation_id, loaded.thread_id
    if candidate.contact_id is None:
        await _update(conn, followup_id, fired_at=now)
        return None
    new_thread = f"wa-{uuid.uuid4().hex}"
    row = await (
        await run(
            conn,
            OPEN_SQL,
            {
                "pn": agent.inbox,
                "now": now,
                "followup": followup_id,
                "c": candidate.contact_id,
                "t": new_thread,
            },
        )
    ).fetchone()
    if row is not None:
        return row.id, row.thread_id
    # Rare: another transaction created the inbox while the statement ran (its snapshot
    # could not see the row; a new statement does), or opened a conversation first.
    found = await (await run(conn, INBOX_AGAIN_SQL, {"pn": agent.inbox})).fetchone()
    inbox_id = found.id if found is not None else None
    if inbox_id is None and agent.inbox is None:
        log.warning("agent %s: no WhatsApp inbox to write from", agent.name)
        return None
    if inbox_id is not None:
        row = await (
            await run(
                conn, CONVERSATION_SQL, {"i": inbox_id, "c": candidate.contact_id, "t": new_thread}
            )
        ).fetchone()
    if row is None:
        row = await (await run(conn, OPEN_AGAIN_SQL, {"c": candidate.contact_id})).fetchone()
    return (row.id, row.thread_id) if row is not None else None


NEWEST_VACANCY_SQL = text(
    f"SELECT {_columns('v', Vacancy)} FROM vacancies v WHERE v.status = 'open' "
    "ORDER BY v.id DESC LIMIT 1"
)


async def _payload(
    conn: psycopg.AsyncConnection[Any], loaded: _Loaded, agent: BotAgentConfig
) -> dict[str, Any]:
    """What the graph's `write_followup` node needs, read once here."""
    followup, candidate = loaded.followup, loaded.candidate
    application, vacancy, interview = loaded.application, loaded.vacancy, loaded.interview
    if vacancy is None and followup.trigger == "reactivation":  # invite to the newest vacancy
        newest = await (await run(conn, NEWEST_VACANCY_SQL, {})).fetchone()
        vacancy = _model(Vacancy, newest._asdict(), "v") if newest is not None else None
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


# Candidates the agent has not heard from or written to for `after`, with no reactivation
# in that period: invite them back (to the newest open vacancy, when there is one).
INACTIVE_SQL = text(
    """
    SELECT k.id FROM candidates k
      JOIN contacts ct ON ct.id = k.contact_id
     WHERE ct.opted_out_at IS NULL AND k.consent_at IS NOT NULL
       AND greatest(
             k.created_at,
             (SELECT max(f.fired_at) FROM followups f WHERE f.candidate_id = k.id),
             (SELECT max(a.stage_changed_at) FROM applications a WHERE a.candidate_id = k.id),
             (SELECT max(m.created_at) FROM messages m JOIN conversations c
                 ON c.id = m.conversation_id
               WHERE c.contact_id = k.contact_id AND m.direction = 'in')
           ) < :cutoff
       AND NOT EXISTS (SELECT 1 FROM applications a
                        WHERE a.candidate_id = k.id AND a.stage = 'hired')
     ORDER BY k.id
     LIMIT :batch
    """
)


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
            ids: Any = (
                await session.execute(
                    INACTIVE_SQL,
                    {
                        "cutoff": now - config.after,
                        "batch": batch,
                    },
                )
            ).scalars()
            for candidate_id in list(ids):
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
