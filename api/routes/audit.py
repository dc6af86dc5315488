"""The audit trail over HTTP: a conversation's verifiable export, data-subject requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from api.deps import AdminDep, OperatorDep, RowId, SessionDep, check_team, require_role
from api.schemas import Input
from traza import trace
from traza.audit import subjects, trail
from traza.db.models import Conversation

router = APIRouter(tags=["audit"])


class ErasureRequest(Input):
    """`POST /contacts/{id}/erase`: why the contact's personal data is erased."""

    reason: str = Field(min_length=1, max_length=500, examples=["GDPR art. 17 request #42"])


class ErasureResult(BaseModel):
    """What an erasure did (counts per kind of record)."""

    contact_id: int
    erased_at: str
    by: str
    reason: str
    conversations: list[int]
    candidates: list[int]
    erased: dict[str, int]


@router.get(
    "/conversations/{conversation_id}/audit.jsonl",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
async def audit_export(
    conversation_id: RowId, request: Request, session: SessionDep, operator: OperatorDep
) -> StreamingResponse:
    """A conversation's audit trail as NDJSON, verifiable offline.

    The first line describes the hashing; then one line per event with every hashed
    field, `data_hash`, `prev_hash`, `hash` and the data as stored; then the anchors
    that cover the conversation. `traza audit verify --file` checks it with no database.
    Admins and supervisors (of the conversation's team).
    """
    await require_role(request, operator, "admin", "supervisor")
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="conversation not found")
    team = conversation.team
    await session.rollback()
    await check_team(request, operator, team=team, conversation_id=conversation_id)

    async def lines() -> AsyncIterator[bytes]:
        async for line in trail.export_conversation(conversation_id):
            yield line.encode() + b"\n"

    return StreamingResponse(
        lines(),
        media_type="application/x-ndjson",
        headers={
            "Content-Disposition": (
                f'attachment; filename="conversation-{conversation_id}-audit.jsonl"'
            )
        },
    )


async def _contact_id(session: SessionDep, contact_id: int) -> int:
    try:
        found = await subjects.find_contact(session, contact_id)
    except subjects.SubjectNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="contact not found") from None
    await session.rollback()
    return found


@router.get("/contacts/{contact_id}/export")
async def export_contact(contact_id: RowId, session: SessionDep, _: AdminDep) -> dict[str, Any]:
    """Everything held about a contact (data-subject access request). Admins only."""
    try:
        return await subjects.export_subject(await _contact_id(session, contact_id))
    except subjects.SubjectNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="contact not found") from None


@router.post("/contacts/{contact_id}/erase", response_model=ErasureResult)
async def erase_contact(
    contact_id: RowId,
    session: SessionDep,
    operator: AdminDep,
    body: Annotated[ErasureRequest, Body()],
) -> ErasureResult:
    """Erase a contact's personal data, recorded in the trail (which still verifies).

    Names, numbers, emails, profiles, message texts, raw webhook bodies, checkpoints and
    the data of their trace events go; ids, times, kinds and actors stay. Open
    conversations close and planned follow-ups are cancelled. It cannot be undone: a
    second request answers 409. Admins only.
    """
    cid = await _contact_id(session, contact_id)
    try:
        result = await subjects.erase_subject(
            cid, reason=body.reason, by=trace.human(operator.name)
        )
    except subjects.AlreadyErased as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    return ErasureResult.model_validate(result)
