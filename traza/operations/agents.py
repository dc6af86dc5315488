"""Agents, teams, API keys and the dashboard sessions keys open.

Keys look like `trz_<prefix>_<secret>`; only a SHA-256 of the whole key is stored (keys
are 192-bit random, so a slow password hash adds nothing) and the key is shown once.

A dashboard session is a random 256-bit id (the browser's cookie), stored as its
SHA-256 and bound to the key that opened it. It ends at logout, when that key is revoked
or its agent disabled, after an idle time and at an absolute expiry; it is never a key
itself, so a copied cookie is no use on the API.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from traza.db.models import AgentTeam, ApiKey, DashboardSession, HumanAgent, Team
from traza.operations import repository

ROLES = ("agent", "supervisor", "admin", "integration")
INTEGRATION = "integration"
"""A system's key (the ATS): it may only post recruiting events, for its own teams."""
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

    @property
    def is_integration(self) -> bool:
        """A system's key, good for `POST /recruiting/events` only."""
        return self.role == INTEGRATION

    @property
    def scope(self) -> frozenset[str] | None:
        """The teams whose data the caller sees or writes (None: all, for admins)."""
        return None if self.role == "admin" else self.teams


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh key and its lookup prefix."""
    prefix = secrets.token_hex(4)
    return f"trz_{prefix}_{secrets.token_urlsafe(24)}", prefix


async def issue_key(session: AsyncSession, agent: HumanAgent) -> str:
    """Create a key for `agent`; the returned text is never stored or shown again."""
    key, prefix = new_key()
    session.add(ApiKey(agent_id=agent.id, prefix=prefix, key_hash=hash_key(key)))
    await session.flush()
    return key


async def authenticate(session: AsyncSession, key: str) -> Operator | None:
    """The operator a key belongs to, or None (unknown, revoked or malformed)."""
    parts = key.split("_")
    if len(parts) < 3 or parts[0] != "trz":
        return None
    row = await repository.key_holder(session, prefix=parts[1])
    if row is None or not hmac.compare_digest(row.key_hash, hash_key(key)):
        return None
    return Operator(name=row.name, role=row.role, teams=frozenset(row.teams), agent_id=row.id)


async def team_ids(session: AsyncSession, names: list[str]) -> dict[str, int]:
    """Ids of the named teams; unknown names raise `OperationsError`."""
    found = await repository.team_ids_named(session, names=names)
    if missing := sorted(set(names) - set(found)):
        raise OperationsError(
            f"unknown team(s): {', '.join(missing)} (create with: traza teams add <name>)"
        )
    return found


async def create_team(session: AsyncSession, name: str, description: str | None = None) -> Team:
    """A new team; its hours and SLAs come from the rules file."""
    if await repository.team_id_named(session, name=name):
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
) -> tuple[HumanAgent, str]:
    """A new agent in `teams` and their first API key."""
    if role not in ROLES:
        raise OperationsError(f"role must be one of {', '.join(ROLES)}")
    if capacity < 0:
        raise OperationsError("capacity cannot be negative")
    if role == INTEGRATION:
        if not teams:
            raise OperationsError("an integration needs the team(s) it writes for (--team)")
        capacity = 0  # a system never takes handoffs
    if await repository.agent_id_named(session, name=name):
        raise OperationsError(f"agent '{name}' already exists")
    ids = await team_ids(session, teams)
    agent = HumanAgent(name=name, role=role, capacity=capacity, email=email, status="offline")
    session.add(agent)
    await session.flush()
    session.add_all(AgentTeam(agent_id=agent.id, team_id=i) for i in ids.values())
    return agent, await issue_key(session, agent)


async def set_teams(session: AsyncSession, agent: HumanAgent, teams: list[str]) -> None:
    """Replace the agent's team memberships."""
    ids = await team_ids(session, teams)
    await repository.clear_memberships(session, agent_id=agent.id)
    session.add_all(AgentTeam(agent_id=agent.id, team_id=i) for i in ids.values())


async def teams_of(session: AsyncSession, agent_id: int) -> list[str]:
    """Names of the agent's teams."""
    return await repository.team_names_of(session, agent_id=agent_id)


