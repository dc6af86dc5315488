"""The sender: delivers a conversation's outbox in order, once, within WhatsApp's rules.

Before each send it re-checks what may have changed since the message was queued:
a human took over (bot messages are dropped), the contact is unreachable or opted out
of proactive messages, or the 24-hour window closed (free text needs a template).
Graph API errors: 130429/131056 back off and retry; 131047 records that a template is
required; 131026 marks the contact unreachable; anything else is recorded with its code.

Each message goes out on its row's `channel`: `whatsapp` (the Cloud API, or the local
outbox without a token), `email` (SMTP, to the candidate's address) or `sms` (the HTTP
provider, to the candidate's number). A message that cannot reach the contact on its
channel (unreachable on WhatsApp, no address, channel not configured) and carries a
fallback plan (`content.fallback`, written by the follow-up agent) is queued again, with
the same checked text, on the plan's next channel (`message.fallback` in the trace).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from traza import trace
from traza.channels.base import (
    OUTSIDE_WINDOW,
    UNREACHABLE,
    Button,
    OutputChannel,
    SendError,
    TemplateParams,
    validate_buttons,
    validate_list,
)
from traza.channels.email import EmailChannel, subject_for
from traza.channels.local import LocalOutboxChannel
from traza.channels.sms import SmsChannel
from traza.channels.whatsapp import WhatsAppChannel
from traza.conversations.repository import STUDIO_PHONE_NUMBER_ID, in_service_window
from traza.db import outage
from traza.db.engine import direct, session_scope
from traza.db.locks import conversation_lock
from traza.db.models import Candidate, Contact, Conversation, Inbox, Message
from traza.ingest.store import apply_stored_statuses
from traza.outbound import repository
from traza.outbound.outbox import queue_message
from traza.settings import get_settings
from traza.trace import kinds

log = logging.getLogger(__name__)

FREE_FORM = frozenset({"text", "interactive"})
# Where a message may move when its channel cannot reach the contact. WhatsApp is not a
# target: a moved message is plain text, which WhatsApp only takes inside the window.
FALLBACK_CHANNELS = ("email", "sms")
# What a message moved to another channel keeps of its content.
CARRIED = ("followup_id", "trigger", "proactive", "source")
UNREACHABLE_REASON = "contact is unreachable on WhatsApp (131026)"
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


def _output_channel(item: _Next) -> OutputChannel:
    """The channel object for one message (configuration was checked when it was claimed)."""
    if item.channel == "email":
        return EmailChannel(settings=get_settings(), subject=item.subject)
    if item.channel == "sms":
        return SmsChannel(client=http_client(), settings=get_settings())
    return channel_for(item.phone_number_id)


def address_of(
    channel: str,
    *,
    wa_id: str | None,
    bsuid: str | None,
    email: str | None,
    phone: str | None,
) -> str | None:
    """Where a message on `channel` goes: the WhatsApp id, the e-mail address or the number.

    SMS goes to the candidate's phone, else to their WhatsApp number (a WhatsApp id is the
    number in international format): the usual case of a number that left WhatsApp.
    """
    if channel == "email":
        return email or None
    if channel == "sms":
        return phone or (f"+{wa_id}" if wa_id else None)
    return wa_id or bsuid or None


def unavailable(channel: str, *, address: str | None, unreachable: bool = False) -> str | None:
    """Why `channel` cannot reach the contact now, or None when it can."""
    settings = get_settings()
    if channel == "whatsapp":
        return UNREACHABLE_REASON if unreachable else None
    if channel == "email":
        if not settings.email_enabled:
            return "e-mail is not configured (set TRAZA_SMTP_HOST and TRAZA_EMAIL_FROM)"
        return None if address else "the candidate has no e-mail address"
    if channel == "sms":
        if not settings.sms_enabled:
            return "SMS is not configured (set TRAZA_SMS_URL)"
        return None if address else "the candidate has no phone number"
    return f"unknown channel '{channel}'"


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
    channel: str = "whatsapp"

    @property
    def subject(self) -> str | None:
        """The e-mail subject the message carries, if any."""
        subject = self.content.get("subject")
        return str(subject) if subject else None


@dataclass(frozen=True, slots=True)
class _Hold:
    """Why a queued message does not go out now."""

    status: str  # 'skipped' or 'failed'
    reason: str
    reroute: bool  # another channel may reach the contact: the fallback plan applies


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
    async with conversation_lock(conversation_id):
        return await _deliver(conversation_id, final_attempt=final_attempt)


async def _deliver(conversation_id: int, *, final_attempt: bool) -> int:
    sent = 0
    more = True
    while more:
        claimed, more = await _claim_next(conversation_id)
        if claimed is None:
            return sent
        if isinstance(claimed, str):
            # Skipped or resolved without sending; look at the next one (a fallback
            # has just queued one).
            more = more or claimed == "fallback"
            continue
        done = await _send_one(claimed, final_attempt=final_attempt)
        sent += done
        more = more or not done  # a failed send may have queued its fallback
    return sent


async def _claim_next(conversation_id: int) -> tuple[_Next | str | None, bool]:
    """The next message to send (or what happened to it), and whether another waits.

    The common case — queued, allowed, inside the window — costs two statements; the
    rest (a send to adopt, a skip, a template required) goes through `_claim`.
    """
    async with direct() as conn:
        rows = await repository.next_to_send(conn, conversation_id=conversation_id)
        if not rows:
            return None, False
        r = rows[0]
        to = address_of(r.channel, wa_id=r.wa_id, bsuid=r.bsuid, email=r.email, phone=r.phone)
        hold = _hold(
            channel=r.channel,
            owner=r.owner,
            actor=r.actor,
            unreachable_at=r.unreachable_at,
            opted_out_at=r.opted_out_at,
            content=r.content,
            to=to,
        )
        sendable = (
            r.status == "queued"
            and hold is None
            and not _needs_template(r.channel, r.type, r.last_inbound_at)
        )
        if sendable:
            await repository.mark_sending(conn, message_id=r.id)
            return _next(r, conversation_id, to or "", r.phone_number_id), len(rows) > 1
    async with session_scope() as session:
        return await _claim_locked(session, conversation_id), len(rows) > 1


async def _claim_locked(session: AsyncSession, conversation_id: int) -> _Next | str | None:
    rows = await repository.lock_next_to_send(session, conversation_id=conversation_id)
    if not rows:
        return None
    message, conversation, contact, inbox, candidate = rows[0]
    return await _claim(session, message, conversation, contact, inbox, candidate)


async def _claim(
    session: AsyncSession,
    message: Message,
    conversation: Conversation,
    contact: Contact,
    inbox: Inbox,
    candidate: Candidate | None,
) -> _Next | str:
    if message.status == "sending":
        # The last attempt died after calling the provider: did Meta accept it? What
        # Meta accepted was sent, whatever has changed since, so this comes first.
        adopted = await _adopt_from_status(session, message)
        if adopted:
            return "adopted"
    to = address_of(
        message.channel,
        wa_id=contact.wa_id,
        bsuid=contact.bsuid,
        email=candidate.email if candidate else None,
        phone=candidate.phone if candidate else None,
    )
    hold = _hold(
        channel=message.channel,
        owner=conversation.owner,
        actor=message.actor,
        unreachable_at=contact.unreachable_at,
        opted_out_at=contact.opted_out_at,
        content=message.content,
        to=to,
    )
    if hold is not None:
        await _finish(session, message, hold.status, reason=hold.reason)
        moved = hold.reroute and await _fall_back(session, message, reason=hold.reason)
        return "fallback" if moved else hold.status
    if _needs_template(message.channel, message.type, conversation.last_inbound_at):
        await _finish(
            session,
            message,
            "template_required",
            reason="outside the 24-hour window: free text needs an approved template",
        )
        return "template_required"
    message.status = "sending"
    message.attempts += 1
    return _next(message, conversation.id, to or "", inbox.phone_number_id)


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
        channel=message.channel or "whatsapp",
    )


def _needs_template(channel: str, kind: str, last_inbound_at: datetime | None) -> bool:
    """WhatsApp's 24-hour window: outside it, free text cannot go (e-mail and SMS have none)."""
    return channel == "whatsapp" and kind in FREE_FORM and not in_service_window(last_inbound_at)


