"""Operator endpoints on conversations: list, timeline, history, resume, takeover, notes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, status
from pydantic import ValidationError

from api.deps import OperatorDep, RowId, SessionDep, check_team, deny
from api.schemas import (
    CheckpointPublic,
    ContactPublic,
    ConversationPublic,
    MessagePublic,
    NotePublic,
    NoteRequest,
    ResumeRequest,
    ResumeResult,
    TimelineEntry,
)
from traza.conversations import repository
from traza.db.engine import session_scope
from traza.db.models import Contact, Conversation, Inbox
from traza.operations import handoffs
from traza.operations import repository as operations
from traza.operations.agents import Operator
from traza.services import turns
from traza.services.runtime import conversation_graph, thread_config
from traza.trace import reader

router = APIRouter(prefix="/conversations", tags=["conversations"])


def _public(conversation: Conversation, contact: Contact, inbox: Inbox) -> ConversationPublic:
    return ConversationPublic(
        id=conversation.id,
        inbox_id=inbox.id,
        phone_number_id=inbox.phone_number_id,
        contact=ContactPublic.model_validate(contact),
        status=conversation.status,
        owner=conversation.owner,
        owner_agent=conversation.owner_agent,
        team=conversation.team,
        thread_id=conversation.thread_id,
        last_inbound_at=conversation.last_inbound_at,
        created_at=conversation.created_at,
    )


async def _visible(
    conversation_id: RowId, request: Request, session: SessionDep, operator: OperatorDep
) -> Conversation:
    """The conversation, if it exists and the caller's teams cover it (else 404/403)."""
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="conversation not found")
    await check_team(request, operator, team=conversation.team, conversation_id=conversation_id)
    return conversation


VisibleConversation = Annotated[Conversation, Depends(_visible)]


@router.get("", response_model=list[ConversationPublic])
async def list_conversations(
    session: SessionDep,
    operator: OperatorDep,
    wa_id: str | None = None,
    status_: Annotated[Literal["open", "closed"] | None, Query(alias="status")] = None,
    owner: Literal["bot", "human", "system"] | None = None,
    team: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[ConversationPublic]:
    """Conversations of the caller's teams (all for admins), newest activity first."""
    rows = await repository.conversations_with_inbox(
        session,
        wa_id=wa_id,
        status=status_,
        owner=owner,
        team=team,
        teams=operator.scope,
        limit=limit,
        offset=offset,
    )
    return [_public(c, contact, inbox) for c, contact, inbox in rows]


@router.get("/{conversation_id}", response_model=ConversationPublic)
async def get_conversation(
    conversation: VisibleConversation, session: SessionDep
) -> ConversationPublic:
    """One conversation."""
    contact = await session.get_one(Contact, conversation.contact_id)
    inbox = await session.get_one(Inbox, conversation.inbox_id)
    return _public(conversation, contact, inbox)


@router.get("/{conversation_id}/messages", response_model=list[MessagePublic])
async def list_messages(
    conversation: VisibleConversation, session: SessionDep
) -> list[MessagePublic]:
    """Every message in and out, in order."""
    rows = await repository.messages_of(session, conversation_id=conversation.id)
    return [MessagePublic.model_validate(m) for m in rows]


@router.get("/{conversation_id}/timeline", response_model=list[TimelineEntry])
async def timeline(conversation: VisibleConversation, session: SessionDep) -> list[TimelineEntry]:
    """The trace in order: messages, decisions, verdicts, handoffs, owner changes, sends."""
    events = await reader.trace_events(session, conversation.id)
    message_ids = {e.message_id for e in events if e.message_id}
    messages = {
        m.id: MessagePublic.model_validate(m)
        for m in await repository.messages_by_ids(session, message_ids=message_ids)
    }
    checkpoints = await repository.checkpoints_by_step(session, thread_id=conversation.thread_id)
    return [
        TimelineEntry(
            id=e.id,
            at=e.at,
            kind=e.kind,
            actor=e.actor,
            data=e.data,
            duration_ms=e.duration_ms,
            message=messages.get(e.message_id) if e.message_id else None,
            thread_id=e.thread_id,
            step=e.step,
            checkpoint_id=checkpoints.get(e.step) if e.step is not None else None,
        )
        for e in events
    ]


@router.get("/{conversation_id}/history", response_model=list[CheckpointPublic])
async def history(
    conversation: VisibleConversation,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[CheckpointPublic]:
    """The LangGraph checkpoint history of the conversation's thread, newest first."""
    graph = await conversation_graph()
    out: list[CheckpointPublic] = []
    async for snap in graph.aget_state_history(thread_config(conversation.thread_id), limit=limit):
        configurable: dict[str, Any] = snap.config.get("configurable", {})
        parent: dict[str, Any] = (snap.parent_config or {}).get("configurable", {})
        out.append(
            CheckpointPublic(
                checkpoint_id=str(configurable.get("checkpoint_id")),
                parent_checkpoint_id=parent.get("checkpoint_id"),
                step=(snap.metadata or {}).get("step"),
                source=(snap.metadata or {}).get("source"),
                created_at=snap.created_at,
                next=list(snap.next),
                values=dict(snap.values),
                interrupts=[{"id": i.id, "value": i.value} for i in snap.interrupts],
            )
        )
    return out


@router.post("/{conversation_id}/resume", response_model=ResumeResult)
async def resume(
    conversation: VisibleConversation,
    request: Request,
    session: SessionDep,
    operator: OperatorDep,
    body: Annotated[dict[str, Any] | list[dict[str, Any]], Body()],
) -> ResumeResult:
    """Answer a conversation that waits for a human (agent-inbox `HumanResponse`).

    `response` sends the agent's text; `edit` sends an edited draft; `accept` sends the
    bot's draft; `ignore` sends nothing. `return_to_bot` / `resolve` hand it back.
    """
    if isinstance(body, list):
        if len(body) != 1:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, detail="send exactly one response"
            )
        body = body[0]
    try:
        answer = ResumeRequest.model_validate(body)
    except ValidationError as exc:
        detail = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail) from None
    conversation_id = conversation.id
    await _may_answer(request, session, operator, conversation_id)
    try:
        result = await turns.resume(
            conversation_id, response=answer.as_response(), agent=operator.name
        )
    except turns.ConversationNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="conversation not found") from None
    except turns.NotWaitingForHuman:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail="conversation is not waiting for a human"
        ) from None
    return ResumeResult(conversation_id=conversation_id, **result)


