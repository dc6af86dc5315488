"""Typed dependencies shared by the routes."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, HTTPException, status
from sqlalchemy.ext.asyncio import AsyncSession

from traza.db.engine import get_sessionmaker
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


@dataclass(frozen=True, slots=True)
class Operator:
    """Who is calling an operator endpoint; recorded as `human:<name>` when they act."""

    name: str
    role: str


def _unauthorised(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": "Bearer"},
    )


async def get_operator(
    settings: SettingsDep, authorization: Annotated[str | None, Header()] = None
) -> Operator:
    """Authenticate `Authorization: Bearer <key>` (the bootstrap key is `TRAZA_ADMIN_KEY`)."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise _unauthorised("missing bearer token: send 'Authorization: Bearer <key>'")
    key = authorization[7:].strip()
    admin = settings.admin_key()
    if admin and hmac.compare_digest(key.encode(), admin.encode()):
        return Operator(name="admin", role="admin")
    raise _unauthorised("invalid API key")


OperatorDep = Annotated[Operator, Depends(get_operator)]
