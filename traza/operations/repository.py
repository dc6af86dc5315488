"""Every statement of human operations: agents, teams, keys, handoffs, notes, SLA clocks, CSAT.

The statements behind `api/routes/agents.py`, `api/routes/handoffs.py` and the dashboard's
pages, and those of the operations modules (`handoffs`, `sla`, `breaches`, `assignment`,
`csat`, `agents`, `actions`), in one place; this module imports none of them. Each
function takes the caller's session and leaves the transaction (flush, commit) to it.
`teams` arguments are an operator's scope: the names of the teams whose handoffs they see,
or None for all of them (admins).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, Text, cast, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from traza.conversations.repository import in_teams
from traza.db import locks
from traza.db.models import (
    AgentTeam,
    ApiKey,
    Candidate,
    Contact,
    Conversation,
    CsatRating,
    DashboardSession,
    Handoff,
    HumanAgent,
    Note,
    SlaTimer,
    Team,
)

OPEN = ("open", "assigned", "accepted")
"""An active handoff's statuses; `handoffs.OPEN` is this tuple (imported, no cycle)."""

TEAMS_SQL = text(
    """
    SELECT t.name, t.description,
           coalesce(array_agg(a.name ORDER BY a.name) FILTER (WHERE a.name IS NOT NULL), '{}')
             AS members,
           count(a.id) FILTER (WHERE a.status = 'online') AS online
      FROM teams t
      LEFT JOIN agent_teams at ON at.team_id = t.id
      LEFT JOIN agents a ON a.id = at.agent_id AND a.disabled_at IS NULL
     GROUP BY t.id ORDER BY t.name
    """
)


def _priority_rank(priorities: list[str]) -> ColumnElement[Any]:
    """A handoff's place in the rules' priority list (unknown priorities last)."""
    return func.coalesce(
        func.array_position(cast(priorities, ARRAY(Text)), cast(Handoff.priority, Text)),
        len(priorities),
    )


# --- agents and teams ----------------------------------------------------------------------


async def agent_load(session: AsyncSession, *, agent_name: str) -> int:
    """How many handoffs are assigned to or accepted by the agent."""
    load = await session.scalar(
        select(func.count())
        .select_from(Handoff)
        .where(Handoff.assigned_agent == agent_name, Handoff.status.in_(("assigned", "accepted")))
    )
    return load or 0


async def agents_by_name(session: AsyncSession) -> list[HumanAgent]:
    """Every agent, disabled ones included, in name order."""
    rows = await session.execute(select(HumanAgent).order_by(HumanAgent.name))
    return list(rows.scalars())


async def teams_with_members(session: AsyncSession) -> Sequence[Row[Any]]:
    """Every team: name, description, enabled members and how many of them are online."""
    return (await session.execute(TEAMS_SQL)).all()


async def team_names(session: AsyncSession) -> list[str]:
    """The names of all teams, in order."""
    return list((await session.execute(select(Team.name).order_by(Team.name))).scalars())


async def assignable_memberships(session: AsyncSession) -> list[tuple[str, str]]:
    """(agent, team) of every enabled person's team membership, by agent then team."""
    rows = await session.execute(
        select(HumanAgent.name, Team.name)
        .join(AgentTeam, AgentTeam.agent_id == HumanAgent.id)
        .join(Team, Team.id == AgentTeam.team_id)
        .where(HumanAgent.disabled_at.is_(None), HumanAgent.role != "integration")
        .order_by(HumanAgent.name, Team.name)
    )
    return [(a, team) for a, team in rows]


# --- handoffs ------------------------------------------------------------------------------


async def handoff_queue(
    session: AsyncSession,
    *,
    priorities: list[str],
    status: str | None = None,
    team: str | None = None,
    priority: str | None = None,
    sla: str | None = None,
    assigned_agent: str | None = None,
    escalated: bool | None = None,
    teams: frozenset[str] | None = None,
    limit: int,
) -> list[Handoff]:
    """Handoffs matching the filters, highest priority first, then longest waiting.

    `status` "active" means open, assigned or accepted.
    """
    query = select(Handoff)
    if status == "active":
        query = query.where(Handoff.status.in_(OPEN))
    elif status:
        query = query.where(Handoff.status == status)
    if team:
        query = query.where(Handoff.team == team)
    if priority:
        query = query.where(Handoff.priority == priority)
    if sla:
        query = query.where(Handoff.sla_state == sla)
    if assigned_agent is not None:
        query = query.where(Handoff.assigned_agent == assigned_agent)
    if escalated is not None:
        query = query.where(Handoff.escalated_to.is_not(None) == escalated)
    if teams is not None:
        query = query.where(Handoff.team.in_(sorted(teams)))
    rank = _priority_rank(priorities)
    rows = await session.execute(query.order_by(rank, Handoff.created_at, Handoff.id).limit(limit))
    return list(rows.scalars())


