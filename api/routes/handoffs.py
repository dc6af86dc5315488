"""The handoff inbox: list, claim, accept, transfer, notes, resolve, return to the bot.

Replies go through `POST /conversations/{id}/resume`. Agents see their teams' handoffs;
supervisors also act on handoffs assigned to others in their teams; admins see all.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status

from api.deps import OperatorDep, RowId, SessionDep, check_team, deny
from api.schemas import HandoffPublic, NotePublic, ResumeResult, TransferRequest
from traza import clock, trace
from traza.db.engine import session_scope
from traza.db.models import Handoff
from traza.operations import handoffs, repository
from traza.operations.agents import OperationsError, Operator
from traza.operations.assignment import give
from traza.rules import active
from traza.services import turns
from traza.trace import kinds

router = APIRouter(prefix="/handoffs", tags=["handoffs"])
OPEN = handoffs.OPEN


@router.get("", response_model=list[HandoffPublic])
async def list_handoffs(
    session: SessionDep,
    operator: OperatorDep,
    status_: Annotated[
        Literal["open", "assigned", "accepted", "resolved", "returned", "active"] | None,
        Query(alias="status", description="`active`: open, assigned or accepted"),
    ] = None,
    team: str | None = None,
    priority: str | None = None,
    sla: Literal["ok", "breached"] | None = None,
    agent: str | None = Query(default=None, description="assigned agent (`me` for yourself)"),
    escalated: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[HandoffPublic]:
    """The queue: highest priority first, then longest waiting."""
    rules = await active.current()
    queue = await repository.handoff_queue(
        session,
        priorities=rules.rules.priorities,
        status=status_,
        team=team,
        priority=priority,
        sla=sla,
        assigned_agent=(operator.name if agent == "me" else agent) if agent else None,
        escalated=escalated,
        teams=None if operator.role == "admin" else operator.teams,
        limit=limit,
    )
    return [HandoffPublic.model_validate(h) for h in queue]


async def _visible(
    handoff_id: RowId, request: Request, session: SessionDep, operator: OperatorDep
) -> Handoff:
    handoff = await session.get(Handoff, handoff_id)
    if handoff is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="handoff not found")
    await check_team(request, operator, team=handoff.team, conversation_id=handoff.conversation_id)
    return handoff


VisibleHandoff = Annotated[Handoff, Depends(_visible)]


@router.get("/{handoff_id}", response_model=HandoffPublic)
async def get_handoff(handoff: VisibleHandoff) -> HandoffPublic:
    """One handoff."""
    return HandoffPublic.model_validate(handoff)


@router.get("/{handoff_id}/sla")
async def sla_timers(handoff: VisibleHandoff, session: SessionDep) -> list[dict[str, object]]:
    """The handoff's SLA clocks: metric, status, deadline."""
    timers = await repository.sla_timers_of(session, handoff_id=handoff.id)
    return [
        {
            "metric": t.metric,
            "status": t.status,
            "started_at": t.started_at,
            "due_at": t.due_at,
            "stopped_at": t.stopped_at,
            "actions": t.actions,
        }
        for t in timers
    ]


async def _check_open(handoff: Handoff) -> None:
    if handoff.status not in OPEN:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"handoff is {handoff.status}")


async def _others(request: Request, operator: Operator, handoff: Handoff, what: str) -> None:
    """Agents may not take or move a handoff assigned to someone else."""
    if (
        operator.role == "agent"
        and handoff.assigned_agent
        and handoff.assigned_agent != operator.name
    ):
        raise await deny(
            request,
            operator,
            conversation_id=handoff.conversation_id,
            reason=f"handoff {handoff.id} is assigned to {handoff.assigned_agent}; "
            f"only a supervisor can {what} it",
        )


