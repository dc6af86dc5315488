"""The reports' SQL: the conversation report's five figures and its filters' look-ups.

Each statement starts from `_SCOPE` (the parameters once, typed, then the conversations
the filters choose) and runs on the caller's session, in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, TypedDict

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

SENT = "('accepted', 'sent', 'delivered', 'read')"

# The parameters once, typed, then the conversations the filters choose.
_SCOPE = """
    WITH p AS (
      SELECT CAST(:start AS timestamptz) AS t0, CAST(:end AS timestamptz) AS t1,
             CAST(:tz AS text) AS tz, CAST(:inbox_id AS bigint) AS inbox_id,
             CAST(:team AS text) AS team, CAST(:agent AS text) AS agent,
             CAST(:agent_actor AS text) AS agent_actor, CAST(:bot AS text) AS bot,
             CAST(:bot_actor AS text) AS bot_actor, CAST(:scope AS text[]) AS scope
    ), s AS (
      SELECT c.id, c.created_at FROM conversations c, p
       WHERE (p.inbox_id IS NULL OR c.inbox_id = p.inbox_id)
         AND (p.scope IS NULL OR c.team = ANY(p.scope))
         AND (p.team IS NULL OR c.team = p.team OR EXISTS (
               SELECT 1 FROM handoffs h WHERE h.conversation_id = c.id AND h.team = p.team))
         AND (p.agent IS NULL
              OR EXISTS (SELECT 1 FROM handoffs h
                          WHERE h.conversation_id = c.id AND h.assigned_agent = p.agent)
              OR EXISTS (SELECT 1 FROM messages m
                          WHERE m.conversation_id = c.id AND m.direction = 'out'
                            AND m.actor = p.agent_actor))
         AND (p.bot_actor IS NULL OR EXISTS (
               SELECT 1 FROM messages m
                WHERE m.conversation_id = c.id AND m.direction = 'out'
                  AND m.actor = p.bot_actor))
    )
"""

STARTED_SQL = text(
    _SCOPE
    + f"""
    SELECT (s.created_at AT TIME ZONE p.tz)::date AS day, count(*) AS started,
           count(*) FILTER (WHERE h.handed) AS handed_off,
           count(*) FILTER (WHERE NOT h.handed AND EXISTS (
               SELECT 1 FROM messages m
                WHERE m.conversation_id = s.id AND m.direction = 'out'
                  AND m.actor LIKE 'bot:%' AND m.status IN {SENT}
                  AND m.created_at < p.t1)) AS bot_resolved
      FROM s CROSS JOIN p
      CROSS JOIN LATERAL (SELECT EXISTS (
          SELECT 1 FROM handoffs x WHERE x.conversation_id = s.id AND x.created_at < p.t1
      ) AS handed) h
     WHERE s.created_at >= p.t0 AND s.created_at < p.t1
     GROUP BY 1
    """
)

MESSAGES_SQL = text(
    _SCOPE
    + f"""
    , m AS (
      SELECT m.conversation_id, m.direction, m.actor, m.created_at,
             m.status IN {SENT} AS went_out,
             (p.agent_actor IS NULL OR m.actor = p.agent_actor)
               AND (p.bot_actor IS NULL OR m.actor = p.bot_actor) AS mine,
             (m.created_at AT TIME ZONE p.tz)::date AS day
        FROM messages m JOIN s ON s.id = m.conversation_id CROSS JOIN p
       WHERE m.created_at >= p.t0 AND m.created_at < p.t1
    )
    SELECT day, GROUPING(day) = 1 AS total,
           count(*) FILTER (WHERE direction = 'in') AS msg_in,
           count(*) FILTER (WHERE direction = 'out' AND went_out AND mine) AS msg_out,
           count(*) FILTER (WHERE direction = 'out' AND went_out AND mine
                              AND actor LIKE 'bot:%') AS out_bot,
           count(*) FILTER (WHERE direction = 'out' AND went_out AND mine
                              AND actor LIKE 'human:%') AS out_human,
           count(*) FILTER (WHERE direction = 'out' AND went_out AND mine
                              AND actor NOT LIKE 'bot:%' AND actor NOT LIKE 'human:%')
             AS out_system,
           count(*) FILTER (WHERE direction = 'out' AND NOT went_out AND mine) AS out_not_sent,
           count(DISTINCT conversation_id) AS active
      FROM m
     GROUP BY GROUPING SETS ((day), ())
    """
)

HANDOFFS_SQL = text(
    _SCOPE
    + """
    SELECT h.id, h.team, h.reason, h.status, h.created_at, h.first_response_at, h.closed_at
      FROM handoffs h JOIN s ON s.id = h.conversation_id CROSS JOIN p
     WHERE (p.team IS NULL OR h.team = p.team)
       AND (p.agent IS NULL OR h.assigned_agent = p.agent)
       AND ((h.created_at >= p.t0 AND h.created_at < p.t1)
            OR (h.first_response_at >= p.t0 AND h.first_response_at < p.t1)
            OR (h.closed_at >= p.t0 AND h.closed_at < p.t1))
     ORDER BY h.id
    """
)

SLA_SQL = text(
    _SCOPE
    + """
    SELECT (t.stopped_at AT TIME ZONE p.tz)::date AS day, t.metric, t.status, count(*) AS n
      FROM sla_timers t
      JOIN handoffs h ON h.id = t.handoff_id
      JOIN s ON s.id = h.conversation_id CROSS JOIN p
     WHERE t.status IN ('met', 'breached')
       AND t.stopped_at >= p.t0 AND t.stopped_at < p.t1
       AND (p.team IS NULL OR h.team = p.team)
       AND (p.agent IS NULL OR h.assigned_agent = p.agent)
     GROUP BY 1, 2, 3
    """
)

CSAT_SQL = text(
    _SCOPE
    + """
    SELECT (r.created_at AT TIME ZONE p.tz)::date AS day, r.rating, count(*) AS n
      FROM csat_ratings r JOIN s ON s.id = r.conversation_id CROSS JOIN p
     WHERE r.created_at >= p.t0 AND r.created_at < p.t1
       AND (p.team IS NULL OR r.team = p.team)
       AND (p.agent IS NULL OR r.agent = p.agent)
       AND (p.bot IS NULL OR r.bot = p.bot)
     GROUP BY 1, 2
    """
)


class ReportScope(TypedDict):
    """The parameters every report statement takes (see `_SCOPE`)."""

    start: datetime
    end: datetime
    tz: str
    inbox_id: int | None
    team: str | None
    agent: str | None
    agent_actor: str | None
    bot: str | None
    bot_actor: str | None
    scope: list[str] | None


async def inbox_of_number(session: AsyncSession, *, phone_number_id: str) -> int | None:
    """The id of the inbox of a business number, or None."""
    inbox_id: int | None = (
        await session.execute(
            text("SELECT id FROM inboxes WHERE phone_number_id = :p"), {"p": phone_number_id}
        )
    ).scalar_one_or_none()
    return inbox_id


async def known_inbox_numbers(session: AsyncSession) -> list[str]:
    """The first inboxes' business numbers (for an error message)."""
    return list(
        (
            await session.execute(text("SELECT phone_number_id FROM inboxes ORDER BY id LIMIT 20"))
        ).scalars()
    )


