"""The handoff inbox: list, claim, return to the bot, resolve."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy import select, update

from api.deps import OperatorDep, SessionDep
from api.schemas import HandoffPublic, ResumeResult
from traza import trace
from traza.conversations import turns
from traza.db.models import Conversation, Handoff

router = APIRouter(prefix="/handoffs", tags=["handoffs"])


@router.get("", response_model=list[HandoffPublic])
async def list_handoffs(
    session: SessionDep,
    operator: OperatorDep,
    status_: Annotated[
        Literal["open", "assigned", "resolved", "returned"] | None, Query(alias="status")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[HandoffPublic]:
    """Handoffs, oldest waiting first."""
    query = select(Handoff)
    if status_:
        query = query.where(Handoff.status == status_)
    rows = await session.execute(query.order_by(Handoff.created_at, Handoff.id).limit(limit))
    return [HandoffPublic.model_validate(h) for h in rows.scalars()]


async def _get(session: SessionDep, handoff_id: int) -> Handoff:
    handoff = await session.get(Handoff, handoff_id)
    if handoff is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="handoff not found")
    return handoff


@router.get("/{handoff_id}", response_model=HandoffPublic)
async def get_handoff(handoff_id: int, session: SessionDep, operator: OperatorDep) -> HandoffPublic:
    """One handoff."""
    return HandoffPublic.model_validate(await _get(session, handoff_id))


@router.post("/{handoff_id}/claim", response_model=HandoffPublic)
async def claim(handoff_id: int, session: SessionDep, operator: OperatorDep) -> HandoffPublic:
    """Take the handoff: it is assigned to the caller."""
    handoff = await _get(session, handoff_id)
    if handoff.status not in ("open", "assigned"):
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"handoff is {handoff.status}")
    handoff.status = "assigned"
    handoff.assigned_agent = operator.name
    await session.execute(
        update(Conversation)
        .where(Conversation.id == handoff.conversation_id)
        .values(owner_agent=operator.name)
    )
    await trace.record(
        session,
        conversation_id=handoff.conversation_id,
        kind="handoff.claimed",
        actor=trace.human(operator.name),
        data={"handoff_id": handoff.id},
    )
    await session.commit()
    return HandoffPublic.model_validate(handoff)


async def _close(
    handoff_id: int, session: SessionDep, operator: OperatorDep, *, resolve: bool
) -> ResumeResult:
    handoff = await _get(session, handoff_id)
    if handoff.status not in ("open", "assigned"):
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"handoff is {handoff.status}")
    conversation_id = handoff.conversation_id
    await session.rollback()
    try:
        result = await turns.resume(
            conversation_id,
            response={"type": "ignore", "args": None, "return_to_bot": True, "resolve": resolve},
            agent=operator.name,
        )
    except turns.NotWaitingForHuman:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail="conversation is not waiting for a human"
        ) from None
    return ResumeResult(conversation_id=conversation_id, **result)


@router.post("/{handoff_id}/return-to-bot", response_model=ResumeResult)
async def return_to_bot(
    handoff_id: int, session: SessionDep, operator: OperatorDep
) -> ResumeResult:
    """Give the conversation back to the bot without sending anything."""
    return await _close(handoff_id, session, operator, resolve=False)


@router.post("/{handoff_id}/resolve", response_model=ResumeResult)
async def resolve(handoff_id: int, session: SessionDep, operator: OperatorDep) -> ResumeResult:
    """Mark the handoff resolved; the bot owns the conversation again."""
    return await _close(handoff_id, session, operator, resolve=True)