async def inbox_handoffs(
    session: AsyncSession,
    *,
    priorities: list[str],
    teams: frozenset[str] | None,
    assigned_agent: str | None = None,
    unassigned: bool = False,
    limit: int,
) -> list[tuple[Handoff, Contact, str | None]]:
    """Active handoffs with their contact and candidate name, by priority then age."""
    rank = _priority_rank(priorities)
    query = (
        select(Handoff, Contact, Candidate.name)
        .join(Conversation, Conversation.id == Handoff.conversation_id)
        .join(Contact, Contact.id == Conversation.contact_id)
        .outerjoin(Candidate, Candidate.contact_id == Contact.id)
        .where(Handoff.status.in_(OPEN), in_teams(Handoff.team, teams))
    )
    if assigned_agent is not None:
        query = query.where(Handoff.assigned_agent == assigned_agent)
    elif unassigned:
        query = query.where(Handoff.assigned_agent.is_(None))
    ordered = query.order_by(rank, Handoff.created_at, Handoff.id).limit(limit)
    return [(h, contact, name) for h, contact, name in (await session.execute(ordered)).all()]


async def inbox_counts(
    session: AsyncSession, *, agent_name: str, teams: frozenset[str] | None
) -> tuple[int, int, int]:
    """Active handoffs of `teams`: (queued, assigned to the agent, all)."""
    row = (
        await session.execute(
            select(
                func.count().filter(Handoff.status == "open"),
                func.count().filter(Handoff.assigned_agent == agent_name),
                func.count(),
            ).where(Handoff.status.in_(OPEN), in_teams(Handoff.team, teams))
        )
    ).one()
    return row[0], row[1], row[2]


async def active_handoff_of(session: AsyncSession, *, conversation_id: int) -> Handoff | None:
    """The conversation's active handoff (open, assigned or accepted), if any."""
    return await session.scalar(
        select(Handoff).where(Handoff.conversation_id == conversation_id, Handoff.status.in_(OPEN))
    )


async def conversations_of_handoffs(
    session: AsyncSession, *, handoff_ids: list[int]
) -> dict[int, int]:
    """The conversation of each of these handoffs, by handoff id."""
    rows = await session.execute(
        select(Handoff.id, Handoff.conversation_id).where(Handoff.id.in_(handoff_ids))
    )
    return {row.id: row.conversation_id for row in rows}


async def sla_timers_of(session: AsyncSession, *, handoff_id: int) -> list[SlaTimer]:
    """The handoff's SLA clocks, in the order they were started."""
    rows = await session.execute(
        select(SlaTimer).where(SlaTimer.handoff_id == handoff_id).order_by(SlaTimer.id)
    )
    return list(rows.scalars())


async def notes_of(session: AsyncSession, *, handoff_id: int) -> list[Note]:
    """The internal notes on the handoff."""
    rows = await session.execute(select(Note).where(Note.handoff_id == handoff_id))
    return list(rows.scalars())


async def conversation_notes(session: AsyncSession, *, conversation_id: int) -> list[Note]:
    """The internal notes on the conversation, in the order they were written."""
    rows = await session.execute(
        select(Note).where(Note.conversation_id == conversation_id).order_by(Note.id)
    )
    return list(rows.scalars())


async def only_active_handoff(session: AsyncSession, *, conversation_id: int) -> Handoff | None:
    """The conversation's active handoff, if any; more than one is an error."""
    result = await session.execute(
        select(Handoff).where(
            Handoff.conversation_id == conversation_id,
            Handoff.status.in_(("open", "assigned", "accepted")),
        )
    )
    return result.scalar_one_or_none()


async def is_member(session: AsyncSession, *, agent: str, team: str) -> bool:
    """Whether `agent` belongs to `team` (enabled, and not a system's key)."""
    found = await session.scalar(
        select(HumanAgent.id)
        .join(AgentTeam, AgentTeam.agent_id == HumanAgent.id)
        .join(Team, Team.id == AgentTeam.team_id)
        .where(
            HumanAgent.name == agent,
            Team.name == team,
            HumanAgent.disabled_at.is_(None),
            HumanAgent.role != "integration",  # a system's key never takes handoffs
        )
    )
    return found is not None


