"""The follow-up agent's monitor (seed 004, "Monitorear Agente") for a period.

The figures are `traza.recruiting.stats` (one definition, shared with
`GET /recruiting/agents/{name}`); this adds the period, the caller's scope and the agent's
configuration around them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from traza.recruiting import stats
from traza.recruiting.agents import active_agents


async def follow_up_monitor(
    session: AsyncSession,
    name: str,
    *,
    since: datetime | None,
    until: datetime | None,
    zone: ZoneInfo,
    language: str,
    teams: frozenset[str] | None,
    limit: int = 10,
) -> dict[str, Any]:
    """Figures, recent activity and escalated cases of the agent called `name`.

    Raises `LookupError` for an agent that is not configured.
    """
    agent = active_agents().get(name)
    if agent is None:
        known = ", ".join(sorted(active_agents())) or "none"
        raise LookupError(f"no follow-up agent '{name}' (configured: {known})")
    figures = await stats.agent_stats(
        session,
        name,
        limit=limit,
        since=since,
        until=until,
        teams=teams,
        language=language,
        zone=zone,
    )
    return {
        "name": name,
        "objective": agent.objective,
        "channels": agent.channels,
        "period": {
            "from": since.isoformat() if since else None,
            "to": until.isoformat() if until else None,
            "tz": zone.key,
        },
        "language": language,
        "scope": sorted(teams) if teams is not None else "all",
    } | figures
