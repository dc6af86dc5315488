"""The sender: delivers a conversation's outbox in order, once, within WhatsApp's rules.

Before each send it re-checks what may have changed since the message was queued:
a human took over (bot messages are dropped), the contact is unreachable or opted out
of proactive messages, or the 24-hour window closed (free text needs a template).
Graph API errors: 130429/131056 back off and retry; 131047 records that a template is
required; 131026 marks the contact unreachable; anything else is recorded with its code.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from traza import trace
from traza.conversations.repository import STUDIO_PHONE_NUMBER_ID, in_service_window
from traza.db import locks
from traza.db.engine import autocommit, session_scope
from traza.db.locks import advisory_lock
from traza.db.models import Contact, Conversation, Inbox, Message, MessageStatus
from traza.ingest.store import apply_stored_statuses
from traza.outbound.channels import (
    OUTSIDE_WINDOW,
    UNREACHABLE,
    Button,
    LocalOutboxChannel,
    OutputChannel,
    SendError,
    WhatsAppChannel,
    validate_buttons,
    validate_list,
)
from traza.settings import get_settings

log = logging.getLogger(__name__)

FREE_FORM = frozenset({"text", "interactive"})
_client: httpx.AsyncClient | None = None


class RetryLater(Exception):
    """A transient failure: the job is retried with backoff."""


def http_client() -> httpx.AsyncClient:
    """The process's shared HTTP client for provider calls."""
    global _client
    if _client is None or _client.is_closed:
        _client = httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0))
    return _client


async def close_http_client() -> None:
    """Close the shared client (at shutdown)."""
    global _client
    if _client is not None:
        await _client.aclose()
    _client = None


def channel_for(phone_number_id: str) -> OutputChannel:
    """WhatsApp when a token is configured; otherwise (and for Studio) the local outbox."""
    settings = get_settings()
    if settings.whatsapp_access_token is None or phone_number_id == STUDIO_PHONE_NUMBER_ID:
        return LocalOutboxChannel()
    return WhatsAppChannel(client=http_client(), settings=settings, phone_number_id=phone_number_id)


@dataclass(slots=True)
class _Next:
    message_id: int
    conversation_id: int
    kind: str
    text: str
    content: dict[str, Any]
    key: str
    actor: str
    to: str
    phone_number_id: str


async def deliver(
    conversation_id: int, *, final_attempt: bool = False, locked: bool = False
) -> int:
    """Send every queued message of the conversation; return how many were sent.

    One sender per conversation at a time (keeps order, never sends twice): the caller
    either holds the conversation's lock already (`locked=True`, a turn's own job) or
    this takes it.
    """
    if locked:
        return await _deliver(conversation_id, final_attempt=final_attempt)
    async with advisory_lock(locks.CONVERSATION, conversation_id):
        return await _deliver(conversation_id, final_attempt=final_attempt)


async def _deliver(conversation_id: int, *, final_attempt: bool) -> int:
    sent = 0
    more = True
    while more:
        claimed, more = await _claim_next(conversation_id)
        if claimed is None:
            return sent
        if isinstance(claimed, str):
            continue  # skipped or resolved without sending; look at the next one
        sent += await _send_one(claimed, final_attempt=final_attempt)
    return sent


# The next two messages to send, with what the send-time checks need. The caller holds
# the conversation's lock, so no row lock is needed to keep other senders away.
NEXT_SQL = text(
    """
    SELECT m.id, m.status, m.type, m.text, m.content, m.idempotency_key, m.actor,
           c.owner, c.last_inbound_at, ct.wa_id, ct.bsuid, ct.unreachable_at, ct.opted_out_at,
           i.phone_number_id
      FROM messages m
      JOIN conversations c ON c.id = m.conversation_id
      JOIN contacts ct ON ct.id = c.contact_id
      JOIN inboxes i ON i.id = c.inbox_id
     WHERE m.conversation_id = :cid AND m.direction = 'out'
       AND m.status IN ('queued', 'sending')
     ORDER BY m.id
     LIMIT 2
    """
)
MARK_SENDING = text(
    "UPDATE messages SET status = 'sending', attempts = attempts + 1 WHERE id = :id"
)


async def _claim_next(conversation_id: int) -> tuple[_Next | str | None, bool]:
    """The next message to send (or what happened to it), and whether another waits.

    The common case — queued, allowed, inside the window — costs two statements; the
    rest (a send to adopt, a skip, a template required) goes through `_claim`.
    """
    async with autocommit() as conn:
        rows = (await conn.execute(NEXT_SQL, {"cid": conversation_id})).all()
        if not rows:
            return None, False
        r = rows[0]
        sendable = (
            r.status == "queued"
            and _skip_reason(r.owner, r.actor, r.unreachable_at, r.opted_out_at, r.content) is None
            and (r.type not in FREE_FORM or in_service_window(r.last_inbound_at))
        )
        if sendable:
            await conn.execute(MARK_SENDING, {"id": r.id})
            to = r.wa_id or r.bsuid or ""
            return _next(r, conversation_id, to, r.phone_number_id), len(rows) > 1
    async with session_scope() as session:
        return await _claim_locked(session, conversation_id), len(rows) > 1