async def team_id_named(session: AsyncSession, *, name: str) -> int | None:
    """The id of the team with this name, or None."""
    found: int | None = await session.scalar(select(Team.id).where(Team.name == name))
    return found


# --- who owns a conversation ---------------------------------------------------------------


async def give_to_humans(session: AsyncSession, *, conversation_id: int, team: str | None) -> None:
    """The conversation is owned by humans of `team`, no agent yet."""
    await session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(owner="human", owner_agent=None, team=team)
    )


async def give_back_to_bot(session: AsyncSession, *, conversation_id: int) -> None:
    """The bot owns the conversation again."""
    await session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(owner="bot", owner_agent=None)
    )


async def claim_conversation(session: AsyncSession, *, conversation_id: int, agent: str) -> None:
    """`agent` owns the conversation, unless an agent already does."""
    await session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id, Conversation.owner_agent.is_(None))
        .values(owner_agent=agent)
    )


async def move_conversation(session: AsyncSession, *, conversation_id: int, team: str) -> None:
    """The conversation belongs to `team` now."""
    await session.execute(
        update(Conversation).where(Conversation.id == conversation_id).values(team=team)
    )


async def unassign_conversation(session: AsyncSession, *, conversation_id: int) -> None:
    """No agent owns the conversation."""
    await session.execute(
        update(Conversation).where(Conversation.id == conversation_id).values(owner_agent=None)
    )


# --- SLA clocks ----------------------------------------------------------------------------

# Running timers whose job is gone (a crash between jobs, a manual cleanup).
ORPHANS_SQL = text(
    """
    SELECT t.id FROM sla_timers t
     WHERE t.status = 'running'
       AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs j
                        WHERE j.id = t.job_id AND j.status IN ('todo', 'doing'))
    """
)


async def running_timer_id(session: AsyncSession, *, handoff_id: int, metric: str) -> int | None:
    """The id of the handoff's running clock for `metric`, if one runs."""
    found: int | None = await session.scalar(
        select(SlaTimer.id).where(
            SlaTimer.handoff_id == handoff_id,
            SlaTimer.metric == metric,
            SlaTimer.status == "running",
        )
    )
    return found


async def lock_running_timers(
    session: AsyncSession, *, handoff_id: int, metrics: tuple[str, ...]
) -> Sequence[SlaTimer]:
    """The handoff's running clocks for `metrics`, locked (FOR UPDATE) to be stopped."""
    return (
        await session.scalars(
            select(SlaTimer)
            .where(
                SlaTimer.handoff_id == handoff_id,
                SlaTimer.metric.in_(metrics),
                SlaTimer.status == "running",
            )
            .with_for_update()
        )
    ).all()


async def orphaned_timer_ids(session: AsyncSession) -> list[int]:
    """Ids of running clocks whose job is gone."""
    return list((await session.execute(ORPHANS_SQL)).scalars())


async def timers_by_id(session: AsyncSession, *, ids: list[int]) -> Sequence[SlaTimer]:
    """The SLA clocks with these ids."""
    return (await session.scalars(select(SlaTimer).where(SlaTimer.id.in_(ids)))).all()


async def any_supervisor(session: AsyncSession, *, team: str) -> str | None:
    """The first enabled supervisor of `team`, online or not."""
    name: str | None = await session.scalar(
        select(HumanAgent.name)
        .join(AgentTeam, AgentTeam.agent_id == HumanAgent.id)
        .join(Team, Team.id == AgentTeam.team_id)
        .where(Team.name == team, HumanAgent.role == "supervisor", HumanAgent.disabled_at.is_(None))
        .order_by(HumanAgent.id)
        .limit(1)
    )
    return name


# --- assignment ----------------------------------------------------------------------------

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


async def lock_assignment(session: AsyncSession) -> None:
    """Wait for the assignment lock, held until the transaction ends: one round at a time."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:ns, 0)"), {"ns": locks.ASSIGNMENT})


async def next_agent(
    session: AsyncSession,
    *,
    team: str,
    exclude: tuple[str, ...],
    prefer: str | None,
    role: str | None,
) -> tuple[str, int, int] | None:
    """(name, load, capacity) of the team's next online agent with room, or None."""
    row = (
        await session.execute(
            PICK_SQL,
            {"team": team, "exclude": list(exclude), "prefer": prefer, "role": role},
        )
    ).first()
    return (row.name, row.load, row.capacity) if row else None


