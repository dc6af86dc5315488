"""Meta's WhatsApp Cloud API webhook payload, parsed into plain inbound records.

Every `entry[]`, `changes[]`, `messages[]` and `statuses[]` is visited; unknown fields
and unknown message types are kept as they came rather than rejected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class PayloadError(ValueError):
    """The body is JSON but not a WhatsApp webhook payload; the message says why."""


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A customer message as Meta delivered it, normalised for storage and the graph."""

    wa_message_id: str
    phone_number_id: str
    display_phone_number: str | None
    waba_id: str | None
    wa_id: str | None
    bsuid: str | None
    profile_name: str | None
    type: str
    text: str | None
    content: dict[str, Any]
    timestamp: datetime | None


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A delivery status for a message we sent."""

    wa_message_id: str
    status: str
    timestamp: datetime | None
    recipient_id: str | None
    error_code: int | None
    error_title: str | None
    callback_data: str | None


@dataclass(slots=True)
class ParsedPayload:
    """Everything one webhook POST carried."""

    messages: list[InboundMessage] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    ignored_changes: int = 0


# Types whose arrival is recorded but does not start a bot turn.
SILENT_TYPES = frozenset({"reaction", "system", "ephemeral", "request_welcome"})
MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})


def parse(payload: Any) -> ParsedPayload:
    """Parse a decoded webhook body, raising `PayloadError` if it is not Meta's shape."""
    if not isinstance(payload, dict):
        raise PayloadError("expected a JSON object")
    if payload.get("object") != "whatsapp_business_account":
        raise PayloadError("'object' must be 'whatsapp_business_account'")
    entries = payload.get("entry")
    if not isinstance(entries, list):
        raise PayloadError("'entry' must be a list")
    parsed = ParsedPayload()
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes", []), list):
            raise PayloadError("each entry must be an object with a 'changes' list")
        for change in entry.get("changes", []):
            _parse_change(change, entry.get("id"), parsed)
    return parsed


def _parse_change(change: Any, waba_id: Any, parsed: ParsedPayload) -> None:
    if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
        raise PayloadError("each change must be an object with a 'value' object")
    if change.get("field", "messages") != "messages":
        parsed.ignored_changes += 1  # template/account updates: stored raw, not processed
        return
    value = change["value"]
    metadata = value.get("metadata") or {}
    phone_number_id = metadata.get("phone_number_id")
    if not isinstance(phone_number_id, str) or not phone_number_id:
        raise PayloadError("a messages change needs value.metadata.phone_number_id")
    profiles = _profiles(value.get("contacts"))
    for raw in _list(value.get("messages"), "messages"):
        parsed.messages.append(
            _message(raw, phone_number_id, metadata, str(waba_id) if waba_id else None, profiles)
        )
    for raw in _list(value.get("statuses"), "statuses"):
        parsed.statuses.append(_status(raw))


def _list(value: Any, name: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise PayloadError(f"'{name}' must be a list of objects")
    return value


def _profiles(contacts: Any) -> dict[str, dict[str, Any]]:
    profiles: dict[str, dict[str, Any]] = {}
    for contact in _list(contacts, "contacts"):
        info = {
            "wa_id": contact.get("wa_id"),
            "bsuid": contact.get("user_id"),
            "name": (contact.get("profile") or {}).get("name"),
        }
        for key in (contact.get("wa_id"), contact.get("user_id")):
            if key:
                profiles[str(key)] = info
    return profiles


def _timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _message(
    raw: dict[str, Any],
    phone_number_id: str,
    metadata: dict[str, Any],
    waba_id: str | None,
    profiles: dict[str, dict[str, Any]],
) -> InboundMessage:
    wa_message_id = raw.get("id")
    if not isinstance(wa_message_id, str) or not wa_message_id:
        raise PayloadError("every message needs an 'id'")
    sender = raw.get("from") or raw.get("from_user_id")
    if not sender:
        raise PayloadError(f"message {wa_message_id[:40]} has no sender ('from')")
    profile = profiles.get(str(sender), {})
    wa_id = raw.get("from") or profile.get("wa_id")
    bsuid = raw.get("from_user_id") or profile.get("bsuid")
    msg_type = str(raw.get("type") or "unknown")
    text, content = _content(msg_type, raw)
    if raw.get("context"):
        content["context"] = raw["context"]
    return InboundMessage(
        wa_message_id=wa_message_id,
        phone_number_id=phone_number_id,
        display_phone_number=metadata.get("display_phone_number"),
        waba_id=waba_id,
        wa_id=str(wa_id) if wa_id else None,
        bsuid=str(bsuid) if bsuid else None,
        profile_name=profile.get("name"),
        type=msg_type,
        text=text,
        content=content,
        timestamp=_timestamp(raw.get("timestamp")),
    )


def _content(msg_type: str, raw: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The text a classifier can read, and the type's own fields as stored content."""
    body = raw.get(msg_type)
    data: dict[str, Any] = dict(body) if isinstance(body, dict) else {}
    if msg_type == "text":
        return _str(data.get("body")), data
    if msg_type == "interactive":
        kind = data.get("type")
        reply = data.get(kind) if isinstance(kind, str) else None
        if isinstance(reply, dict):
            data["reply_id"] = reply.get("id")
            return _str(reply.get("title") or reply.get("body")), data
        return None, data
    if msg_type == "button":  # quick-reply button on a template
        return _str(data.get("text") or data.get("payload")), data
    if msg_type in MEDIA_TYPES:
        return _str(data.get("caption")), data
    if msg_type == "location":
        return _str(data.get("name") or data.get("address")), data
    if msg_type == "contacts":
        return None, {"contacts": raw.get("contacts", [])}
    if msg_type == "reaction":
        return _str(data.get("emoji")), data
    if msg_type == "order":
        return _str(data.get("text")), data
    if msg_type == "system":
        return _str(data.get("body")), data
    # "unsupported" and types Meta adds later: keep what came, including errors.
    if raw.get("errors"):
        data["errors"] = raw["errors"]
    return None, data


def _str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _status(raw: dict[str, Any]) -> StatusUpdate:
    wa_message_id, status = raw.get("id"), raw.get("status")
    if not isinstance(wa_message_id, str) or not isinstance(status, str):
        raise PayloadError("every status needs an 'id' and a 'status'")
    errors = raw.get("errors") or []
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    code = first.get("code")
    return StatusUpdate(
        wa_message_id=wa_message_id,
        status=status,
        timestamp=_timestamp(raw.get("timestamp")),
        recipient_id=raw.get("recipient_id"),
        error_code=int(code) if isinstance(code, int | str) and str(code).isdigit() else None,
        error_title=first.get("title") or first.get("message"),
        callback_data=raw.get("biz_opaque_callback_data"),
    )