async def _claim_locked(session: AsyncSession, conversation_id: int) -> _Next | str | None:
    rows = (
        await session.execute(
            select(Message, Conversation, Contact, Inbox)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .join(Contact, Contact.id == Conversation.contact_id)
            .join(Inbox, Inbox.id == Conversation.inbox_id)
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
    if not rows:
        return None
    message, conversation, contact, inbox = rows[0]
    return await _claim(session, message, conversation, contact, inbox)


async def _claim(
    session: AsyncSession,
    message: Message,
    conversation: Conversation,
    contact: Contact,
    inbox: Inbox,
) -> _Next | str:
    if message.status == "sending":
        # The last attempt died after calling the provider: did Meta accept it? What
        # Meta accepted was sent, whatever has changed since, so this comes first.
        adopted = await _adopt_from_status(session, message)
        if adopted:
            return "adopted"
    reason = _skip_reason(
        conversation.owner,
        message.actor,
        contact.unreachable_at,
        contact.opted_out_at,
        message.content,
    )
    if reason:
        await _finish(session, message, "skipped", reason=reason)
        return "skipped"
    if message.type in FREE_FORM and not in_service_window(conversation.last_inbound_at):
        await _finish(
            session,
            message,
            "template_required",
            reason="outside the 24-hour window: free text needs an approved template",
        )
        return "template_required"
    message.status = "sending"
    message.attempts += 1
    to = contact.wa_id or contact.bsuid or ""
    return _next(message, conversation.id, to, inbox.phone_number_id)


def _next(message: Any, conversation_id: int, to: str, phone_number_id: str) -> _Next:
    """What the send needs, from a `Message` or a row with the same columns."""
    return _Next(
        message_id=message.id,
        conversation_id=conversation_id,
        kind=message.type,
        text=message.text or "",
        content=dict(message.content or {}),
        key=message.idempotency_key or f"message:{message.id}",
        actor=message.actor,
        to=to,
        phone_number_id=phone_number_id,
    )


def _skip_reason(
    owner: str,
    actor: str,
    unreachable_at: datetime | None,
    opted_out_at: datetime | None,
    content: dict[str, Any] | None,
) -> str | None:
    """Why a queued message must not go out now, if it must not."""
    if owner == "human" and actor.startswith("bot:"):
        return "a human owns the conversation: the bot does not speak"
    if unreachable_at is not None:
        return "contact is unreachable on WhatsApp (131026)"
    if opted_out_at is not None and (content or {}).get("proactive"):
        return "contact opted out of proactive messages"
    return None


async def _adopt_from_status(session: AsyncSession, message: Message) -> bool:
    if not message.idempotency_key:
        return False
    status = (
        await session.execute(
            select(MessageStatus)
            .where(MessageStatus.callback_data == message.idempotency_key)
            .limit(1)
        )
    ).scalar_one_or_none()
    if status is None:
        return False
    message.wa_message_id = status.wa_message_id
    message.status = "accepted"
    await session.flush()
    await _apply_known_statuses(session, status.wa_message_id)
    await trace.record(
        session,
        conversation_id=message.conversation_id,
        kind="message.sent",
        actor=trace.system("sender"),
        data={"adopted": True, "wa_message_id": status.wa_message_id},
        message_id=message.id,
    )
    return True


async def _send_one(item: _Next, *, final_attempt: bool) -> int:
    channel = channel_for(item.phone_number_id)
    started = time.perf_counter()
    try:
        wamid = await _call(channel, item)
    except SendError as exc:
        await _record_error(item, exc, channel.name, final_attempt=final_attempt)
        if exc.retryable and not final_attempt:
            raise RetryLater(str(exc)) from None
        return 0
    data = {"channel": channel.name, "wa_message_id": wamid, "by": item.actor}
    async with autocommit() as conn:  # one statement, one round trip
        early_statuses: bool = (
            await conn.execute(
                RECORD_SENT,
                {
                    "id": item.message_id,
                    "wamid": wamid,
                    "channel": channel.name,
                    "data": json.dumps(data),
                    "ms": round((time.perf_counter() - started) * 1000, 3),
                    "actor": trace.system("sender"),
                },
            )
        ).scalar_one()
    if early_statuses:
        async with session_scope() as session:
            await _apply_known_statuses(session, wamid)
    return 1


# The provider accepted the message: record its id and the trace event in one statement,
# and say whether status webhooks for that id arrived before we knew it.
RECORD_SENT = text(
    """
    WITH u AS (
      UPDATE messages SET wa_message_id = :wamid, status = 'accepted', channel = :channel,
                          error_code = NULL, error_title = NULL
       WHERE id = :id RETURNING id, conversation_id
    )
    INSERT INTO trace_events (conversation_id, kind, actor, data, duration_ms, message_id)
    SELECT u.conversation_id, 'message.sent', :actor, CAST(:data AS jsonb), :ms, u.id FROM u
    RETURNING EXISTS (SELECT 1 FROM message_statuses WHERE wa_message_id = :wamid)
    """
)


async def _call(channel: OutputChannel, item: _Next) -> str:
    if item.kind == "template":
        name = item.content.get("name")
        params = item.content.get("params") or []
        if not name or not isinstance(params, list):
            raise SendError(
                None, "invalid template: needs a name and a list of params", retryable=False
            )
        return await channel.send_template(
            to=item.to,
            name=str(name),
            language=str(item.content.get("language") or "es"),
            params=[str(p) for p in params],
            callback=item.key,
        )
    if item.kind == "interactive" and isinstance(item.content.get("list"), dict):
        spec = item.content["list"]
        try:
            rows = [Button(id=str(r["id"]), title=str(r["title"])) for r in spec.get("rows") or []]
            validate_list(str(spec.get("button") or ""), rows)
        except (KeyError, TypeError, ValueError) as exc:
            raise SendError(None, f"invalid list: {exc}", retryable=False) from None
        return await channel.send_list(
            to=item.to, body=item.text, button=str(spec["button"]), rows=rows, callback=item.key
        )
    if item.kind == "interactive":
        try:
            buttons = [
                Button(id=str(b["id"]), title=str(b["title"]))
                for b in item.content.get("buttons") or []
            ]
            validate_buttons(buttons)
        except (KeyError, TypeError, ValueError) as exc:
            # A malformed message can never be sent: fail it, or it blocks the outbox.
            raise SendError(None, f"invalid reply buttons: {exc}", retryable=False) from None
        return await channel.send_buttons(
            to=item.to, body=item.text, buttons=buttons, callback=item.key
        )
    return await channel.send_text(to=item.to, text=item.text, callback=item.key)


async def _record_error(item: _Next, exc: SendError, channel: str, *, final_attempt: bool) -> None:
    retry = exc.retryable and not final_attempt
    async with session_scope() as session:
        message = await session.get_one(Message, item.message_id, with_for_update=True)
        message.error_code = exc.code
        message.error_title = exc.title
        data: dict[str, Any] = {
            "channel": channel,
            "error_code": exc.code,
            "error_title": exc.title,
            "attempt": message.attempts,
        }
        if retry:
            # An answer lost in transit leaves the message 'sending': the retry adopts
            # it if Meta's status webhook (with our callback data) came back meanwhile.
            message.status = "sending" if exc.maybe_sent else "queued"
            data["will_retry"] = True
            if exc.maybe_sent:
                data["outcome"] = "unknown: the provider may have accepted it"
        elif exc.code == OUTSIDE_WINDOW:
            message.status = "template_required"
            message.failed_at = datetime.now(UTC)
            data["outcome"] = "template required: outside the 24-hour window"
        else:
            message.status = "failed"
            message.failed_at = datetime.now(UTC)
        if exc.code == UNREACHABLE:
            await session.execute(
                text(
                    "UPDATE contacts SET unreachable_at = COALESCE(unreachable_at, now()) "
                    "WHERE id = (SELECT contact_id FROM conversations WHERE id = :cid)"
                ),
                {"cid": item.conversation_id},
            )
            data["contact"] = "marked unreachable"
        await trace.record(
            session,
            conversation_id=item.conversation_id,
            kind="message.send_failed",
            actor=trace.system("sender"),
            data=data,
            message_id=item.message_id,
        )
    log.warning("send failed for message %s: %s %s", item.message_id, exc.code, exc.title)


async def _finish(session: AsyncSession, message: Message, status: str, *, reason: str) -> None:
    message.status = status
    message.error_title = reason
    await trace.record(
        session,
        conversation_id=message.conversation_id,
        kind="message.skipped" if status == "skipped" else "message.send_failed",
        actor=trace.system("sender"),
        data={"status": status, "reason": reason},
        message_id=message.id,
    )


async def _apply_known_statuses(session: AsyncSession, wamid: str) -> None:
    """Statuses that arrived before we learnt our message's id are applied now."""
    rows = (
        await session.execute(
            select(MessageStatus)
            .where(MessageStatus.wa_message_id == wamid)
            .order_by(MessageStatus.id)
        )
    ).scalars()
    await apply_stored_statuses(await session.connection(), rows)
