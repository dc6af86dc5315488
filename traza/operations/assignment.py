"""Who gets a waiting handoff: round-robin among a team's online agents under capacity.

Never an agent who is away or offline; a returning customer goes back to their former
agent only when that agent is online and has room. One assignment runs at a time
(a transaction-scoped advisory lock), so capacity is never exceeded by a race.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from traza import clock, trace
from traza.db.models import Handoff
from traza.operations import repository
from traza.rules.hours import BusinessHours
from traza.rules.loader import LoadedRules
from traza.rules.schema import Rules
from traza.trace import kinds


async def pick(
    session: AsyncSession,
    team: str,
    *,
    exclude: tuple[str, ...] = (),
    prefer: str | None = None,
    role: str | None = None,
) -> tuple[str, int, int] | None:
    """(name, load, capacity) of the next agent for `team`, or None."""
    return await repository.next_agent(
        session, team=team, exclude=exclude, prefer=prefer, role=role
    )


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
    await repository.mark_assigned(session, agent=agent, at=now)
    await repository.assign_conversation(
        session, conversation_id=handoff.conversation_id, agent=agent
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
    await repository.lock_assignment(session)
    ids = await repository.lock_waiting_handoffs(
        session, team=team, now=clock.now(), priorities=loaded.rules.priorities
    )
    assigned = []
    for hid in ids:
        handoff = await session.get(Handoff, hid)
        assert handoff is not None
        former = await repository.former_agent(
            session, conversation_id=handoff.conversation_id, handoff_id=hid
        )
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
    return await repository.teams_with_waiting_handoffs(session)
