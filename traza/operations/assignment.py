"""Who gets a waiting handoff: round-robin among a team's online agents under capacity.

Never an agent who is away or offline; a returning customer goes back to their former
agent only when that agent is online and has room. One assignment runs at a time
(a transaction-scoped advisory lock), so capacity is never exceeded by a race.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from traza import clock, trace
from traza.db import locks
from traza.db.models import Conversation, Handoff, HumanAgent
from traza.rules.hours import BusinessHours
from traza.rules.loader import LoadedRules
from traza.rules.schema import Rules
from traza.trace import kinds

PICK_SQL = text(
    """
    SELECT a.id, a.name, a.capacity, load.n AS load
      FROM agents a
      JOIN agent_teams at ON at.agent_id = a.id
      JOIN teams t ON t.id = at.team_id
      CROSS JOIN LATERAL (
          SELECT count(*) AS n FROM handoffs h
           WHERE h.assigned_agent = a.name AND h.status IN ('assigned', 'accepted')) load
     WHERE t.name = :team AND a.status = 'online' AND a.disabled_at IS NULL
       AND a.role <> 'integration'  -- a system's key never takes handoffs
       AND load.n < a.capacity AND NOT (a.name = ANY(CAST(:exclude AS text[])))
       AND (CAST(:role AS text) IS NULL OR a.role = CAST(:role AS text))
     ORDER BY (a.name = CAST(:prefer AS text)) IS TRUE DESC, a.last_assigned_at NULLS FIRST, a.id
     LIMIT 1
    """
)

WAITING_SQL = text(
    """
    SELECT h.id FROM handoffs h
     WHERE h.team = :team AND h.status = 'open'
       AND (h.waiting_until IS NULL OR h.waiting_until <= :now)
     ORDER BY coalesce(array_position(CAST(:priorities AS text[]), h.priority::text), 999),
              h.created_at, h.id
     FOR UPDATE SKIP LOCKED
    """
)

FORMER_SQL = text(
    """
    SELECT h.assigned_agent FROM handoffs h
     WHERE h.conversation_id = :cid AND h.id <> :hid AND h.assigned_agent IS NOT NULL
     ORDER BY h.id DESC LIMIT 1
    """
)


async def _lock(session: AsyncSession) -> None:
    await session.execute(text("SELECT pg_advisory_xact_lock(:ns, 0)"), {"ns": locks.ASSIGNMENT})


async def pick(
    session: AsyncSession,
    team: str,
    *,
    exclude: tuple[str, ...] = (),
    prefer: str | None = None,
    role: str | None = None,
) -> tuple[str, int, int] | None:
    """(name, load, capacity) of the next agent for `team`, or None."""
    row = (
        await session.execute(
            PICK_SQL,
            {"team": team, "exclude": list(exclude), "prefer": prefer, "role": role},
        )
    ).first()
    return (row.name, row.load, row.capacity) if row else None


async def give(
    session: AsyncSession, handoff: Handoff, agent: str, *, actor: str, kind: str, **data: object
) -> None:
    """Assign `handoff` to `agent` and record why."""
    now = clock.now()
    previous = handoff.assigned_agent
    handoff.status = "assigned"
    handoff.assigned_agent = agent
    handoff.assigned_at = now
    handoff.accepted_at = None
    await session.execute(
        update(HumanAgent).where(HumanAgent.name == agent).values(last_assigned_at=now)
    )
    await session.execute(
        update(Conversation)
        .where(Conversation.id == handoff.conversation_id)
        .values(owner_agent=agent)
    )
    await trace.record(
        session,
        conversation_id=handoff.conversation_id,
        kind=kind,
        actor=actor,
        data={"handoff_id": handoff.id, "agent": agent, "previous": previous, **data},
    )


def is_open(rules: Rules, team: str) -> bool:
    """Whether the team is inside its business hours now."""
    team_rules = rules.teams.get(team)
    return BusinessHours(team_rules.hours if team_rules else None).is_open(clock.now())


async def assign_waiting(session: AsyncSession, loaded: LoadedRules, team: str) -> list[int]:
    """Assign the team's waiting handoffs, highest priority and oldest first."""
    if not is_open(loaded.rules, team):
        return []
    await _lock(session)
    ids: Any = (
        await session.execute(
            WAITING_SQL,
            {"team": team, "now": clock.now(), "priorities": loaded.rules.priorities},
        )
    ).scalars()
    assigned = []
    for hid in list(ids):
        handoff = await session.get(Handoff, hid)
        assert handoff is not None
        former = (
            await session.execute(FORMER_SQL, {"cid": handoff.conversation_id, "hid": hid})
        ).scalar_one_or_none()
        chosen = await pick(session, team, prefer=former)
        if chosen is None:
            break
        name, load, capacity = chosen
        await give(
            session,
            handoff,
            name,
            actor=trace.system("assignment"),
            kind=kinds.HANDOFF_ASSIGNED,
            rule="round-robin",
            load=load + 1,
            capacity=capacity,
            former_agent=former,
            rules_version=loaded.version,
        )
        assigned.append(hid)
    return assigned


async def waiting_teams(session: AsyncSession) -> list[str]:
    """Teams with handoffs waiting for an agent."""
    rows = await session.execute(
        select(Handoff.team).where(Handoff.status == "open", Handoff.team.is_not(None)).distinct()
    )
    return [t for t in rows.scalars() if t]
