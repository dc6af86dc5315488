"""Replay a conversation through today's graph, and fork its checkpoints (time travel).

Supervisors and admins only: a replay runs today's model on a customer's messages.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request, status
from pydantic import Field

from api.deps import OperatorDep, require_role
from api.routes.conversations import VisibleConversation
from api.schemas import Input
from traza.services import checkpoints
from traza.services import replay as runner

router = APIRouter(prefix="/conversations", tags=["replay"])


class ReplayRequest(Input):
    """Where the replay starts."""

    from_checkpoint: str | None = Field(
        default=None, description="Replay only the turns after this checkpoint id."
    )


@router.post("/{conversation_id}/replay")
async def replay(
    request: Request,
    conversation: VisibleConversation,
    operator: OperatorDep,
    body: Annotated[ReplayRequest | None, Body()] = None,
) -> dict[str, Any]:
    """Re-run the conversation's inbound messages through today's graph; nothing is sent.

    Each turn shows the recorded and today's intent, route, guardrail verdict and reply,
    and which of them differ.
    """
    await require_role(request, operator, "admin", "supervisor")
    try:
        if body is not None and body.from_checkpoint:
            cp = await checkpoints.checkpoint(conversation.thread_id, body.from_checkpoint)
            result = await runner.replay_conversation(
                conversation.id, from_step=cp.step, state=cp.values
            )
        else:
            result = await runner.replay_conversation(conversation.id)
    except runner.ReplayError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc).strip("'\"")) from None
    return result.as_dict()


@router.post("/{conversation_id}/checkpoints/{checkpoint_id}/fork", status_code=201)
async def fork(
    request: Request, conversation: VisibleConversation, checkpoint_id: str, operator: OperatorDep
) -> dict[str, str]:
    """Copy one checkpoint of the conversation's thread into a new scratch thread."""
    await require_role(request, operator, "admin", "supervisor")
    try:
        return await checkpoints.fork(conversation.id, checkpoint_id)
    except runner.ReplayError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc).strip("'\"")) from None
