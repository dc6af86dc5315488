"""Typed dependencies shared by the routes: sessions, settings, and who is calling.

Every operator endpoint needs `Authorization: Bearer <key>`: an agent's key (created
with `traza agents add` or `POST /agents`) or the bootstrap `TRAZA_ADMIN_KEY`. Wrong
keys are counted per client and per key prefix (`api.throttle`): too many are answered
429 with `Retry-After`. Agents and supervisors act only on their teams' conversations;
an attempt outside them is answered 403 and recorded in that conversation's trace. An
integration's key (role `integration`, a system such as the ATS) is good for
`POST /recruiting/events` only: anywhere else it is refused the same way. Every refusal
is recorded as `access.denied`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from api.throttle import throttle_of, too_many
from traza import trace
from traza.db.engine import get_sessionmaker, session_scope
from traza.operations.agents import ADMIN, Operator, authenticate, is_admin_key
from traza.settings import Settings, get_settings
from traza.trace import kinds


async def get_session() -> AsyncIterator[AsyncSession]:
    """A session for one request (read-mostly; writers open their own transaction)."""
    async with get_sessionmaker()() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def current_settings() -> Settings:
    """The process's settings (async, so FastAPI does not hop to a thread per request)."""
    return get_settings()


SettingsDep = Annotated[Settings, Depends(current_settings)]

MAX_ID = 2**63 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ID, description="A row id (1 to 2^63-1).")]
"""A path id: outside a bigint's range it is a 422 naming it, not a database error."""


def _unauthorised(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": "Bearer"},
    )


async def get_caller(
    request: Request,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Operator:
    """Authenticate `Authorization: Bearer <key>`, any kind (429 after too many wrong keys)."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise _unauthorised("missing bearer token: send 'Authorization: Bearer <key>'")
    key = authorization[7:].strip()
    throttle = throttle_of(request.app)
    if wait := await throttle.blocked(request):
        raise too_many(wait)
    if is_admin_key(key, settings.admin_key()):
        return ADMIN
    async with get_sessionmaker()() as session:
        operator = await authenticate(session, key)
    if operator is None:
        if wait := await throttle.failed(request, surface="api", key=key):
            raise too_many(wait)
        raise _unauthorised("invalid or revoked API key")
    return operator


CallerDep = Annotated[Operator, Depends(get_caller)]

INTEGRATION_ONLY = "an integration key may only post ATS events (POST /recruiting/events)"


async def get_operator(request: Request, caller: CallerDep) -> Operator:
    """A person's key or the admin key; an integration's key is refused (403, recorded)."""
    if caller.is_integration:
        raise await deny(request, caller, conversation_id=None, reason=INTEGRATION_ONLY)
    return caller


OperatorDep = Annotated[Operator, Depends(get_operator)]


async def require_role(request: Request, operator: Operator, *roles: str) -> None:
    """403 (recorded as `access.denied`) unless the operator has one of `roles`."""
    if operator.role not in roles:
        reason = f"needs role {' or '.join(roles)}"
        raise await deny(request, operator, conversation_id=None, reason=reason)


async def admin_only(request: Request, operator: OperatorDep) -> Operator:
    """Dependency for administration endpoints."""
    await require_role(request, operator, "admin")
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
            kind=kinds.ACCESS_DENIED,
            actor=(trace.system if operator.is_integration else trace.human)(operator.name),
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
