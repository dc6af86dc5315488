"""The sender's SQL: the next outbound messages, claiming one, recording a send.

`traza.outbound.outbox` holds the outbox's own statements (queueing a message); these are
the sender's. The two hot-path statements (`NEXT_SQL`, `RECORD_SENT`) run on a `direct()`
psycopg connection, one round trip each; the rest on the caller's session.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from sqlalchemy import Row, ScalarResult, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from traza.db.engine import run
from traza.db.models import Candidate, Contact, Conversation, Inbox, Message, MessageStatus

# The next two messages to send, with what the send-time checks need. The caller holds
# the conversation's lock, so no row lock is needed to keep other senders away.
NEXT_SQL = text(
    """
    SELECT m.id, m.status, m.type, m.text, m.content, m.idempotency_key, m.actor, m.channel,
           c.owner, c.last_inbound_at, ct.wa_id, ct.bsuid, ct.unreachable_at, ct.opted_out_at,
           i.phone_number_id, k.email, k.phone
      FROM messages m
      JOIN conversations c ON c.id = m.conversation_id
      JOIN contacts ct ON ct.id = c.contact_id
      JOIN inboxes i ON i.id = c.inbox_id
      LEFT JOIN candidates k ON k.contact_id = c.contact_id
     WHERE m.conversation_id = :cid AND m.direction = 'out'
       AND m.status IN ('queued', 'sending')
     ORDER BY m.id
     LIMIT 2
    """
)
MARK_SENDING = text(
    "UPDATE messages SET status = 'sending', attempts = attempts + 1 WHERE id = :id"
)


# The provider accepted the message: record its id and the trace event in one statement,
# and say whether status webhooks for that id arrived before we knew it. Run twice (its
# first answer lost with the connection), it records nothing the second time.
RECORD_SENT = text(
    """
    WITH u AS (
      UPDATE messages SET wa_message_id = :wamid, status = 'accepted', channel = :channel,
                          error_code = NULL, error_title = NULL
       WHERE id = :id AND wa_message_id IS DISTINCT FROM :wamid
      RETURNING id, conversation_id
    ), t AS (
      INSERT INTO trace_events (conversation_id, kind, actor, data, duration_ms, message_id)
      SELECT u.conversation_id, 'message.sent', :actor, CAST(:data AS jsonb), :ms, u.id FROM u
    )
    SELECT EXISTS (SELECT 1 FROM message_statuses WHERE wa_message_id = :wamid)
      FROM messages WHERE id = :id
    """
)


async def next_to_send(conn: psycopg.AsyncConnection[Any], *, conversation_id: int) -> list[Any]:
    """The conversation's next two messages to send, with what the send-time checks need."""
    return await (await run(conn, NEXT_SQL, {"cid": conversation_id})).fetchall()


async def mark_sending(conn: psycopg.AsyncConnection[Any], *, message_id: int) -> None:
    """The message is being sent: one more attempt."""
    await run(conn, MARK_SENDING, {"id": message_id})


async def lock_next_to_send(
    session: AsyncSession, *, conversation_id: int
) -> Sequence[Row[Message, Conversation, Contact, Inbox, Candidate]]:
    """The next message to send, row-locked, with its conversation, contact, inbox, candidate."""
    return (
        await session.execute(
            select(Message, Conversation, Contact, Inbox, Candidate)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .join(Contact, Contact.id == Conversation.contact_id)
            .join(Inbox, Inbox.id == Conversation.inbox_id)
            .outerjoin(Candidate, Candidate.contact_id == Conversation.contact_id)
            .where(
                Message.conversation_id == conversation_id,
                Message.direction == "out",
                Message.status.in_(("queued", "sending")),
            )
            .order_by(Message.id)
            .limit(1)
            .with_for_update(of=Message)
        )
    ).all()


async def status_with_callback(
    session: AsyncSession, *, callback_data: str
) -> MessageStatus | None:
    """A status webhook that carried our callback data, if one arrived."""
    return (
        await session.execute(
            select(MessageStatus).where(MessageStatus.callback_data == callback_data).limit(1)
        )
    ).scalar_one_or_none()


async def record_sent(
    conn: psycopg.AsyncConnection[Any],
    *,
    message_id: int,
    wamid: str,
    channel: str,
    data: str,
    ms: float,
    actor: str,
) -> Any:
    """Record the provider's id and the trace event; whether its statuses came first."""
    params = {
        "id": message_id,
        "wamid": wamid,
        "channel": channel,
        "data": data,
        "ms": ms,
        "actor": actor,
    }
    return await (await run(conn, RECORD_SENT, params)).fetchone()


async def mark_contact_unreachable(session: AsyncSession, *, conversation_id: int) -> None:
    """The conversation's contact cannot be reached on WhatsApp (kept from the first time)."""
    await session.execute(
        text(
            "UPDATE contacts SET unreachable_at = COALESCE(unreachable_at, now()) "
            "WHERE id = (SELECT contact_id FROM conversations WHERE id = :cid)"
        ),
        {"cid": conversation_id},
    )


async def statuses_of(session: AsyncSession, *, wa_message_id: str) -> ScalarResult[MessageStatus]:
    """The stored statuses of a provider message id, in arrival order."""
    return (
        await session.execute(
            select(MessageStatus)
            .where(MessageStatus.wa_message_id == wa_message_id)
            .order_by(MessageStatus.id)
        )
    ).scalars()
