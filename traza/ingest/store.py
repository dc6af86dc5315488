"""Store a parsed webhook durably and idempotently, in one transaction.

Delivery is at least once, batched and out of order: messages are unique on Meta's id,
statuses on (message id, status), and statuses only ever move a message forward.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from traza import trace
from traza.db.engine import autocommit, get_engine
from traza.db.queue import PROCESS_CONVERSATION, TURN_QUEUE, turn_job_lock
from traza.ingest import effects
from traza.ingest.payload import (
    SILENT_TYPES,
    InboundMessage,
    ParsedPayload,
    StatusUpdate,
    clean_text,
)
from traza.trace import kinds

# Order in which statuses may replace each other; `failed` is terminal.
STATUS_RANK = {
    "queued": 0,
    "sending": 1,
    "accepted": 2,
    "sent": 3,
    "delivered": 4,
    "read": 5,
    "failed": 6,
}
_RANK_SQL = "CASE {col} " + " ".join(f"WHEN '{k}' THEN {v}" for k, v in STATUS_RANK.items())
RANK_SQL = _RANK_SQL + " ELSE -1 END"


@dataclass(slots=True)
class StoreResult:
    """What a webhook POST changed: the conversations that now need a turn."""

    event_id: int
    new_messages: int = 0
    duplicate_messages: int = 0
    new_statuses: int = 0
    conversations_to_run: set[int] = field(default_factory=set)
    inboxes: dict[str, int] = field(default_factory=dict)


_inbox_cache: dict[str, int] = {}

UPSERT_INBOX = text(
    """
    INSERT INTO inboxes (phone_number_id, display_phone_number, waba_id, name)
    VALUES (:pnid, :display, :waba, :display)
    ON CONFLICT (phone_number_id) DO UPDATE
      SET display_phone_number = COALESCE(EXCLUDED.display_phone_number,
                                          inboxes.display_phone_number),
          waba_id = COALESCE(EXCLUDED.waba_id, inboxes.waba_id)
    RETURNING id, (xmax = 0) AS inserted
    """
)
UPSERT_CONTACT_BY_WA_ID = text(
    """
    INSERT INTO contacts (wa_id, profile_name) VALUES (:wa_id, :name)
    ON CONFLICT (wa_id) DO UPDATE
      SET profile_name = COALESCE(EXCLUDED.profile_name, contacts.profile_name),
          unreachable_at = NULL  -- whoever writes to us can be reached again
    RETURNING id
    """
)
INSERT_CONTACT_WITH_BOTH_IDS = text(
    """
    INSERT INTO contacts (wa_id, bsuid, profile_name) VALUES (:wa_id, :bsuid, :name)
    ON CONFLICT DO NOTHING
    RETURNING id
    """
)
# The contact already known by either id; the phone number's wins if they differ.
FIND_CONTACT_BY_EITHER_ID = text(
    """
    SELECT id FROM contacts WHERE wa_id = :wa_id OR bsuid = :bsuid
    ORDER BY (wa_id = :wa_id) IS TRUE DESC, id
    LIMIT 1
    """
)
# Learn the id we did not know yet, unless another contact already holds it.
COMPLETE_CONTACT = text(
    """
    UPDATE contacts SET
      profile_name = COALESCE(:name, profile_name),
      unreachable_at = NULL,
      wa_id = COALESCE(wa_id, CASE WHEN NOT EXISTS (
                SELECT 1 FROM contacts other WHERE other.wa_id = :wa_id) THEN :wa_id END),
      bsuid = COALESCE(bsuid, CASE WHEN NOT EXISTS (
                SELECT 1 FROM contacts other WHERE other.bsuid = :bsuid) THEN :bsuid END)
    WHERE id = :id
    """
)
UPSERT_CONTACT_BY_BSUID = text(
    """
    INSERT INTO contacts (bsuid, profile_name) VALUES (:bsuid, :name)
    ON CONFLICT (bsuid) DO UPDATE
      SET profile_name = COALESCE(EXCLUDED.profile_name, contacts.profile_name),
          unreachable_at = NULL  -- whoever writes to us can be reached again
    RETURNING id
    """
)
UPSERT_CONVERSATION = text(
    """
    INSERT INTO conversations (inbox_id, contact_id, thread_id, last_inbound_at)
    VALUES (:inbox_id, :contact_id, :thread_id, :at)
    ON CONFLICT (inbox_id, contact_id) WHERE status = 'open' DO UPDATE
      SET last_inbound_at = GREATEST(conversations.last_inbound_at, EXCLUDED.last_inbound_at),
          updated_at = now()
    RETURNING id
    """
)
# One round trip stores a new message, its trace event and the conversation's turn job.
# The job row is the one procrastinate's own `defer` writes; inserting it here makes the
# message and its processing commit together (nothing acknowledged is lost), and ON
# CONFLICT on procrastinate's queueing-lock index coalesces a burst into one waiting turn
# without an error (procrastinate's Python API raises AlreadyEnqueued instead).
INSERT_MESSAGE = text(
    """
    WITH m AS (
      INSERT INTO messages (conversation_id, direction, wa_message_id, type, content, text,
                            actor, status, wa_timestamp, webhook_event_id, processed_at)
      VALUES (:cid, 'in', :wamid, :type, CAST(:content AS jsonb), :text, 'customer',
              'received', :ts, :event_id, CASE WHEN :silent THEN now() END)
      ON CONFLICT (wa_message_id) DO NOTHING
      RETURNING id
    ), t AS (
      INSERT INTO trace_events (conversation_id, kind, actor, data, message_id)
      SELECT :cid, 'message.received', 'customer', CAST(:trace AS jsonb), m.id FROM m
    ), j AS (
      INSERT INTO procrastinate_jobs (queue_name, task_name, priority, lock, queueing_lock,
                                      args, scheduled_at)
      SELECT :queue, :task, 0, :lock, :lock, jsonb_build_object('conversation_id', :cid),
             now() + make_interval(secs => :delay)
        FROM m WHERE NOT :silent
      ON CONFLICT (queueing_lock) WHERE status = 'todo' DO NOTHING
    )
    SELECT id FROM m
    """
)
INSERT_STATUS = text(
    """
    INSERT INTO message_statuses (wa_message_id, status, at, recipient_id, error_code,
                                  error_title, callback_data, webhook_event_id)
    VALUES (:wamid, :status, :at, :recipient, :code, :title, :callback, :event_id)
    ON CONFLICT (wa_message_id, status) DO NOTHING
    RETURNING id
    """
)
APPLY_STATUS = text(
    f"""
    UPDATE messages SET
      status = CASE WHEN {RANK_SQL.format(col="status")} < {RANK_SQL.format(col=":status")}
                    THEN :status ELSE status END,
      sent_at = CASE WHEN :status = 'sent' THEN COALESCE(sent_at, :at) ELSE sent_at END,
      delivered_at = CASE WHEN :status = 'delivered' THEN COALESCE(delivered_at, :at)
                          ELSE delivered_at END,
      read_at = CASE WHEN :status = 'read' THEN COALESCE(read_at, :at) ELSE read_at END,
      failed_at = CASE WHEN :status = 'failed' THEN COALESCE(failed_at, :at) ELSE failed_at END,
      error_code = CASE WHEN :status = 'failed' THEN :code ELSE error_code END,
      error_title = CASE WHEN :status = 'failed' THEN :title ELSE error_title END
    WHERE wa_message_id = :wamid
    RETURNING id, conversation_id, status
    """
)


# The hot path: one customer message from a known business number, by phone number.
# Everything `store_webhook` does for it — raw body, contact, open conversation, message,
# trace event, turn job — in one statement, so the acknowledgement costs one round trip.
# The job's lock is spelled as `traza.db.queue.turn_job_lock` spells it.
STORE_ONE_MESSAGE = text(
    """
    WITH ev AS (
      INSERT INTO webhook_events (body, signature, messages, statuses)
      VALUES (:body, :sig, 1, 0) RETURNING id
    ), ct AS (
      INSERT INTO contacts (wa_id, profile_name) VALUES (:wa_id, :name)
      ON CONFLICT (wa_id) DO UPDATE
        SET profile_name = COALESCE(EXCLUDED.profile_name, contacts.profile_name),
          unreachable_at = NULL  -- whoever writes to us can be reached again
      RETURNING id
    ), cv AS (
      INSERT INTO conversations (inbox_id, contact_id, thread_id, last_inbound_at)
      SELECT :inbox_id, ct.id, :thread_id, :at FROM ct
      ON CONFLICT (inbox_id, contact_id) WHERE status = 'open' DO UPDATE
        SET last_inbound_at = GREATEST(conversations.last_inbound_at,
                                       EXCLUDED.last_inbound_at),
            updated_at = now()
      RETURNING id
    ), m AS (
      INSERT INTO messages (conversation_id, direction, wa_message_id, type, content, text,
                            actor, status, wa_timestamp, webhook_event_id, processed_at)
      SELECT cv.id, 'in', :wamid, :type, CAST(:content AS jsonb), :text, 'customer',
             'received', :ts, ev.id, CASE WHEN :silent THEN now() END
        FROM cv, ev
      ON CONFLICT (wa_message_id) DO NOTHING
      RETURNING id, conversation_id
    ), t AS (
      INSERT INTO trace_events (conversation_id, kind, actor, data, message_id)
      SELECT m.conversation_id, 'message.received', 'customer', CAST(:trace AS jsonb), m.id
        FROM m
    ), j AS (
      INSERT INTO procrastinate_jobs (queue_name, task_name, priority, lock, queueing_lock,
                                      args, scheduled_at)
      SELECT :queue, :task, 0, 'conversation:' || m.conversation_id,
             'conversation:' || m.conversation_id,
             jsonb_build_object('conversation_id', m.conversation_id),
             now() + make_interval(secs => :delay)
        FROM m WHERE NOT :silent
      ON CONFLICT (queueing_lock) WHERE status = 'todo' DO NOTHING
    )
    SELECT ev.id AS event_id, cv.id AS conversation_id, m.id AS message_id
      FROM ev CROSS JOIN cv LEFT JOIN m ON true
    """
)


async def ingest(
    *, body: bytes, signature: str | None, parsed: ParsedPayload, coalesce_seconds: float
) -> StoreResult:
    """Store a verified webhook: the one-statement hot path when it fits, else a transaction."""
    one = parsed.messages[0] if len(parsed.messages) == 1 else None
    if (
        one is not None
        and not parsed.statuses
        and one.wa_id
        and not one.bsuid
        and one.phone_number_id in _inbox_cache
        and one.type not in effects.EFFECT_TYPES
    ):
        async with autocommit() as conn:
            return await _store_one(conn, body, signature, one, coalesce_seconds)
    async with get_engine().begin() as conn:
        return await store_webhook(
            conn,
            body=body,
            signature=signature,
            parsed=parsed,
            coalesce_seconds=coalesce_seconds,
        )


def _message_params(message: InboundMessage, coalesce_seconds: float) -> dict[str, Any]:
    """Parameters shared by both message statements (row, trace event, turn job)."""
    silent = message.type in SILENT_TYPES
    data: dict[str, Any] = {"type": message.type, "wa_message_id": message.wa_message_id}
    if silent:
        data["starts_turn"] = False
    return {
        "wamid": message.wa_message_id,
        "type": message.type,
        "content": json.dumps(message.content),
        "text": message.text,
        "ts": message.timestamp,
        "silent": silent,
        "trace": json.dumps(data),
        "queue": TURN_QUEUE,
        "task": PROCESS_CONVERSATION,
        "delay": coalesce_seconds,
    }


async def _store_one(
    conn: AsyncConnection,
    body: bytes,
    signature: str | None,
    message: InboundMessage,
    coalesce_seconds: float,
) -> StoreResult:
    silent = message.type in SILENT_TYPES
    row = (
        await conn.execute(
            STORE_ONE_MESSAGE,
            {
                "body": body,
                "sig": signature,
                "wa_id": message.wa_id,
                "name": message.profile_name,
                "inbox_id": _inbox_cache[message.phone_number_id],
                "thread_id": str(uuid.uuid4()),
                "at": None if silent else message.timestamp,
            }
            | _message_params(message, coalesce_seconds),
        )
    ).one()
    result = StoreResult(event_id=row.event_id)
    if row.message_id is None:
        result.duplicate_messages = 1
    else:
        result.new_messages = 1
        if not silent:
            result.conversations_to_run.add(row.conversation_id)
    return result


async def store_webhook(
    conn: AsyncConnection,
    *,
    body: bytes,
    signature: str | None,
    parsed: ParsedPayload,
    coalesce_seconds: float = 0.0,
) -> StoreResult:
    """Write the raw body, its messages and statuses, and queue the turns they start.

    A new message's turn waits `coalesce_seconds` for the rest of a burst.
    """
    row = await conn.execute(
        text(
            "INSERT INTO webhook_events (body, signature, messages, statuses) "
            "VALUES (:body, :sig, :m, :s) RETURNING id"
        ),
        {"body": body, "sig": signature, "m": len(parsed.messages), "s": len(parsed.statuses)},
    )
    result = StoreResult(event_id=row.scalar_one())
    # Rows are locked in one order (inboxes, contacts, conversations, then messages and
    # statuses, each sorted by key) so that concurrent deliveries of overlapping batches
    # wait for each other instead of deadlocking. Messages keep Meta's order.
    conversations = await _open_conversations(conn, parsed.messages, result)
    for message in parsed.messages:
        await _store_message(
            conn, message, conversations[_sender(message)], result, coalesce_seconds
        )
    for status in sorted(parsed.statuses, key=_status_order):
        await _store_status(conn, status, result)
    for call in parsed.calls:
        await effects.record_call(conn, call)
    return result


async def store_flagged(*, body: bytes, signature: str | None, problem: str) -> int:
    """Keep a signed body that cannot be ingested, with why; return its `webhook_events` id.

    Meta redelivers anything not acknowledged for days, so a body it signed is never
    refused: it is kept raw with its `problem` (for an operator to inspect or re-ingest)
    and acknowledged, and no message or status comes of it.
    """
    async with autocommit() as conn:
        event_id: int = (
            await conn.execute(
                text(
                    "INSERT INTO webhook_events (body, signature, messages, statuses, problem) "
                    "VALUES (:body, :sig, 0, 0, :problem) RETURNING id"
                ),
                {"body": body, "sig": signature, "problem": clean_text(problem)[:2000]},
            )
        ).scalar_one()
    return event_id


def _status_order(status: StatusUpdate) -> tuple[str, int, str]:
    return (status.wa_message_id, STATUS_RANK.get(status.status, -1), status.status)


def _sender(message: InboundMessage) -> tuple[str, str, str]:
    return (message.phone_number_id, message.wa_id or "", message.bsuid or "")


async def _open_conversations(
    conn: AsyncConnection, messages: list[InboundMessage], result: StoreResult
) -> dict[tuple[str, str, str], int]:
    """The open conversation of every (inbox, contact) the messages come from."""
    first: dict[tuple[str, str, str], InboundMessage] = {}
    latest: dict[tuple[str, str, str], datetime | None] = {}
    for message in messages:
        key = _sender(message)
        first.setdefault(key, message)
        at = None if message.type in SILENT_TYPES else message.timestamp
        latest[key] = max(filter(None, (latest.get(key), at)), default=None)
    inboxes = {key[0]: await _inbox_id(conn, first[key], result) for key in sorted(first)}
    people: dict[tuple[str, str], int] = {}
    for key in sorted(first, key=lambda key: key[1:]):
        if key[1:] not in people:
            people[key[1:]] = await _contact_id(conn, first[key])
    pairs = sorted((inboxes[key[0]], people[key[1:]], key) for key in first)
    conversations: dict[tuple[str, str, str], int] = {}
    for inbox_id, contact_id, key in pairs:
        conversations[key] = (
            await conn.execute(
                UPSERT_CONVERSATION,
                {
                    "inbox_id": inbox_id,
                    "contact_id": contact_id,
                    "thread_id": str(uuid.uuid4()),
                    "at": latest[key],
                },
            )
        ).scalar_one()
    return conversations


async def _inbox_id(conn: AsyncConnection, message: InboundMessage, result: StoreResult) -> int:
    pnid = message.phone_number_id
    known = result.inboxes.get(pnid) or _inbox_cache.get(pnid)
    if known is not None:
        return known
    row = (
        await conn.execute(
            UPSERT_INBOX,
            {"pnid": pnid, "display": message.display_phone_number, "waba": message.waba_id},
        )
    ).one()
    inbox_id: int = row.id
    result.inboxes[pnid] = inbox_id
    if not row.inserted:
        # Committed before this transaction began: safe to share with other requests.
        # An inbox this transaction inserted is not, until it commits (it may roll
        # back); the next webhook for the number finds it and remembers it.
        _inbox_cache[pnid] = inbox_id
    return inbox_id


def forget_cached_inboxes() -> None:
    """Drop the phone_number_id → inbox cache (tests that recreate the database)."""
    _inbox_cache.clear()


async def _contact_id(conn: AsyncConnection, message: InboundMessage) -> int:
    """The contact who sent the message, created or completed with what it tells us.

    Meta identifies a person by phone number (`wa_id`), by business-scoped user id
    (`bsuid`, for people who hide their number behind a username) or by both.
    """
    params = {"wa_id": message.wa_id, "bsuid": message.bsuid, "name": message.profile_name}
    if not (message.wa_id and message.bsuid):
        stmt = UPSERT_CONTACT_BY_WA_ID if message.wa_id else UPSERT_CONTACT_BY_BSUID
        contact_id: int = (await conn.execute(stmt, params)).scalar_one()
        return contact_id
    inserted = (await conn.execute(INSERT_CONTACT_WITH_BOTH_IDS, params)).scalar_one_or_none()
    if inserted is not None:
        return int(inserted)
    contact_id = (await conn.execute(FIND_CONTACT_BY_EITHER_ID, params)).scalar_one()
    await conn.execute(COMPLETE_CONTACT, params | {"id": contact_id})
    return contact_id


async def _store_message(
    conn: AsyncConnection,
    message: InboundMessage,
    conversation_id: int,
    result: StoreResult,
    coalesce_seconds: float,
) -> None:
    silent = message.type in SILENT_TYPES
    inserted = (
        await conn.execute(
            INSERT_MESSAGE,
            {
                "cid": conversation_id,
                "event_id": result.event_id,
                "lock": turn_job_lock(conversation_id),
            }
            | _message_params(message, coalesce_seconds),
        )
    ).scalar_one_or_none()
    if inserted is None:
        result.duplicate_messages += 1
        return
    result.new_messages += 1
    if message.type in effects.EFFECT_TYPES:
        await effects.apply(conn, message, conversation_id)
    if not silent:
        result.conversations_to_run.add(conversation_id)


async def _store_status(conn: AsyncConnection, status: StatusUpdate, result: StoreResult) -> None:
    inserted = (
        await conn.execute(
            INSERT_STATUS,
            {
                "wamid": status.wa_message_id,
                "status": status.status,
                "at": status.timestamp,
                "recipient": status.recipient_id,
                "code": status.error_code,
                "title": status.error_title,
                "callback": status.callback_data,
                "event_id": result.event_id,
            },
        )
    ).scalar_one_or_none()
    if inserted is None:
        return  # the same (message, status) again: already applied
    result.new_statuses += 1
    await apply_status(conn, status)


async def apply_status(conn: AsyncConnection, status: StatusUpdate) -> None:
    """Move the message forward (never back) and trace it, if we know the message yet.

    A status that arrives before our send's response is kept in `message_statuses`
    and applied by the sender when it learns the message id.
    """
    updated = (
        await conn.execute(
            APPLY_STATUS,
            {
                "wamid": status.wa_message_id,
                "status": status.status,
                "at": status.timestamp,
                "code": status.error_code,
                "title": status.error_title,
            },
        )
    ).first()
    if updated is None:
        return
    data: dict[str, Any] = {"status": status.status, "now": updated.status}
    if status.error_code is not None:
        data |= {"error_code": status.error_code, "error_title": status.error_title}
    await trace.record(
        conn,
        conversation_id=updated.conversation_id,
        kind=kinds.MESSAGE_STATUS,
        actor=trace.system("whatsapp"),
        data=data,
        message_id=updated.id,
    )


# Statuses stored but never applied: a status webhook that committed while the sender was
# recording the same message id could not see it, nor the sender the status. The sweep
# applies them (each at most once: a status is missing exactly while its timestamp is).
UNAPPLIED_STATUSES = text(
    """
    SELECT s.wa_message_id, s.status, s.at, s.recipient_id, s.error_code, s.error_title,
           s.callback_data
      FROM message_statuses s JOIN messages m ON m.wa_message_id = s.wa_message_id
     WHERE s.at IS NOT NULL AND s.received_at > now() - interval '1 day'
       AND ((s.status = 'sent' AND m.sent_at IS NULL)
         OR (s.status = 'delivered' AND m.delivered_at IS NULL)
         OR (s.status = 'read' AND m.read_at IS NULL)
         OR (s.status = 'failed' AND m.failed_at IS NULL))
     ORDER BY s.id
     LIMIT 1000
    """
)


async def repair_statuses(conn: AsyncConnection) -> int:
    """Apply statuses a race left unapplied; return how many."""
    rows = (await conn.execute(UNAPPLIED_STATUSES)).all()
    await apply_stored_statuses(conn, rows)
    return len(rows)


async def apply_stored_statuses(conn: AsyncConnection, rows: Iterable[Any]) -> None:
    """Apply statuses read back from `message_statuses` (rows or `MessageStatus` objects)."""
    for row in rows:
        await apply_status(
            conn,
            StatusUpdate(
                wa_message_id=row.wa_message_id,
                status=row.status,
                timestamp=row.at,
                recipient_id=row.recipient_id,
                error_code=row.error_code,
                error_title=row.error_title,
                callback_data=row.callback_data,
            ),
        )
