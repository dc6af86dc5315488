"""What the candidate and calendar tools, the calendar feed and the monitor read.

Candidates, their applications and vacancies, interviews and interviewers, and the sent
follow-ups behind the dashboard's monitor charts. Each function takes the caller's
session and leaves the transaction (flush, commit) to it; `for_update` locks the rows
read until that transaction ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, ScalarResult, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from traza import clock
from traza.db.models import Application, Candidate, Interview, Interviewer, Vacancy

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