async def lock_waiting_handoffs(
    session: AsyncSession, *, team: str, now: datetime, priorities: list[str]
) -> list[int]:
    """Ids of the team's waiting handoffs, by priority then age, locked (SKIP LOCKED)."""
    ids: Any = (
        await session.execute(WAITING_SQL, {"team": team, "now": now, "priorities": priorities})
    ).scalars()
    return list(ids)


async def former_agent(
    session: AsyncSession, *, conversation_id: int, handoff_id: int
) -> str | None:
    """The agent of the conversation's latest other assigned handoff, if any."""
    name: str | None = (
        await session.execute(FORMER_SQL, {"cid": conversation_id, "hid": handoff_id})
    ).scalar_one_or_none()
    return name


async def mark_assigned(session: AsyncSession, *, agent: str, at: datetime) -> None:
    """The agent was given a handoff at `at` (round-robin order)."""
    await session.execute(
        update(HumanAgent).where(HumanAgent.name == agent).values(last_assigned_at=at)
    )


async def assign_conversation(session: AsyncSession, *, conversation_id: int, agent: str) -> None:
    """`agent` owns the conversation."""
    await session.execute(
        update(Conversation).where(Conversation.id == conversation_id).values(owner_agent=agent)
    )


async def teams_with_waiting_handoffs(session: AsyncSession) -> list[str]:
    """Teams with handoffs waiting for an agent."""
    rows = await session.execute(
        select(Handoff.team).where(Handoff.status == "open", Handoff.team.is_not(None)).distinct()
    )
    return [t for t in rows.scalars() if t]


# --- CSAT and consent ----------------------------------------------------------------------


async def handoff_of_conversation(
    session: AsyncSession, *, handoff_id: int, conversation_id: int
) -> Handoff | None:
    """The handoff with this id, if it belongs to the conversation."""
    return await session.scalar(
        select(Handoff).where(Handoff.id == handoff_id, Handoff.conversation_id == conversation_id)
    )


async def store_rating(
    session: AsyncSession,
    *,
    handoff_id: int,
    conversation_id: int,
    rating: int,
    agent: str | None,
    team: str | None,
    bot: str,
) -> int | None:
    """Store the handoff's CSAT rating: its id, or None when the handoff already has one."""
    stored: int | None = (
        await session.execute(
            insert(CsatRating)
            .values(
                handoff_id=handoff_id,
                conversation_id=conversation_id,
                rating=rating,
                agent=agent,
                team=team,
                bot=bot,
            )
            .on_conflict_do_nothing(index_elements=["handoff_id"])
            .returning(CsatRating.id)
        )
    ).scalar_one_or_none()
    return stored


async def lock_contact_of(session: AsyncSession, *, conversation_id: int) -> Contact:
    """The conversation's contact, locked (FOR UPDATE) for a consent change."""
    return (
        await session.execute(
            select(Contact)
            .join(Conversation, Conversation.contact_id == Contact.id)
            .where(Conversation.id == conversation_id)
            .with_for_update()
        )
    ).scalar_one()


# --- agents, keys and dashboard sessions ---------------------------------------------------

AUTH_SQL = text(
    """
    SELECT a.id, a.name, a.role, k.key_hash,
           coalesce(array_agg(t.name) FILTER (WHERE t.name IS NOT NULL), '{}') AS teams
      FROM api_keys k
      JOIN agents a ON a.id = k.agent_id
      LEFT JOIN agent_teams at ON at.agent_id = a.id
      LEFT JOIN teams t ON t.id = at.team_id
     WHERE k.prefix = :prefix AND k.revoked_at IS NULL AND a.disabled_at IS NULL
     GROUP BY a.id, k.key_hash
    """
)

