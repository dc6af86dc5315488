"""A bot message queued straight into the outbox, for tests of what humans do next."""

from __future__ import annotations


async def queue_bot_message(cid: int, *, key: str, text: str) -> int:
    """A bot reply written to the outbox as a graph node does, then its delivery asked for."""
    from traza.db.engine import session_scope
    from traza.outbound.outbox import queue_message, request_delivery

    async with session_scope() as session:
        message_id = await queue_message(
            session, conversation_id=cid, key=key, actor="bot:traza", kind="text", text_body=text
        )
    assert message_id is not None
    await request_delivery(cid)
    return message_id