def _skip_reason(
    owner: str,
    actor: str,
    unreachable_at: datetime | None,
    opted_out_at: datetime | None,
    content: dict[str, Any] | None,
    *,
    channel: str = "whatsapp",
) -> str | None:
    """Why a queued message must not go out now, if it must not.

    The owner and the opt-out hold on every channel; WhatsApp's unreachability only
    holds WhatsApp sends.
    """
    if owner == "human" and actor.startswith("bot:"):
        return "a human owns the conversation: the bot does not speak"
    if channel == "whatsapp" and unreachable_at is not None:
        return UNREACHABLE_REASON
    if opted_out_at is not None and (content or {}).get("proactive"):
        return "contact opted out of proactive messages"
    return None


def _hold(
    *,
    channel: str,
    owner: str,
    actor: str,
    unreachable_at: datetime | None,
    opted_out_at: datetime | None,
    content: dict[str, Any] | None,
    to: str | None,
) -> _Hold | None:
    """Whether (and why) a queued message does not go out on its channel now."""
    reason = _skip_reason(owner, actor, unreachable_at, opted_out_at, content, channel=channel)
    if reason == UNREACHABLE_REASON:
        return _Hold("skipped", reason, reroute=True)
    if reason is not None:
        return _Hold("skipped", reason, reroute=False)
    if channel != "whatsapp" and (problem := unavailable(channel, address=to)):
        # Not retried: no address or no configuration will not fix itself.
        return _Hold("failed", problem, reroute=True)
    return None


