"""The conversation and its messages: the 24-hour window, language, Studio threads, turns consumed.

The handoff aggregate lives in `traza.operations.handoffs`, the trace in `traza.trace`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from traza import clock
from traza.db.engine import autocommit
from traza.db.models import Conversation, Message

WINDOW = timedelta(hours=24)
STUDIO_PHONE_NUMBER_ID = "studio"


async def set_language(conversation_id: int, language: str) -> None:
    """Store the language detected for a conversation (one statement, own transaction)."""
    async with autocommit() as conn:
        await conn.execute(
            text(
                "UPDATE conversations SET language = :l "
                "WHERE id = :id AND language IS DISTINCT FROM :l"
            ),
            {"id": conversation_id, "l": language},
        )


def in_service_window(last_inbound_at: datetime | None, now: datetime | None = None) -> bool:
    """Whether WhatsApp's 24-hour customer service window is open."""
    if last_inbound_at is None:
        return False
    return (now or clock.now()) - last_inbound_at < WINDOW


async def studio_conversation(session: AsyncSession, thread_id: str) -> Conversation:
    """A conversation for a thread started from LangGraph Studio (no WhatsApp contact).

    It lives on a `studio` inbox with a contact named after the thread, so a flow
    debugged in Studio leaves the same trace as a real one and sends through the
    local outbox.
    """
    inbox_id: int = (
        await session.execute(
            text(
                "INSERT INTO inboxes (phone_number_id, name) VALUES (:p, 'LangGraph Studio') "
                "ON CONFLICT (phone_number_id) DO UPDATE SET name = inboxes.name RETURNING id"
            ),
            {"p": STUDIO_PHONE_NUMBER_ID},
        )
    ).scalar_one()
    contact_id: int = (
        await session.execute(
            text(
                "INSERT INTO contacts (bsuid, profile_name) VALUES (:b, 'Studio') "
                "ON CONFLICT (bsuid) DO UPDATE SET bsuid = EXCLUDED.bsuid RETURNING id"
            ),
            {"b": f"studio-{thread_id}"},
        )
    ).scalar_one()
    conversation = Conversation(
        inbox_id=inbox_id, contact_id=contact_id, thread_id=thread_id, owner="bot", status="open"
    )
    session.add(conversation)
    await session.flush()
    return conversation


async def mark_processed(
    session: AsyncSession | AsyncConnection,
    message_ids: list[int],
    *,
    handoff_id: int | None = None,
) -> None:
    """Mark a turn's inbound messages consumed (and attach them to a handoff)."""
    if not message_ids:
        return
    values: dict[str, Any] = {"processed_at": datetime.now(UTC)}
    if handoff_id is not None:
        values["handoff_id"] = handoff_id
    await session.execute(
        update(Message)
        .where(Message.id.in_(message_ids), Message.processed_at.is_(None))
        .values(**values)
    )
