"""The conversation's checkpointed state: small, flat, and only what the next step needs.

The full history lives in the database; `recent` holds a bounded window, so checkpoint
bytes per turn do not grow with the length of the conversation.
"""

from __future__ import annotations

from typing import Any, TypedDict

RECENT_WINDOW = 8


class InboundItem(TypedDict, total=False):
    """One inbound message of this turn (`id` is the stored message's id)."""

    id: int
    type: str
    text: str | None
    payload: str | None


class TurnInput(TypedDict, total=False):
    """What starts a turn: the inbound messages coalesced into it."""

    turn: list[InboundItem]
    followup: dict[str, Any] | None


class ConversationState(TypedDict, total=False):
    """State carried between the nodes of one conversation thread."""

    turn: list[InboundItem]
    conversation_id: int
    contact_name: str | None
    contact_wa_id: str | None
    candidate_id: int | None
    inbox: str | None
    language: str
    owner: str
    opted_out: bool
    in_window: bool
    handoff_id: int | None
    recent: list[dict[str, Any]]
    classification: dict[str, Any]
    decision: dict[str, Any]
    draft: dict[str, Any] | None
    guardrail: dict[str, Any] | None
    unknown_streak: int
    resumes: int
    followup: dict[str, Any] | None