async def _may_answer(
    request: Request, session: SessionDep, operator: Operator, conversation_id: int
) -> None:
    """Agents answer only handoffs that are unassigned or assigned to them."""
    if operator.role != "agent":
        return
    handoff = await handoffs.current_handoff(session, conversation_id)
    handoff_id, assignee = (handoff.id, handoff.assigned_agent) if handoff else (None, None)
    await session.rollback()
    if assignee and assignee != operator.name:
        raise await deny(
            request,
            operator,
            conversation_id=conversation_id,
            reason=f"handoff {handoff_id} is assigned to {assignee}; "
            "ask them or a supervisor to transfer it",
        )


@router.post("/{conversation_id}/takeover", response_model=ResumeResult)
async def takeover(
    conversation: VisibleConversation, session: SessionDep, operator: OperatorDep
) -> ResumeResult:
    """Take a conversation from the bot: a handoff assigned to the caller, bot silent."""
    conversation_id = conversation.id
    await session.rollback()
    try:
        result = await turns.take_over(conversation_id, agent=operator.name)
    except turns.NotWaitingForHuman as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    return ResumeResult(conversation_id=conversation_id, **result)


@router.get("/{conversation_id}/notes", response_model=list[NotePublic])
async def list_notes(conversation: VisibleConversation, session: SessionDep) -> list[NotePublic]:
    """Internal notes between agents (never sent to the customer)."""
    rows = await operations.conversation_notes(session, conversation_id=conversation.id)
    return [NotePublic.model_validate(n) for n in rows]


@router.post("/{conversation_id}/notes", response_model=NotePublic, status_code=201)
async def add_note(
    conversation: VisibleConversation, operator: OperatorDep, body: NoteRequest
) -> NotePublic:
    """Add an internal note; it is recorded in the trace and never sent."""
    conversation_id = conversation.id
    async with session_scope() as session:
        handoff = await handoffs.current_handoff(session, conversation_id)
        note = await handoffs.add_note(
            session,
            conversation_id=conversation_id,
            handoff_id=handoff.id if handoff else None,
            author=operator.name,
            body=body.body,
        )
        return NotePublic.model_validate(note)