async def is_known_name(
    session: AsyncSession, *, table: Literal["teams", "agents"], name: str
) -> bool:
    """Whether a team (or an agent) of that name exists."""
    found = (
        await session.execute(text(f"SELECT 1 FROM {table} WHERE name = :n"), {"n": name})
    ).first()
    return found is not None


async def known_names(session: AsyncSession, *, table: Literal["teams", "agents"]) -> list[str]:
    """The first team (or agent) names, in order (for an error message)."""
    query = text(f"SELECT name FROM {table} ORDER BY name LIMIT 50")
    return list((await session.execute(query)).scalars())


async def has_spoken(session: AsyncSession, *, actor: str) -> bool:
    """Whether `actor` ever wrote an outbound message."""
    spoke = (
        await session.execute(
            text("SELECT 1 FROM messages WHERE actor = :a AND direction = 'out' LIMIT 1"),
            {"a": actor},
        )
    ).first()
    return spoke is not None


async def started_by_day(session: AsyncSession, *, scope: ReportScope) -> Sequence[Row[Any]]:
    """Conversations started, handed off and resolved by the bot, per local day."""
    return (await session.execute(STARTED_SQL, scope)).all()


async def messages_by_day(session: AsyncSession, *, scope: ReportScope) -> Sequence[Row[Any]]:
    """Messages in and out (by whom, sent or not) per local day, and the period's total."""
    return (await session.execute(MESSAGES_SQL, scope)).all()


async def handoffs_in_period(session: AsyncSession, *, scope: ReportScope) -> Sequence[Row[Any]]:
    """The handoffs created, first answered or closed in the period."""
    return (await session.execute(HANDOFFS_SQL, scope)).all()


async def sla_by_day(session: AsyncSession, *, scope: ReportScope) -> Sequence[Row[Any]]:
    """SLA timers met or breached, per local day, metric and status."""
    return (await session.execute(SLA_SQL, scope)).all()


async def csat_by_day(session: AsyncSession, *, scope: ReportScope) -> Sequence[Row[Any]]:
    """CSAT ratings per local day and rating."""
    return (await session.execute(CSAT_SQL, scope)).all()
