"""Agents, teams and API keys.

Keys look like `trz_<prefix>_<secret>`; only a SHA-256 of the whole key is stored (keys
are 192-bit random, so a slow password hash adds nothing) and the key is shown once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from traza.db.models import Agent, AgentTeam, ApiKey, Team

ROLES = ("agent", "supervisor", "admin")
STATUSES = ("online", "away", "offline")


class OperationsError(ValueError):
    """A request that cannot be carried out as asked (unknown team, duplicate name…)."""


@dataclass(frozen=True, slots=True)
class Operator:
    """Who is calling: recorded as `human:<name>` when they act."""

    name: str
    role: str
    teams: frozenset[str]
    agent_id: int | None = None

    def sees_team(self, team: str | None) -> bool:
        """Whether this operator may see and act on a conversation of `team`."""
        return self.role == "admin" or (team is not None and team in self.teams)


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh key and its lookup prefix."""
    prefix = secrets.token_hex(4)
    return f"trz_{prefix}_{secrets.token_urlsafe(24)}", prefix


async def issue_key(session: AsyncSession, agent: Agent) -> str:
    """Create a key for `agent`; the returned text is never stored or shown again."""
    key, prefix = new_key()
    session.add(ApiKey(agent_id=agent.id, prefix=prefix, key_hash=hash_key(key)))
    await session.flush()
    return key


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


async def authenticate(session: AsyncSession, key: str) -> Operator | None:
    """The operator a key belongs to, or None (unknown, revoked or malformed)."""
    parts = key.split("_")
    if len(parts) < 3 or parts[0] != "trz":
        return None
    row = (await session.execute(AUTH_SQL, {"prefix": parts[1]})).first()
    if row is None or not hmac.compare_digest(row.key_hash, hash_key(key)):
        return None
    return Operator(name=row.name, role=row.role, teams=frozenset(row.teams), agent_id=row.id)


async def team_ids(session: AsyncSession, names: list[str]) -> dict[str, int]:
    """Ids of the named teams; unknown names raise `OperationsError`."""
    rows = (await session.execute(select(Team.name, Team.id).where(Team.name.in_(names)))).all()
    found = {r.name: r.id for r in rows}
    if missing := sorted(set(names) - set(found)):
        raise OperationsError(
            f"unknown team(s): {', '.join(missing)} (create with: traza teams add <name>)"
        )
    return found


async def create_team(session: AsyncSession, name: str, description: str | None = None) -> Team:
    """A new team; its hours and SLAs come from the rules file."""
    if await session.scalar(select(Team.id).where(Team.name == name)):
        raise OperationsError(f"team '{name}' already exists")
    team = Team(name=name, description=description)
    session.add(team)
    await session.flush()
    return team


async def create_agent(
    session: AsyncSession,
    *,
    name: str,
    teams: list[str],
    role: str = "agent",
    capacity: int = 5,
    email: str | None = None,
) -> tuple[Agent, str]:
    """A new agent in `teams` and their first API key."""
    if role not in ROLES:
        raise OperationsError(f"role must be one of {', '.join(ROLES)}")
    if capacity < 0:
        raise OperationsError("capacity cannot be negative")
    if await session.scalar(select(Agent.id).where(Agent.name == name)):
        raise OperationsError(f"agent '{name}' already exists")
    ids = await team_ids(session, teams)
    agent = Agent(name=name, role=role, capacity=capacity, email=email, status="offline")
    session.add(agent)
    await session.flush()
    session.add_all(AgentTeam(agent_id=agent.id, team_id=i) for i in ids.values())
    return agent, await issue_key(session, agent)


async def set_teams(session: AsyncSession, agent: Agent, teams: list[str]) -> None:
    """Replace the agent's team memberships."""
    ids = await team_ids(session, teams)
    await session.execute(delete(AgentTeam).where(AgentTeam.agent_id == agent.id))
    session.add_all(AgentTeam(agent_id=agent.id, team_id=i) for i in ids.values())


async def teams_of(session: AsyncSession, agent_id: int) -> list[str]:
    """Names of the agent's teams."""
    rows = await session.execute(
        select(Team.name)
        .join(AgentTeam, AgentTeam.team_id == Team.id)
        .where(AgentTeam.agent_id == agent_id)
        .order_by(Team.name)
    )
    return list(rows.scalars())


async def find_agent(session: AsyncSession, name_or_id: str | int) -> Agent:
    """An agent by id or name."""
    query = select(Agent)
    if isinstance(name_or_id, int) or str(name_or_id).isdigit():
        query = query.where(Agent.id == int(name_or_id))
    else:
        query = query.where(Agent.name == name_or_id)
    agent = await session.scalar(query)
    if agent is None:
        raise LookupError(f"no agent '{name_or_id}'")
    return agent


async def revoke_key(session: AsyncSession, prefix: str) -> bool:
    """Revoke the key with this prefix (`trz_<prefix>_…`); False when none is active."""
    prefix = prefix.removeprefix("trz_").split("_")[0]
    key = await session.scalar(
        select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
    )
    if key is None:
        return False
    key.revoked_at = datetime.now(UTC)
    return True