async def find_agent(session: AsyncSession, name_or_id: str | int) -> HumanAgent:
    """An agent by id or name."""
    agent = await repository.agent_by_id_or_name(session, name_or_id=name_or_id)
    if agent is None:
        raise LookupError(f"no agent '{name_or_id}'")
    return agent


async def revoke_key(session: AsyncSession, prefix: str) -> bool:
    """Revoke the key with this prefix (`trz_<prefix>_…`); False when none is active."""
    prefix = prefix.removeprefix("trz_").split("_")[0]
    key = await repository.live_key(session, prefix=prefix)
    if key is None:
        return False
    key.revoked_at = datetime.now(UTC)
    await end_sessions(session, api_key_id=key.id, reason="key_revoked")
    return True


async def set_disabled(session: AsyncSession, agent: HumanAgent, disabled: bool) -> None:
    """Disable (ending their dashboard sessions) or re-enable an agent."""
    if not disabled:
        agent.disabled_at = None
        return
    if agent.disabled_at is None:
        agent.disabled_at = datetime.now(UTC)
    await end_sessions(session, agent_id=agent.id, reason="agent_disabled")


# --- dashboard sessions --------------------------------------------------------------------

ADMIN = Operator(name="admin", role="admin", teams=frozenset())
"""Who the bootstrap `TRAZA_ADMIN_KEY` is."""


def is_admin_key(key: str, admin_key: str | None) -> bool:
    """Whether `key` is the bootstrap admin key (constant-time)."""
    return bool(admin_key) and hmac.compare_digest(key.encode(), (admin_key or "").encode())


def _admin_mac(token: str, admin_key: str) -> str:
    """Binds a session to the admin key without storing anything the key can be read from."""
    return hmac.new(token.encode(), f"traza-session:{admin_key}".encode(), "sha256").hexdigest()


async def open_session(
    session: AsyncSession, key: str, *, admin_key: str | None, lifetime: timedelta
) -> str | None:
    """A new dashboard session for `key` (its id, for the cookie), or None for a bad key."""
    key = key.strip()
    token = secrets.token_urlsafe(32)
    row = DashboardSession(
        token_hash=hash_key(token),
        expires_at=datetime.now(UTC) + lifetime,
    )
    if is_admin_key(key, admin_key):
        assert admin_key is not None
        row.admin_mac = _admin_mac(token, admin_key)
    elif (caller := await authenticate(session, key)) is not None and not caller.is_integration:
        # (an integration's key is a system's: it has no dashboard)
        row.api_key_id = await repository.key_id_with_prefix(session, prefix=key.split("_")[1])
    else:
        return None
    session.add(row)
    await session.flush()
    return token


async def session_operator(
    session: AsyncSession, token: str, *, admin_key: str | None, idle: timedelta
) -> Operator | None:
    """Who a live session belongs to (and it counts as activity), or None.

    None when the id is unknown, ended, idle for longer than `idle`, past its expiry, or
    its key no longer authenticates (revoked, agent disabled, admin key changed).
    """
    if not token:
        return None
    row = await repository.live_session(
        session, token_hash=hash_key(token), idle_seconds=idle.total_seconds()
    )
    if row is None:
        return None
    if row.admin_mac is not None:
        if not admin_key or not hmac.compare_digest(row.admin_mac, _admin_mac(token, admin_key)):
            return None
        operator = ADMIN
    elif row.agent_id is None:
        return None
    else:
        operator = Operator(
            name=row.name, role=row.role, teams=frozenset(row.teams), agent_id=row.agent_id
        )
    if row.stale:  # one write a half-minute at most, however busy the page
        await repository.touch_session(session, session_id=row.id)
    return operator


async def end_session(session: AsyncSession, token: str, *, reason: str = "logout") -> None:
    """End the session with this id (logout)."""
    await repository.end_session_with_hash(session, token_hash=hash_key(token), reason=reason)


async def end_sessions(
    session: AsyncSession,
    *,
    api_key_id: int | None = None,
    agent_id: int | None = None,
    reason: str,
) -> int:
    """End every live session opened by one key, or by any key of one agent."""
    return await repository.end_live_sessions(
        session, api_key_id=api_key_id, agent_id=agent_id, reason=reason
    )