async def _fall_back(session: AsyncSession, message: Message, *, reason: str) -> str | None:
    """Queue the message again on its fallback plan's next channel; return that channel.

    The text is the one the guardrails checked when the message was written (the plan
    carries it, with the e-mail subject and reply options); nothing is written anew.
    """
    content = dict(message.content or {})
    plan = content.get("fallback")
    if not isinstance(plan, dict):
        return None
    channels: list[str] = [str(c) for c in plan.get("channels") or [] if c in FALLBACK_CHANNELS]
    channels = [c for c in channels if c != message.channel]
    if not channels:
        return None
    target, rest = channels[0], channels[1:]
    body = str(plan.get("text") or message.text or "")
    moved: dict[str, Any] = {k: content[k] for k in CARRIED if k in content}
    moved |= {"body": body, "channel": target, "fallback_of": message.id}
    if plan.get("subject"):
        moved["subject"] = str(plan["subject"])
    buttons = plan.get("buttons") if isinstance(plan.get("buttons"), list) else []
    if buttons:
        moved["buttons"] = buttons
    if rest:
        moved["fallback"] = plan | {"channels": rest}
    key = f"{message.idempotency_key or f'message:{message.id}'}:{target}"
    queued = await queue_message(
        session,
        conversation_id=message.conversation_id,
        key=key,
        actor=message.actor,
        kind="interactive" if buttons else "text",
        text_body=body,
        content=moved,
        channel=target,
    )
    if queued is not None:
        await trace.record(
            session,
            conversation_id=message.conversation_id,
            kind=kinds.MESSAGE_FALLBACK,
            actor=trace.system("sender"),
            data={
                "from": message.channel,
                "to": target,
                "reason": reason,
                "message_id": queued,
            },
            message_id=message.id,
        )
    return target


async def _adopt_from_status(session: AsyncSession, message: Message) -> bool:
    if not message.idempotency_key:
        return False
    status = await repository.status_with_callback(session, callback_data=message.idempotency_key)
    if status is None:
        return False
    message.wa_message_id = status.wa_message_id
    message.status = "accepted"
    await session.flush()
    await _apply_known_statuses(session, status.wa_message_id)
    await trace.record(
        session,
        conversation_id=message.conversation_id,
        kind=kinds.MESSAGE_SENT,
        actor=trace.system("sender"),
        data={"adopted": True, "wa_message_id": status.wa_message_id},
        message_id=message.id,
    )
    return True


