"""`POST /recruiting/events`: the ATS tells traza what happened (idempotent on `id`)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError

from api.deps import OperatorDep
from traza.db.engine import session_scope
from traza.recruiting import events

router = APIRouter(prefix="/recruiting", tags=["recruiting"])


class EventResult(BaseModel):
    """What happened to the event."""

    id: str
    status: str


@router.post("/events", response_model=EventResult)
async def post_event(body: events.EventIn, operator: OperatorDep) -> EventResult:
    """Apply an ATS event; a replayed id answers `duplicate` and changes nothing."""
    if operator.role == "agent":
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="needs role supervisor or admin")
    try:
        async with session_scope() as session:
            outcome = await events.apply(session, body)
    except events.EventError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    except IntegrityError as exc:
        detail = str(exc.orig).splitlines()[0] if exc.orig else "conflicts with stored data"
        raise HTTPException(status.HTTP_409_CONFLICT, detail=detail) from None
    return EventResult(id=body.id, status=outcome)
