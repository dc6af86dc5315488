"""The recruiting package's SQL: every statement its modules run, and no other rule.

What the candidate and calendar tools, the calendar feed and the monitor read
(candidates, applications, vacancies, interviews, interviewers, the sent follow-ups and
an agent's figures); what follow-ups plan, cancel and fire; what ATS events and the
importer's batches write; whom a reply may name.

Each function takes the caller's session or connection (a SQLAlchemy `AsyncSession` or
`AsyncConnection`, or the psycopg connection of `traza.db.engine.direct` a firing
follow-up holds) and leaves the transaction (flush, commit) to it; `for_update` locks
the rows read until that transaction ends. It imports none of the modules that call it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import psycopg
from sqlalchemy import Row, ScalarResult, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.elements import TextClause

from traza import clock
from traza.db.engine import run
from traza.db.models import (
    Application,
    Candidate,
    Contact,
    FollowUp,
    Interview,
    Interviewer,
    RecruitingEvent,
    Team,
    Vacancy,
)

# The repository imports none of the package's modules that call it (`interviews`,
# `followups`, ...): the statuses the statements filter on live here, and `interviews`
# takes them from here.
ACTIVE = ("scheduled", "confirmed", "rescheduled")
"""Statuses of an interview that is still going to happen."""

SENT_SQL = text(
    """
    SELECT f.fired_at, f.trigger,
           (m.delivered_at IS NOT NULL OR m.read_at IS NOT NULL) AS delivered
      FROM followups f
      JOIN messages m ON m.id = f.message_id
     WHERE f.agent = :agent AND f.status = 'sent' AND f.fired_at IS NOT NULL
       AND (CAST(:since AS timestamptz) IS NULL OR f.fired_at >= CAST(:since AS timestamptz))
     ORDER BY f.fired_at
    """
)

# The conversation's own person (contact and candidate) and the candidates and agents
# whose name, e-mail or phone's last eight digits are among those a reply holds.
PEOPLE_SQL = text(
    """
    WITH own AS (
        SELECT ct.wa_id, ct.profile_name, k.id AS candidate_id, k.name, k.email, k.phone
          FROM conversations c JOIN contacts ct ON ct.id = c.contact_id
          LEFT JOIN candidates k ON k.contact_id = ct.id
         WHERE c.id = :cid
    )
    SELECT 'own' AS whose, o.wa_id AS phone, o.profile_name AS name, NULL AS email FROM own o
    UNION ALL SELECT 'own', o.phone, o.name, o.email FROM own o
    UNION ALL
    SELECT 'other', k.phone, k.name, k.email FROM candidates k
     WHERE k.id IS DISTINCT FROM (SELECT candidate_id FROM own)
       AND (lower(k.name) = ANY(:names) OR lower(k.email) = ANY(:emails)
            OR right(regexp_replace(coalesce(k.phone, k.wa_id, ''), '\\D', '', 'g'), 8)
               = ANY(:phones))
    UNION ALL
    SELECT 'other', NULL, a.name, a.email FROM agents a
     WHERE lower(a.name) = ANY(:names) OR lower(a.email) = ANY(:emails)
    """
)


# --- candidates, applications, vacancies ---------------------------------------------------


async def candidate_by_id(
    session: AsyncSession, *, candidate_id: int, for_update: bool = False
) -> Candidate | None:
    """The candidate with this id, if any."""
    query = select(Candidate).where(Candidate.id == candidate_id)
    return await session.scalar(query.with_for_update() if for_update else query)


async def candidate_name_of_contact(session: AsyncSession, *, contact_id: int) -> str | None:
    """The name of the candidate who is this contact, if any."""
    return await session.scalar(select(Candidate.name).where(Candidate.contact_id == contact_id))


async def application_of_candidate(
    session: AsyncSession, *, candidate_id: int, application_id: int
) -> tuple[Application, Vacancy] | None:
    """The application with its vacancy, if it is this candidate's."""
    row = (
        await session.execute(
            select(Application, Vacancy)
            .join(Vacancy, Vacancy.id == Application.vacancy_id)
            .where(Application.id == application_id, Application.candidate_id == candidate_id)
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def applications_of_candidate(
    session: AsyncSession, *, candidate_id: int
) -> list[tuple[Application, Vacancy]]:
    """The candidate's applications with their vacancies, oldest first."""
    rows = await session.execute(
        select(Application, Vacancy)
        .join(Vacancy, Vacancy.id == Application.vacancy_id)
        .where(Application.candidate_id == candidate_id)
        .order_by(Application.id)
    )
    return [(a, v) for a, v in rows.all()]


async def required_fields_of_candidate(
    session: AsyncSession, *, candidate_id: int
) -> list[list[Any]]:
    """The `required_fields` of the vacancy of each of the candidate's applications."""
    required: ScalarResult[list[Any]] = await session.scalars(
        select(Vacancy.required_fields)
        .join(Application, Application.vacancy_id == Vacancy.id)
        .where(Application.candidate_id == candidate_id)
    )
    return list(required)


# --- interviews and interviewers -----------------------------------------------------------

# The interview, only if it belongs to the candidate of this conversation.
OWN_INTERVIEW = text(
    """
    SELECT i.id FROM interviews i
      JOIN applications a ON a.id = i.application_id
      JOIN candidates k ON k.id = a.candidate_id
      JOIN conversations c ON c.contact_id = k.contact_id
     WHERE i.id = :iid AND c.id = :cid
     FOR UPDATE OF i
    """
)


async def own_interview_id(
    session: AsyncSession, *, interview_id: int, conversation_id: int
) -> int | None:
    """The interview's id, locked, if it is the candidate's of this conversation."""
    found: int | None = (
        await session.execute(OWN_INTERVIEW, {"iid": interview_id, "cid": conversation_id})
    ).scalar()
    return found


async def interview_of_candidate(
    session: AsyncSession, *, candidate_id: int, interview_id: int, for_update: bool = False
) -> Interview | None:
    """The interview, if it belongs to one of this candidate's applications."""
    query = (
        select(Interview)
        .join(Application, Application.id == Interview.application_id)
        .where(Interview.id == interview_id, Application.candidate_id == candidate_id)
    )
    if for_update:
        query = query.with_for_update(of=Interview)
    return await session.scalar(query)


async def upcoming_interviews(
    session: AsyncSession, *, application_ids: list[int]
) -> Sequence[Interview]:
    """Active interviews of these applications that have not ended, soonest first."""
    return (
        await session.scalars(
            select(Interview)
            .where(
                Interview.application_id.in_(application_ids),
                Interview.status.in_(ACTIVE),
                Interview.ends_at > clock.now(),
            )
            .order_by(Interview.starts_at)
        )
    ).all()


async def upcoming_interview_id(session: AsyncSession, *, application_id: int) -> int | None:
    """The id of an active interview of the application that has not ended, if any."""
    return await session.scalar(
        select(Interview.id).where(
            Interview.application_id == application_id,
            Interview.status.in_(ACTIVE),
            Interview.ends_at > clock.now(),
        )
    )


async def busy_times(
    session: AsyncSession,
    *,
    interviewer_id: int,
    candidate_id: int,
    start: datetime,
    end: datetime,
    skip: int | None = None,
) -> list[tuple[datetime, datetime]]:
    """(start, end) of the interviewer's or the candidate's interviews in the window.

    Cancelled interviews do not count; `skip` leaves out one interview (the one moving).
    """
    query = (
        select(Interview.starts_at, Interview.ends_at)
        .join(Application, Application.id == Interview.application_id)
        .where(
            Interview.status != "cancelled",
            Interview.starts_at < end,
            Interview.ends_at > start,
            or_(
                Interview.interviewer_id == interviewer_id,
                Application.candidate_id == candidate_id,
            ),
        )
    )
    if skip is not None:
        query = query.where(Interview.id != skip)
    return [(s, e) for s, e in (await session.execute(query)).all()]


async def latest_interviewer_of_application(
    session: AsyncSession, *, application_id: int
) -> int | None:
    """The interviewer of the application's latest interview that has one."""
    return await session.scalar(
        select(Interview.interviewer_id)
        .where(
            Interview.application_id == application_id,
            Interview.interviewer_id.is_not(None),
        )
        .order_by(Interview.id.desc())
        .limit(1)
    )


async def latest_interviewer_of_vacancy(session: AsyncSession, *, vacancy_id: int) -> int | None:
    """The interviewer of the latest interview for the vacancy that has one."""
    return await session.scalar(
        select(Interview.interviewer_id)
        .join(Application, Application.id == Interview.application_id)
        .where(
            Application.vacancy_id == vacancy_id,
            Interview.interviewer_id.is_not(None),
        )
        .order_by(Interview.id.desc())
        .limit(1)
    )


async def sole_interviewer_id(session: AsyncSession) -> int | None:
    """The id of the only interviewer there is (None: none, or more than one)."""
    only = (await session.scalars(select(Interviewer.id).limit(2))).all()
    return only[0] if len(only) == 1 else None


async def interviewer_by_id(
    session: AsyncSession, *, interviewer_id: int, for_update: bool = False
) -> Interviewer | None:
    """The interviewer with this id, if any."""
    query = select(Interviewer).where(Interviewer.id == interviewer_id)
    return await session.scalar(query.with_for_update() if for_update else query)


async def interviewer_by_calendar_token(session: AsyncSession, *, token: str) -> Interviewer | None:
    """The interviewer whose calendar feed this token opens, if any."""
    return await session.scalar(select(Interviewer).where(Interviewer.calendar_token == token))


async def calendar_feed(
    session: AsyncSession, *, interviewer_id: int, ended_after: datetime
) -> list[tuple[Interview, str, str]]:
    """The interviewer's interviews ending from `ended_after` on, with vacancy and candidate."""
    result = await session.execute(
        select(Interview, Vacancy.title, Candidate.name)
        .join(Application, Application.id == Interview.application_id)
        .join(Vacancy, Vacancy.id == Application.vacancy_id)
        .join(Candidate, Candidate.id == Application.candidate_id)
        .where(
            Interview.interviewer_id == interviewer_id,
            Interview.ends_at >= ended_after,
        )
        .order_by(Interview.starts_at, Interview.id)
    )
    return [(i, t, n) for i, t, n in result.all()]


# --- follow-ups ----------------------------------------------------------------------------


async def sent_followups(
    session: AsyncSession, *, agent: str, since: datetime | None
) -> list[Row[Any]]:
    """The agent's sent follow-ups fired since `since` (None: ever), oldest first.

    Each row: `fired_at`, `trigger`, and `delivered` (its message was delivered or read).
    """
    return list(await session.execute(SENT_SQL, {"agent": agent, "since": since}))


# --- follow-ups: planning, cancelling, firing ----------------------------------------------


async def add_followup(
    session: AsyncSession,
    *,
    key: str,
    agent: str,
    trigger: str,
    candidate_id: int,
    application_id: int | None,
    interview_id: int | None,
    due_at: datetime,
    expect: dict[str, Any],
) -> int | None:
    """The id of a new follow-up with this key; None when the key is already planned."""
    followup_id: int | None = (
        await session.execute(
            text(
                "INSERT INTO followups (key, agent, trigger, candidate_id, application_id, "
                "interview_id, due_at, expect) VALUES (:key, :agent, :trigger, :cand, :app, "
                ":iv, :due, CAST(:expect AS jsonb)) ON CONFLICT (key) DO NOTHING RETURNING id"
            ),
            {
                "key": key,
                "agent": agent,
                "trigger": trigger,
                "cand": candidate_id,
                "app": application_id,
                "iv": interview_id,
                "due": due_at,
                "expect": json.dumps(expect, default=str),
            },
        )
    ).scalar_one_or_none()
    return followup_id


async def set_followup_job(session: AsyncSession, *, followup_id: int, job_id: int | None) -> None:
    """Record the procrastinate job that fires the follow-up."""
    await session.execute(update(FollowUp).where(FollowUp.id == followup_id).values(job_id=job_id))


async def lock_scheduled_followups(
    session: AsyncSession, *, triggers: tuple[str, ...] | None, **where: int
) -> Sequence[FollowUp]:
    """Planned follow-ups matching `where` (column=value) and `triggers`, locked."""
    query = select(FollowUp).where(FollowUp.status == "scheduled")
    for column, value in where.items():
        query = query.where(getattr(FollowUp, column) == value)
    if triggers:
        query = query.where(FollowUp.trigger.in_(triggers))
    return (await session.scalars(query.with_for_update())).all()


async def open_conversation_of_candidate(session: AsyncSession, *, candidate_id: int) -> int | None:
    """The id of the candidate's newest open conversation, if any."""
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
class LoadedFollowup:
    """What a firing follow-up reads in its first statement (detached: writes go by UPDATE)."""

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


async def load_followup(
    conn: psycopg.AsyncConnection[Any], *, followup_id: int, attempts: list[str]
) -> LoadedFollowup | None:
    """The follow-up, locked, with everything its checks read, in one statement."""
    found = await (
        await run(conn, LOAD, {"followup_id": followup_id, "attempts": attempts})
    ).fetchone()
    if found is None:
        return None
    row = found._asdict()
    return LoadedFollowup(
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


async def update_followup(
    conn: psycopg.AsyncConnection[Any], *, followup_id: int, **values: Any
) -> None:
    """Write a follow-up's columns (its object is detached: nothing is flushed)."""
    await run(conn, _update_sql(tuple(values)), {"id": followup_id, **values})


async def set_followup_outcome(
    session: AsyncSession,
    *,
    followup_id: int,
    status: str,
    reason: str | None,
    message_id: int | None,
    channel: str | None,
) -> None:
    """Write a follow-up's final status and the message (and channel) that carried it."""
    await session.execute(
        update(FollowUp)
        .where(FollowUp.id == followup_id)
        .values(status=status, reason=reason, message_id=message_id, channel=channel)
    )


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


async def open_conversation_firing(
    conn: psycopg.AsyncConnection[Any],
    *,
    inbox: str | None,
    now: datetime,
    followup_id: int,
    contact_id: int,
    thread_id: str,
) -> tuple[int, str] | None:
    """(id, thread id) of a new conversation on the inbox; the follow-up marked fired.

    None when the statement opened none (no inbox visible to it, or one already open).
    """
    row = await (
        await run(
            conn,
            OPEN_SQL,
            {"pn": inbox, "now": now, "followup": followup_id, "c": contact_id, "t": thread_id},
        )
    ).fetchone()
    return (row.id, row.thread_id) if row is not None else None


async def inbox_id_of(
    conn: psycopg.AsyncConnection[Any], *, phone_number_id: str | None
) -> int | None:
    """The id of the inbox of this WhatsApp phone number, if any."""
    found = await (await run(conn, INBOX_AGAIN_SQL, {"pn": phone_number_id})).fetchone()
    return found.id if found is not None else None


async def add_conversation(
    conn: psycopg.AsyncConnection[Any], *, inbox_id: int, contact_id: int, thread_id: str
) -> tuple[int, str] | None:
    """(id, thread id) of a new conversation; None when the contact already has one open."""
    row = await (
        await run(conn, CONVERSATION_SQL, {"i": inbox_id, "c": contact_id, "t": thread_id})
    ).fetchone()
    return (row.id, row.thread_id) if row is not None else None


async def open_conversation_of_contact(
    conn: psycopg.AsyncConnection[Any], *, contact_id: int
) -> tuple[int, str] | None:
    """(id, thread id) of the contact's newest open conversation, if any."""
    row = await (await run(conn, OPEN_AGAIN_SQL, {"c": contact_id})).fetchone()
    return (row.id, row.thread_id) if row is not None else None


NEWEST_VACANCY_SQL = text(
    f"SELECT {_columns('v', Vacancy)} FROM vacancies v WHERE v.status = 'open' "
    "ORDER BY v.id DESC LIMIT 1"
)


async def newest_open_vacancy(conn: psycopg.AsyncConnection[Any]) -> Vacancy | None:
    """The newest open vacancy (detached), if any."""
    newest = await (await run(conn, NEWEST_VACANCY_SQL, {})).fetchone()
    vacancy: Vacancy | None = _model(Vacancy, newest._asdict(), "v") if newest is not None else None
    return vacancy


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


async def inactive_candidate_ids(
    session: AsyncSession, *, cutoff: datetime, batch: int
) -> list[int]:
    """Ids of up to `batch` candidates nobody has heard from since `cutoff` (INACTIVE_SQL)."""
    ids: Any = (await session.execute(INACTIVE_SQL, {"cutoff": cutoff, "batch": batch})).scalars()
    return list(ids)


# --- the monitor's figures of a follow-up agent (`stats.agent_stats`) -----------------------

# Candidates the agent has written to, the time of its first message to each, and the
# handoffs opened in their conversations after it (all time, then filtered).
_ESCALATIONS = """
    contacted AS (
      SELECT k.contact_id, min(k.name) AS candidate, min(m.created_at) AS first_at
        FROM followups f
        JOIN candidates k ON k.id = f.candidate_id
        JOIN messages m ON m.id = f.message_id
       WHERE f.agent = :agent AND f.status = 'sent' AND k.contact_id IS NOT NULL
       GROUP BY k.contact_id
    ), conv AS (
      SELECT c.id, c.contact_id, contacted.first_at, contacted.candidate
        FROM conversations c JOIN contacted ON contacted.contact_id = c.contact_id
    ), esc_all AS (
      SELECT h.id, h.reason, h.summary, h.status, h.team, h.created_at, conv.candidate
        FROM handoffs h JOIN conv ON conv.id = h.conversation_id
       WHERE h.created_at >= conv.first_at
         AND (CAST(:teams AS text[]) IS NULL OR h.team = ANY(CAST(:teams AS text[])))
    ), esc AS (
      SELECT * FROM esc_all
       WHERE (CAST(:since AS timestamptz) IS NULL OR created_at >= CAST(:since AS timestamptz))
         AND (CAST(:until AS timestamptz) IS NULL OR created_at < CAST(:until AS timestamptz))
    )
"""

# A candidate `k` the caller may see named (every candidate when :teams is NULL).
_VISIBLE = """
    (CAST(:teams AS text[]) IS NULL OR k.team = ANY(CAST(:teams AS text[])) OR EXISTS (
        SELECT 1 FROM conversations vc
         WHERE vc.contact_id = k.contact_id
           AND (vc.team = ANY(CAST(:teams AS text[])) OR EXISTS (
                SELECT 1 FROM handoffs vh
                 WHERE vh.conversation_id = vc.id AND vh.team = ANY(CAST(:teams AS text[]))))))
"""

_IN_PERIOD = """
    (CAST(:since AS timestamptz) IS NULL OR {col} >= CAST(:since AS timestamptz))
    AND (CAST(:until AS timestamptz) IS NULL OR {col} < CAST(:until AS timestamptz))
"""

FIGURES_SQL = text(
    f"""
    WITH f AS (
      SELECT f.id, f.status, f.fired_at, f.due_at, f.message_id, k.contact_id, m.read_at,
             m.channel, m.created_at AS msg_at
        FROM followups f
        JOIN candidates k ON k.id = f.candidate_id
        LEFT JOIN messages m ON m.id = f.message_id
       WHERE f.agent = :agent
    ), sent AS (
      SELECT * FROM f
       WHERE status = 'sent' AND message_id IS NOT NULL AND {_IN_PERIOD.format(col="fired_at")}
    ), {_ESCALATIONS}
    SELECT
      (SELECT count(*) FROM sent) AS sent,
      (SELECT count(*) FROM sent WHERE channel = 'whatsapp') AS sent_whatsapp,
      (SELECT count(*) FROM sent WHERE channel = 'whatsapp' AND read_at IS NOT NULL) AS opened,
      (SELECT count(*) FROM sent s WHERE EXISTS (
          SELECT 1 FROM messages i JOIN conv ON conv.id = i.conversation_id
           WHERE conv.contact_id = s.contact_id AND i.direction = 'in'
             AND i.created_at > s.msg_at)) AS answered,
      (SELECT count(*) FROM f WHERE status = 'scheduled') AS scheduled,
      (SELECT count(*) FROM f WHERE status = 'paused'
          AND {_IN_PERIOD.format(col="coalesce(fired_at, due_at)")}) AS paused,
      (SELECT count(*) FROM f WHERE status IN ('skipped', 'cancelled')
          AND {_IN_PERIOD.format(col="coalesce(fired_at, due_at)")}) AS not_sent,
      (SELECT count(*) FROM esc) AS escalations,
      (SELECT avg(r.rating) FROM csat_ratings r JOIN esc_all e ON e.id = r.handoff_id
        WHERE {_IN_PERIOD.format(col="r.created_at")}) AS satisfaction,
      (SELECT count(*) FROM csat_ratings r JOIN esc_all e ON e.id = r.handoff_id
        WHERE {_IN_PERIOD.format(col="r.created_at")}) AS ratings
    """
)

RECENT_SQL = text(
    f"""
    WITH {_ESCALATIONS}
    SELECT * FROM (
      SELECT f.fired_at AS at, 'followup' AS kind, f.trigger, f.status, f.reason,
             k.name AS candidate, CAST(NULL AS bigint) AS handoff_id
        FROM followups f JOIN candidates k ON k.id = f.candidate_id
       WHERE f.agent = :agent AND f.fired_at IS NOT NULL
         AND NOT (f.status = 'sent' AND f.message_id IS NULL)  -- an alert: see its escalation
         AND {_IN_PERIOD.format(col="f.fired_at")}
         AND {_VISIBLE}
      UNION ALL
      SELECT created_at, 'escalation', NULL, status, reason, candidate, id FROM esc
    ) a
     ORDER BY at DESC, handoff_id DESC NULLS LAST LIMIT :limit
    """
)

ESCALATED_SQL = text(
    f"""
    WITH {_ESCALATIONS}
    SELECT id AS handoff_id, candidate, reason, summary, status, team, created_at
      FROM esc ORDER BY created_at DESC, id DESC LIMIT :limit
    """
)


def _monitor_params(
    agent: str, since: datetime | None, until: datetime | None, teams: list[str] | None
) -> dict[str, Any]:
    return {"agent": agent, "since": since, "until": until, "teams": teams}


async def agent_figures(
    session: AsyncSession,
    *,
    agent: str,
    since: datetime | None,
    until: datetime | None,
    teams: list[str] | None,
) -> Row[Any]:
    """The agent's counts in [since, until) for these teams (None: all), in one row."""
    return (await session.execute(FIGURES_SQL, _monitor_params(agent, since, until, teams))).one()


async def agent_activity(
    session: AsyncSession,
    *,
    agent: str,
    since: datetime | None,
    until: datetime | None,
    teams: list[str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The agent's fired follow-ups and escalations in the period, newest first."""
    params = _monitor_params(agent, since, until, teams) | {"limit": limit}
    return [dict(r) for r in (await session.execute(RECENT_SQL, params)).mappings()]


async def agent_escalated_cases(
    session: AsyncSession,
    *,
    agent: str,
    since: datetime | None,
    until: datetime | None,
    teams: list[str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The handoffs of the agent's candidates created in the period, newest first."""
    params = _monitor_params(agent, since, until, teams) | {"limit": limit}
    return [dict(r) for r in (await session.execute(ESCALATED_SQL, params)).mappings()]


# --- ATS events (`events.apply`) ------------------------------------------------------------


async def store_event(
    session: AsyncSession, *, event_id: str, event_type: str, payload: dict[str, Any]
) -> int | None:
    """The id of the stored ATS event; None when its event id was stored before."""
    stored: int | None = (
        await session.execute(
            insert(RecruitingEvent)
            .values(event_id=event_id, type=event_type, payload=payload)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(RecruitingEvent.id)
        )
    ).scalar_one_or_none()
    return stored


async def candidate_by_external_id(
    session: AsyncSession, *, external_id: str, for_update: bool = False
) -> Candidate | None:
    """The candidate with this ATS id, if any."""
    query = select(Candidate).where(Candidate.external_id == external_id)
    return await session.scalar(query.with_for_update() if for_update else query)


async def candidate_by_wa_id(
    session: AsyncSession, *, wa_id: str, for_update: bool = False
) -> Candidate | None:
    """The candidate with this WhatsApp id, if any."""
    query = select(Candidate).where(Candidate.wa_id == wa_id)
    return await session.scalar(query.with_for_update() if for_update else query)


async def candidate_of_application(session: AsyncSession, *, external_id: str) -> Candidate | None:
    """The candidate of the application with this ATS id, if any."""
    return await session.scalar(
        select(Candidate)
        .join(Application, Application.candidate_id == Candidate.id)
        .where(Application.external_id == external_id)
    )


async def candidate_of_interview(session: AsyncSession, *, external_id: str) -> Candidate | None:
    """The candidate of the interview with this ATS id, if any."""
    return await session.scalar(
        select(Candidate)
        .join(Application, Application.candidate_id == Candidate.id)
        .join(Interview, Interview.application_id == Application.id)
        .where(Interview.external_id == external_id)
    )


async def contact_of_candidate(
    session: AsyncSession,
    *,
    wa_id: str,
    name: str | None,
    locale: str | None,
    consent_at: datetime | None,
) -> int:
    """The id of the WhatsApp contact with this number, created when new."""
    contact_id: int = (
        await session.execute(
            text(
                "INSERT INTO contacts (wa_id, profile_name, locale, opted_in_at) "
                "VALUES (:w, :n, :l, :c) ON CONFLICT (wa_id) DO UPDATE "
                "SET locale = coalesce(contacts.locale, EXCLUDED.locale) RETURNING id"
            ),
            {
                "w": wa_id,
                "n": name,
                "l": locale,
                "c": consent_at,
            },
        )
    ).scalar_one()
    return contact_id


async def upsert_vacancy(
    session: AsyncSession,
    *,
    external_id: str,
    title: str,
    location: str | None,
    required_fields: list[str],
) -> int:
    """The id of the vacancy with this ATS id, created or given this title and fields."""
    stmt = (
        insert(Vacancy)
        .values(
            external_id=external_id,
            title=title,
            location=location,
            required_fields=required_fields,
        )
        .on_conflict_do_update(
            index_elements=["external_id"],
            set_={"title": title, "required_fields": required_fields},
        )
        .returning(Vacancy.id)
    )
    vacancy_id: int = (await session.execute(stmt)).scalar_one()
    return vacancy_id


async def application_by_external_id(
    session: AsyncSession, *, external_id: str, for_update: bool = False
) -> Application | None:
    """The application with this ATS id, if any."""
    query = select(Application).where(Application.external_id == external_id)
    return await session.scalar(query.with_for_update() if for_update else query)


async def upsert_interviewer(
    session: AsyncSession,
    *,
    external_id: str,
    name: str,
    email: str | None,
    timezone: str,
    availability: dict[str, Any],
    calendar_token: str,
) -> int:
    """The id of the interviewer with this ATS id, created or given this name and hours."""
    stmt = (
        insert(Interviewer)
        .values(
            external_id=external_id,
            name=name,
            email=email,
            timezone=timezone,
            availability=availability,
            calendar_token=calendar_token,
        )
        .on_conflict_do_update(
            index_elements=["external_id"],
            set_={"name": name, "availability": availability},
        )
        .returning(Interviewer.id)
    )
    interviewer_id: int = (await session.execute(stmt)).scalar_one()
    return interviewer_id


async def interview_by_external_id(
    session: AsyncSession, *, external_id: str, for_update: bool = False
) -> Interview | None:
    """The interview with this ATS id, if any."""
    query = select(Interview).where(Interview.external_id == external_id)
    return await session.scalar(query.with_for_update() if for_update else query)


async def team_id_by_name(session: AsyncSession, *, name: str) -> int | None:
    """The id of the team with this name, if any."""
    return await session.scalar(select(Team.id).where(Team.name == name))


OWNERS_SQL = text(
    """
    SELECT c.team FROM conversations c WHERE c.contact_id = :contact AND c.team IS NOT NULL
    UNION
    SELECT h.team FROM handoffs h JOIN conversations c ON c.id = h.conversation_id
     WHERE c.contact_id = :contact AND h.team IS NOT NULL
    """
)


async def teams_of_contact(session: AsyncSession, *, contact_id: int) -> frozenset[str]:
    """The teams of the contact's conversations and of their handoffs."""
    rows = await session.execute(OWNERS_SQL, {"contact": contact_id})
    return frozenset(rows.scalars())


# --- the importer's batches (`importer.write`) -----------------------------------------------

CANDIDATE_FIELDS = (
    "external_id",
    "name",
    "wa_id",
    "phone",
    "email",
    "locale",
    "timezone",
    "consent_source",
    "consent_at",
    "profile",
)
"""The candidate columns an import writes (besides `contact_id` and the timestamps)."""


_SELECT = (
    "SELECT k.id, k.contact_id, "
    + ", ".join(f"k.{f}" for f in CANDIDATE_FIELDS)
    + " FROM candidates k {join} WHERE {where} ORDER BY k.id FOR UPDATE OF k"
)


async def candidates_to_match(
    session: AsyncSession, *, external_ids: list[str], wa_ids: list[str]
) -> list[Row[Any]]:
    """The candidates with these ATS or WhatsApp ids, locked until the batch commits."""
    found = await session.execute(
        text(_SELECT.format(join="", where="k.external_id = ANY(:e) OR k.wa_id = ANY(:w)")),
        {"e": external_ids, "w": wa_ids},
    )
    return list(found)


async def candidates_by_email(session: AsyncSession, *, emails: list[str]) -> list[Row[Any]]:
    """The candidates with these (lower-case) e-mails, locked until the batch commits."""
    found = await session.execute(
        text(
            _SELECT.format(
                join="JOIN unnest(CAST(:m AS text[])) AS u(email) ON lower(k.email) = u.email",
                where="true",
            )
        ),
        {"m": emails},
    )
    return list(found)


async def vacancies_matching(
    session: AsyncSession, *, external_ids: list[str], titles: list[str]
) -> list[Row[Any]]:
    """(id, external_id, lower-case title) of vacancies with these ids or titles, by id."""
    found = await session.execute(
        text(
            "SELECT id, external_id, lower(title) AS title FROM vacancies "
            "WHERE external_id = ANY(:v) OR lower(title) = ANY(:t) ORDER BY id"
        ),
        {"v": external_ids, "t": titles},
    )
    return list(found)


async def add_vacancy_named(session: AsyncSession, *, name: str) -> tuple[int, bool]:
    """(id, created) of the vacancy whose external id and title are `name`."""
    stmt = (
        insert(Vacancy)
        .values(external_id=name, title=name)
        .on_conflict_do_update(index_elements=["external_id"], set_={"external_id": name})
        .returning(Vacancy.id, text("xmax = 0"))
    )
    vacancy_id, inserted = (await session.execute(stmt)).one()
    return vacancy_id, inserted


def _unnest(columns: dict[str, str]) -> str:
    """`unnest(CAST(:a AS t[]), …) AS r(a, …)`: a batch's rows as one array per column.

    One statement per table per batch, with the same text every time (so it is parsed
    and planned like any other), whatever the batch's size.
    """
    arrays = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in columns.items())
    return f"unnest({arrays}) AS r({', '.join(columns)})"


def _arrays(records: Sequence[dict[str, Any]], columns: dict[str, str]) -> dict[str, list[Any]]:
    return {name: [r[name] for r in records] for name in columns}


_CANDIDATE = {
    "id": "bigint",
    "external_id": "text",
    "name": "text",
    "wa_id": "text",
    "phone": "text",
    "email": "text",
    "locale": "text",
    "timezone": "text",
    "consent_source": "text",
    "consent_at": "timestamptz",
    "profile": "jsonb",
    "contact_id": "bigint",
}
_CANDIDATE_COLUMNS = ", ".join(_CANDIDATE)
INSERT_CANDIDATES = text(
    f"INSERT INTO candidates ({_CANDIDATE_COLUMNS}, created_at, updated_at) "
    f"SELECT {_CANDIDATE_COLUMNS}, :now, :now FROM {_unnest(_CANDIDATE)}"
)
UPDATE_CANDIDATES = text(
    "UPDATE candidates k SET "
    + ", ".join(f"{c} = r.{c}" for c in _CANDIDATE if c != "id")
    + f", updated_at = :now FROM {_unnest(_CANDIDATE)} WHERE k.id = r.id"
)
_CONTACT = {"wa_id": "text", "profile_name": "text", "locale": "text", "opted_in_at": "timestamptz"}
UPSERT_CONTACTS = text(
    f"INSERT INTO contacts ({', '.join(_CONTACT)}) SELECT * FROM {_unnest(_CONTACT)} "
    "ON CONFLICT (wa_id) DO UPDATE SET locale = coalesce(contacts.locale, excluded.locale), "
    "profile_name = coalesce(contacts.profile_name, excluded.profile_name), "
    "opted_in_at = coalesce(contacts.opted_in_at, excluded.opted_in_at) "
    "RETURNING wa_id, id"
)
_APPLICATION = {"id": "bigint", "candidate_id": "bigint", "vacancy_id": "bigint", "stage": "text"}
INSERT_APPLICATIONS = text(
    f"INSERT INTO applications ({', '.join(_APPLICATION)}, stage_changed_at) "
    f"SELECT *, :now FROM {_unnest(_APPLICATION)}"
)
_MOVE = {"id": "bigint", "stage": "text"}
MOVE_APPLICATIONS = text(
    "UPDATE applications a SET stage = r.stage, stage_changed_at = :now "
    f"FROM {_unnest(_MOVE)} WHERE a.id = r.id"
)
_STAGE = {"application_id": "bigint", "from_stage": "text", "to_stage": "text"}
INSERT_STAGES = text(
    f"INSERT INTO stage_history ({', '.join(_STAGE)}, changed_by, at) "
    f"SELECT *, 'import', :now FROM {_unnest(_STAGE)}"
)


async def upsert_contacts(
    session: AsyncSession, *, records: Sequence[dict[str, Any]]
) -> list[Row[Any]]:
    """(wa_id, id) of the WhatsApp contacts of these records, created when new."""
    return list(await session.execute(UPSERT_CONTACTS, _arrays(records, _CONTACT)))


async def insert_candidates(
    session: AsyncSession, *, records: Sequence[dict[str, Any]], now: datetime
) -> None:
    """Insert these candidates (their ids taken from `fresh_ids`) in one statement."""
    await session.execute(INSERT_CANDIDATES, _arrays(records, _CANDIDATE) | {"now": now})


async def update_candidates(
    session: AsyncSession, *, records: Sequence[dict[str, Any]], now: datetime
) -> None:
    """Write these candidates' columns in one statement."""
    await session.execute(UPDATE_CANDIDATES, _arrays(records, _CANDIDATE) | {"now": now})


async def fresh_ids(session: AsyncSession, *, table: str, count: int) -> list[int]:
    """`count` ids from the table's sequence, so that a bulk insert needs no RETURNING.

    (PostgreSQL does not promise that a many-row INSERT … RETURNING answers in the
    order of its rows; asking for the ids first does not need it to.)
    """
    if count == 0:
        return []
    found = await session.execute(
        text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
        {"t": table, "n": count},
    )
    ids: list[int] = list(found.scalars())
    return ids


async def lock_applications(
    session: AsyncSession, *, pairs: Sequence[tuple[int, int]]
) -> list[Row[Any]]:
    """The applications of these (candidate, vacancy) pairs, locked."""
    found = await session.execute(
        text(
            "SELECT a.id, a.candidate_id, a.vacancy_id, a.stage FROM applications a "
            "JOIN unnest(CAST(:c AS bigint[]), CAST(:v AS bigint[])) AS p(c, v) "
            "ON a.candidate_id = p.c AND a.vacancy_id = p.v FOR UPDATE OF a"
        ),
        {"c": [p[0] for p in pairs], "v": [p[1] for p in pairs]},
    )
    return list(found)


async def insert_applications(
    session: AsyncSession, *, records: Sequence[dict[str, Any]], now: datetime
) -> None:
    """Insert these applications (ids from `fresh_ids`) in one statement."""
    await session.execute(INSERT_APPLICATIONS, _arrays(records, _APPLICATION) | {"now": now})


async def move_applications(
    session: AsyncSession, *, records: Sequence[dict[str, Any]], now: datetime
) -> None:
    """Move these applications to their records' stages in one statement."""
    await session.execute(MOVE_APPLICATIONS, _arrays(records, _MOVE) | {"now": now})


async def insert_stage_changes(
    session: AsyncSession, *, records: Sequence[dict[str, Any]], now: datetime
) -> None:
    """Record these stage changes, made by the import, in one statement."""
    await session.execute(INSERT_STAGES, _arrays(records, _STAGE) | {"now": now})


# --- people a reply may name -----------------------------------------------------------------


async def people_named(
    conn: AsyncConnection,
    *,
    conversation_id: int,
    names: list[str],
    emails: list[str],
    phones: list[str],
) -> Sequence[Row[Any]]:
    """The conversation's own person and the others with these names, e-mails or phones.

    Each row: `whose` (`own` or `other`), `phone`, `name`, `email`.
    """
    params: dict[str, Any] = {
        "cid": conversation_id,
        "names": names,
        "emails": emails,
        "phones": phones,
    }
    return (await conn.execute(PEOPLE_SQL, params)).all()