async def _send_one(item: _Next, *, final_attempt: bool) -> int:
    channel = _output_channel(item)
    started = time.perf_counter()
    try:
        wamid = await _call(channel, item)
    except SendError as exc:
        await outage.persist(
            partial(_record_error, item, exc, channel.name, final_attempt=final_attempt),
            what=f"recording the failed send of message {item.message_id}",
        )
        if exc.retryable and not final_attempt:
            raise RetryLater(str(exc)) from None
        return 0
    data = {"channel": channel.name, "wa_message_id": wamid, "by": item.actor}
    if item.channel == "email":
        data["subject"] = subject_for(item.text, item.subject)
    encoded = json.dumps(data)
    ms = round((time.perf_counter() - started) * 1000, 3)
    actor = trace.system("sender")

    async def record_sent() -> Any:
        async with direct() as conn:  # one statement, one round trip
            return await repository.record_sent(
                conn,
                message_id=item.message_id,
                wamid=wamid,
                channel=channel.name,
                data=encoded,
                ms=ms,
                actor=actor,
            )

    # The provider has the message: losing this write would make a retry send it again,
    # so it is repeated (it is idempotent) until the database takes it.
    recorded = await outage.persist(record_sent, what=f"recording sent message {item.message_id}")
    if recorded is None:  # the row is gone: nothing to mark (it cannot happen under the lock)
        raise LookupError(f"message {item.message_id} vanished while it was being sent")
    early_statuses = bool(recorded[0])
    if early_statuses:
        async with session_scope() as session:
            await _apply_known_statuses(session, wamid)
    return 1


async def _call(channel: OutputChannel, item: _Next) -> str:
    if item.kind == "template" and item.channel != "whatsapp":
        # Templates are WhatsApp's; elsewhere the message's rendered text goes.
        return await channel.send_text(to=item.to, text=item.text, callback=item.key)
    if item.kind == "template":
        name = item.content.get("name")
        raw = item.content.get("params") or []
        payloads = item.content.get("button_payloads") or []
        if not name or not isinstance(raw, list | dict) or not isinstance(payloads, list):
            raise SendError(
                None,
                "invalid template: needs a name, params (a list, or a dict by name) and a "
                "list of button payloads",
                retryable=False,
            )
        params: TemplateParams = (
            {str(k): str(v) for k, v in raw.items()}
            if isinstance(raw, dict)
            else [str(p) for p in raw]
        )
        return await channel.send_template(
            to=item.to,
            name=str(name),
            language=str(item.content.get("language") or "es"),
            params=params,
            callback=item.key,
            button_payloads=[str(p) for p in payloads] or None,
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
        elif exc.code == OUTSIDE_WINDOW and item.channel == "whatsapp":
            message.status = "template_required"
            message.failed_at = datetime.now(UTC)
            data["outcome"] = "template required: outside the 24-hour window"
        else:
            message.status = "failed"
            message.failed_at = datetime.now(UTC)
        if exc.code == UNREACHABLE and item.channel == "whatsapp":
            await repository.mark_contact_unreachable(session, conversation_id=item.conversation_id)
            data["contact"] = "marked unreachable"
        await trace.record(
            session,
            conversation_id=item.conversation_id,
            kind=kinds.MESSAGE_SEND_FAILED,
            actor=trace.system("sender"),
            data=data,
            message_id=item.message_id,
        )
        if exc.code == UNREACHABLE and item.channel == "whatsapp":
            await _fall_back(session, message, reason=UNREACHABLE_REASON)
    log.warning("send failed for message %s: %s %s", item.message_id, exc.code, exc.title)


async def _finish(session: AsyncSession, message: Message, status: str, *, reason: str) -> None:
    message.status = status
    message.error_title = reason
    if status == "failed":
        message.failed_at = datetime.now(UTC)
    await trace.record(
        session,
        conversation_id=message.conversation_id,
        kind=kinds.MESSAGE_SKIPPED if status == "skipped" else kinds.MESSAGE_SEND_FAILED,
        actor=trace.system("sender"),
        data={"status": status, "reason": reason},
        message_id=message.id,
    )


async def _apply_known_statuses(session: AsyncSession, wamid: str) -> None:
    """Statuses that arrived before we learnt our message's id are applied now."""
    rows = await repository.statuses_of(session, wa_message_id=wamid)
    await apply_stored_statuses(await session.connection(), rows)