SESSION_SQL = text(
    """
    SELECT s.id, s.admin_mac, s.last_seen_at < now() - interval '30 seconds' AS stale,
           a.id AS agent_id, a.name, a.role,
           coalesce(array_agg(t.name) FILTER (WHERE t.name IS NOT NULL), '{}') AS teams
      FROM dashboard_sessions s
      LEFT JOIN api_keys k ON k.id = s.api_key_id AND k.revoked_at IS NULL
      LEFT JOIN agents a ON a.id = k.agent_id AND a.disabled_at IS NULL
      LEFT JOIN agent_teams at ON at.agent_id = a.id
      LEFT JOIN teams t ON t.id = at.team_id
     WHERE s.token_hash = :token_hash AND s.ended_at IS NULL AND s.expires_at > now()
       AND s.last_seen_at > now() - make_interval(secs => :idle)
     GROUP BY s.id, a.id
    """
)


async def key_holder(session: AsyncSession, *, prefix: str) -> Row[Any] | None:
    """The enabled agent of the live key with this prefix: id, name, role, key_hash, teams."""
    return (await session.execute(AUTH_SQL, {"prefix": prefix})).first()


async def team_ids_named(session: AsyncSession, *, names: list[str]) -> dict[str, int]:
    """The ids of those of the named teams that exist, by name."""
    rows = (await session.execute(select(Team.name, Team.id).where(Team.name.in_(names)))).all()
    return {r.name: r.id for r in rows}


async def agent_id_named(session: AsyncSession, *, name: str) -> int | None:
    """The id of the agent with this name, or None."""
    found: int | None = await session.scalar(select(HumanAgent.id).where(HumanAgent.name == name))
    return found


async def clear_memberships(session: AsyncSession, *, agent_id: int) -> None:
    """The agent belongs to no team."""
    await session.execute(delete(AgentTeam).where(AgentTeam.agent_id == agent_id))


async def team_names_of(session: AsyncSession, *, agent_id: int) -> list[str]:
    """Names of the agent's teams, in order."""
    rows = await session.execute(
        select(Team.name)
        .join(AgentTeam, AgentTeam.team_id == Team.id)
        .where(AgentTeam.agent_id == agent_id)
        .order_by(Team.name)
    )
    return list(rows.scalars())


async def agent_by_id_or_name(session: AsyncSession, *, name_or_id: str | int) -> HumanAgent | None:
    """The agent with this id (an int or all digits) or else this name, or None."""
    query = select(HumanAgent)
    if isinstance(name_or_id, int) or str(name_or_id).isdigit():
        query = query.where(HumanAgent.id == int(name_or_id))
    else:
        query = query.where(HumanAgent.name == name_or_id)
    return await session.scalar(query)


async def live_key(session: AsyncSession, *, prefix: str) -> ApiKey | None:
    """The unrevoked key with this prefix, or None."""
    return await session.scalar(
        select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
    )


async def key_id_with_prefix(session: AsyncSession, *, prefix: str) -> int | None:
    """The id of the key with this prefix, revoked or not, or None."""
    found: int | None = await session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix))
    return found


async def live_session(
    session: AsyncSession, *, token_hash: str, idle_seconds: float
) -> Row[Any] | None:
    """The live dashboard session with this hash and who opened it, or None."""
    params = {"token_hash": token_hash, "idle": idle_seconds}
    return (await session.execute(SESSION_SQL, params)).first()


async def touch_session(session: AsyncSession, *, session_id: int) -> None:
    """The dashboard session was seen now."""
    await session.execute(
        update(DashboardSession)
        .where(DashboardSession.id == session_id)
        .values(last_seen_at=text("now()"))
    )


async def end_session_with_hash(session: AsyncSession, *, token_hash: str, reason: str) -> None:
    """End the live dashboard session with this token hash."""
    await session.execute(
        update(DashboardSession)
        .where(DashboardSession.token_hash == token_hash, DashboardSession.ended_at.is_(None))
        .values(ended_at=text("now()"), ended_reason=reason)
    )


async def end_live_sessions(
    session: AsyncSession, *, api_key_id: int | None, agent_id: int | None, reason: str
) -> int:
    """End the live sessions of one key, or else of any key of one agent: how many ended."""
    query = update(DashboardSession).where(DashboardSession.ended_at.is_(None))
    if api_key_id is not None:
        query = query.where(DashboardSession.api_key_id == api_key_id)
    elif agent_id is not None:
        keys = select(ApiKey.id).where(ApiKey.agent_id == agent_id)
        query = query.where(DashboardSession.api_key_id.in_(keys))
    else:
        raise ValueError("end_sessions needs a key or an agent")
    result = await session.execute(
        query.values(ended_at=text("now()"), ended_reason=reason),
        execution_options={"synchronize_session": False},
    )
    return int(getattr(result, "rowcount", 0) or 0)
