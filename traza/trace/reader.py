"""Reading the trace back: a conversation's events in the order they were written."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from traza.db.models import TraceEvent


async def trace_events(session: AsyncSession, conversation_id: int) -> list[TraceEvent]:
    """The conversation's trace, in the order it was written."""
    result = await session.execute(
        select(TraceEvent)
        .where(TraceEvent.conversation_id == conversation_id)
        .order_by(TraceEvent.id)
    )
    return list(result.scalars())