@router.post("/{handoff_id}/claim", response_model=HandoffPublic)
async def claim(handoff: VisibleHandoff, request: Request, operator: OperatorDep) -> HandoffPublic:
    """Take the handoff: assigned to and accepted by the caller."""
    await _others(request, operator, handoff, "claim")
    async with session_scope() as session:
        locked = await session.get(Handoff, handoff.id, with_for_update=True)
        assert locked is not None
        await _check_open(locked)
        if locked.assigned_agent != operator.name:
            await give(
                session,
                locked,
                operator.name,
                actor=trace.human(operator.name),
                kind=kinds.HANDOFF_CLAIMED,
            )
        locked.status, locked.accepted_at = "accepted", clock.now()
        await session.flush()
        return HandoffPublic.model_validate(locked)


@router.post("/{handoff_id}/accept", response_model=HandoffPublic)
async def accept(handoff: VisibleHandoff, request: Request, operator: OperatorDep) -> HandoffPublic:
    """The assigned agent accepts the handoff."""
    async with session_scope() as session:
        locked = await session.get(Handoff, handoff.id, with_for_update=True)
        assert locked is not None
        await _check_open(locked)
        if locked.assigned_agent != operator.name:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                detail=f"handoff is assigned to {locked.assigned_agent or 'nobody'}; claim it",
            )
        if locked.status != "accepted":
            locked.status, locked.accepted_at = "accepted", clock.now()
            await trace.record(
                session,
                conversation_id=locked.conversation_id,
                kind=kinds.HANDOFF_ACCEPTED,
                actor=trace.human(operator.name),
                data={"handoff_id": locked.id},
            )
        await session.flush()
        return HandoffPublic.model_validate(locked)


@router.post("/{handoff_id}/transfer", response_model=HandoffPublic)
async def transfer(
    handoff: VisibleHandoff, request: Request, operator: OperatorDep, body: TransferRequest
) -> HandoffPublic:
    """Move the handoff to another team (queued there) or agent, with an optional note."""
    await _others(request, operator, handoff, "transfer")
    rules = await active.current()
    async with session_scope() as session:
        locked = await session.get(Handoff, handoff.id, with_for_update=True)
        assert locked is not None
        await _check_open(locked)
        try:
            await handoffs.transfer(
                session,
                rules,
                locked,
                by=operator.name,
                to_team=body.team,
                to_agent=body.agent,
                note=body.note,
            )
        except OperationsError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
        await session.flush()
        return HandoffPublic.model_validate(locked)


@router.get("/{handoff_id}/notes", response_model=list[NotePublic])
async def notes(handoff: VisibleHandoff, session: SessionDep) -> list[NotePublic]:
    """Internal notes on this handoff."""
    return [
        NotePublic.model_validate(n)
        for n in await repository.notes_of(session, handoff_id=handoff.id)
    ]


async def _close(
    handoff: Handoff, request: Request, operator: Operator, *, resolve: bool
) -> ResumeResult:
    await _check_open(handoff)
    await _others(request, operator, handoff, "resolve" if resolve else "return")
    try:
        result = await turns.resume(
            handoff.conversation_id,
            response={"type": "ignore", "args": None, "return_to_bot": True, "resolve": resolve},
            agent=operator.name,
        )
    except turns.NotWaitingForHuman:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail="conversation is not waiting for a human"
        ) from None
    return ResumeResult(conversation_id=handoff.conversation_id, **result)


@router.post("/{handoff_id}/return-to-bot", response_model=ResumeResult)
async def return_to_bot(
    handoff: VisibleHandoff, request: Request, operator: OperatorDep
) -> ResumeResult:
    """Give the conversation back to the bot without sending anything (recorded)."""
    return await _close(handoff, request, operator, resolve=False)


@router.post("/{handoff_id}/resolve", response_model=ResumeResult)
async def resolve(handoff: VisibleHandoff, request: Request, operator: OperatorDep) -> ResumeResult:
    """Mark the handoff resolved (the customer is asked for a rating); the bot owns it again."""
    return await _close(handoff, request, operator, resolve=True)
