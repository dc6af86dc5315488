"""Typed dependencies shared by the routes: sessions, settings, and who is calling.

Every operator endpoint needs `Authorization: Bearer <key>`: an agent's key (created
with `traza agents add` or `POST /agents`) or the bootstrap `TRAZA_ADMIN_KEY`. Agents
and supervisors act only on their teams' conversations; an attempt outside them is
answered 403 and recorded in that conversation's trace.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from traza import trace
from traza.db.engine import get_sessionmaker, session_scope
from traza.operations.agents import Operator, authenticate
from traza.settings import Settings, get_settings


async def get_session() -> AsyncIterator[AsyncSession]:
    """A session for one request (read-mostly; writers open their own transaction)."""
    async with get_sessionmaker()() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def current_settings() -> Settings:
    """The process's settings (async, so FastAPI does not hop to a thread per request)."""
    return get_settings()


SettingsDep = Annotated[Settings, Depends(current_settings)]


def _unauthorised(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": "Bearer"},
    )


async def get_operator(
    settings: SettingsDep, authorization: Annotated[str | None, Header()] = None
) -> Operator:
    """Authenticate `Authorization: Bearer <key>`."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise _unauthorised("missing bearer token: send 'Authorization: Bearer <key>'")
    key = authorization[7:].strip()
    admin = settings.admin_key()
    if admin and hmac.compare_digest(key.encode(), admin.encode()):
        return Operator(name="admin", role="admin", teams=frozenset())
    async with get_sessionmaker()() as session:
        operator = await authenticate(session, key)
    if operator is None:
        raise _unauthorised("invalid or revoked API key")
    return operator


OperatorDep = Annotated[Operator, Depends(get_operator)]


def require_role(operator: Operator, *roles: str) -> None:
    """403 unless the operator has one of `roles`."""
    if operator.role not in roles:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"needs role {' or '.join(roles)}")


async def admin_only(operator: OperatorDep) -> Operator:
    """Dependency for administration endpoints."""
    require_role(operator, "admin")
    return operator


AdminDep = Annotated[Operator, Depends(admin_only)]


async def deny(
    request: Request, operator: Operator, *, conversation_id: int | None, reason: str
) -> HTTPException:
    """Record an attempt outside the operator's teams and build the 403 to raise."""
    async with session_scope() as session:
        await trace.record(
            session,
            conversation_id=conversation_id,
            kind="access.denied",
            actor=trace.human(operator.name),
            data={
                "method": request.method,
                "path": request.url.path,
                "role": operator.role,
                "teams": sorted(operator.teams),
                "reason": reason,
            },
        )
    return HTTPException(status.HTTP_403_FORBIDDEN, detail=reason)


async def check_team(
    request: Request, operator: Operator, *, team: str | None, conversation_id: int
) -> None:
    """403 (recorded) unless the operator may act on a conversation of `team`."""
    if operator.sees_team(team):
        return
    where = f"team '{team}'" if team else "no team (never handed to humans)"
    raise await deny(
        request,
        operator,
        conversation_id=conversation_id,
        reason=f"conversation {conversation_id} belongs to {where}, not to your teams",
    )
