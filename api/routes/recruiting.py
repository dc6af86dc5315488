"""`POST /recruiting/events`: the ATS tells traza what happened (idempotent on `id`).

Events come with an integration's key (`traza agents add ats --role integration --team
recruiting`), which writes only its teams' candidates, or with the admin key. The
follow-up agents' figures are shown to anyone signed in; the candidates they name only
to those of the candidates' teams.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError

from api.deps import CallerDep, OperatorDep, deny
from traza.db.engine import session_scope
from traza.recruiting import events, stats
from traza.recruiting.agents import active_agents

router = APIRouter(prefix="/recruiting", tags=["recruiting"])


class EventResult(BaseModel):
    """What happened to the event."""

    id: str
    status: str


WRITERS = ("integration", "admin")


@router.post("/events", response_model=EventResult)
async def post_event(body: events.EventIn, request: Request, caller: CallerDep) -> EventResult:
    """Apply an ATS event; a replayed id answers `duplicate` and changes nothing.

    Needs an integration's key (it writes only its teams' candidates) or the admin key.
    """
    if caller.role not in WRITERS:
        reason = "ATS events need an integration key (role integration) or the admin key"
        raise await deny(request, caller, conversation_id=None, reason=reason)
    try:
        async with session_scope() as session:
            outcome = await events.apply(session, body, teams=caller.scope)
    except events.OutOfScope as exc:
        raise await deny(
            request, caller, conversation_id=exc.conversation_id, reason=str(exc)
        ) from None
    except events.EventError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    except IntegrityError as exc:
        detail = str(exc.orig).splitlines()[0] if exc.orig else "conflicts with stored data"
        raise HTTPException(status.HTTP_409_CONFLICT, detail=detail) from None
    return EventResult(id=body.id, status=outcome)


@router.get("/agents")
async def list_agents(operator: OperatorDep) -> list[dict[str, Any]]:
    """The configured follow-up agents with their figures."""
    async with session_scope() as session:
        return [
            {"name": name, "objective": agent.objective, "tone": agent.tone}
            | await stats.agent_stats(session, name, limit=0, teams=operator.scope)
            for name, agent in sorted(active_agents().items())
        ]


@router.get("/agents/{name}")
async def agent_detail(name: str, operator: OperatorDep) -> dict[str, Any]:
    """One agent: figures, recent activity and escalated cases (seed: "Monitorear Agente")."""
    agent = active_agents().get(name)
    if agent is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no agent '{name}'")
    async with session_scope() as session:
        figures = await stats.agent_stats(session, name, teams=operator.scope)
    return {"name": name, "objective": agent.objective, "channels": agent.channels} | figures
