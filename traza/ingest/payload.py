"""Meta's WhatsApp Cloud API webhook payload, parsed into plain inbound records.

Every `entry[]`, `changes[]`, `messages[]` and `statuses[]` is visited; unknown fields
and unknown message types are kept as they came rather than rejected.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class MalformedBody(ValueError):
    """The body is not strict JSON of a sensible depth; the message says why."""


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


# Meta's payloads nest about eight levels deep; far deeper is not a webhook.
MAX_DEPTH = 64
# Longest identifiers the database holds (see the `contacts`, `inboxes`, `messages`
# and `message_statuses` columns); Meta's own are far shorter.
MAX_WAMID = 256
MAX_PHONE_NUMBER_ID = 64
MAX_DISPLAY_PHONE_NUMBER = 32
MAX_WABA_ID = 64
MAX_WA_ID = 32
MAX_BSUID = 128
MAX_TYPE = 32
MAX_RECIPIENT = 64
MAX_CALLBACK = 512
MAX_PROFILE_NAME = 200
_INT32 = 2**31 - 1

# Types whose arrival is recorded but does not start a bot turn.
SILENT_TYPES = frozenset({"reaction", "system", "ephemeral", "request_welcome"})
MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})


def decode(body: bytes) -> Any:
    """Decode a webhook body as strict JSON, raising `MalformedBody` if it is not.

    NaN, Infinity and numbers no float holds are refused, as is nesting deeper than
    `MAX_DEPTH`. U+0000, which PostgreSQL text and jsonb cannot hold, becomes U+FFFD
    (the raw body is stored byte for byte elsewhere).
    """
    try:
        value = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise MalformedBody(f"nested deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError:
        raise MalformedBody("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise MalformedBody(f"{exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except ValueError as exc:  # integers too long to convert, NaN/Infinity, 1e999
        raise MalformedBody(str(exc)) from None
    if _deeper_than(value, MAX_DEPTH):
        raise MalformedBody(f"nested deeper than {MAX_DEPTH} levels")
    if b"\\u0000" in body:
        value = _without_nul(value)
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number out of range: {text[:40]}")
    return number


def _deeper_than(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if not isinstance(item, list):
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in item)
    return False


def _without_nul(value: Any) -> Any:
    """`value` with U+0000 replaced in every string and key (depth is already bounded)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    return value


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
        waba_id = _identifier(entry.get("id"), "entry.id", MAX_WABA_ID)
        for change in entry.get("changes", []):
            _parse_change(change, waba_id, parsed)
    return parsed


def _parse_change(change: Any, waba_id: str | None, parsed: ParsedPayload) -> None:
    if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
        raise PayloadError("each change must be an object with a 'value' object")
    if change.get("field", "messages") != "messages":
        parsed.ignored_changes += 1  # template/account updates: stored raw, not processed
        return
    value = change["value"]
    metadata = value.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise PayloadError("value.metadata must be an object")
    phone_number_id = metadata.get("phone_number_id")
    if not isinstance(phone_number_id, str) or not phone_number_id:
        raise PayloadError("a messages change needs value.metadata.phone_number_id")
    _identifier(phone_number_id, "value.metadata.phone_number_id", MAX_PHONE_NUMBER_ID)
    display = _identifier(
        metadata.get("display_phone_number"),
        "value.metadata.display_phone_number",
        MAX_DISPLAY_PHONE_NUMBER,
    )
    profiles = _profiles(value.get("contacts"))
    for raw in _list(value.get("messages"), "messages"):
        parsed.messages.append(_message(raw, phone_number_id, display, waba_id, profiles))
    for raw in _list(value.get("statuses"), "statuses"):
        parsed.statuses.append(_status(raw))


def _list(value: Any, name: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise PayloadError(f"'{name}' must be a list of objects")
    return value


def _identifier(value: Any, what: str, limit: int) -> str | None:
    """An id as text; None when absent; `PayloadError` when it cannot be one."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PayloadError(f"{what} must be a string")
    text = str(value)
    if len(text) > limit:
        raise PayloadError(f"{what} is longer than {limit} characters")
    return text


def _profiles(contacts: Any) -> dict[str, dict[str, Any]]:
    profiles: dict[str, dict[str, Any]] = {}
    for contact in _list(contacts, "contacts"):
        profile = contact.get("profile")
        name = _str(profile.get("name")) if isinstance(profile, dict) else None
        info = {
            "wa_id": _identifier(contact.get("wa_id"), "contacts[].wa_id", MAX_WA_ID),
            "bsuid": _identifier(contact.get("user_id"), "contacts[].user_id", MAX_BSUID),
            "name": name[:MAX_PROFILE_NAME] if name else None,
        }
        for key in (info["wa_id"], info["bsuid"]):
            if key:
                profiles[key] = info
    return profiles


def _timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _message(
    raw: dict[str, Any],
    phone_number_id: str,
    display_phone_number: str | None,
    waba_id: str | None,
    profiles: dict[str, dict[str, Any]],
) -> InboundMessage:
    wa_message_id = raw.get("id")
    if not isinstance(wa_message_id, str) or not wa_message_id:
        raise PayloadError("every message needs an 'id'")
    _identifier(wa_message_id, "messages[].id", MAX_WAMID)
    from_wa_id = _identifier(raw.get("from"), "messages[].from", MAX_WA_ID)
    from_bsuid = _identifier(raw.get("from_user_id"), "messages[].from_user_id", MAX_BSUID)
    sender = from_wa_id or from_bsuid
    if not sender:
        raise PayloadError(f"message {wa_message_id[:40]} has no sender ('from')")
    profile = profiles.get(sender, {})
    wa_id = from_wa_id or profile.get("wa_id")
    bsuid = from_bsuid or profile.get("bsuid")
    msg_type = _identifier(raw.get("type"), "messages[].type", MAX_TYPE) or "unknown"
    text, content = _content(msg_type, raw)
    if raw.get("context"):
        content["context"] = raw["context"]
    return InboundMessage(
        wa_message_id=wa_message_id,
        phone_number_id=phone_number_id,
        display_phone_number=display_phone_number,
        waba_id=waba_id,
        wa_id=wa_id,
        bsuid=bsuid,
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
    _identifier(wa_message_id, "statuses[].id", MAX_WAMID)
    _identifier(status, "statuses[].status", MAX_TYPE)
    errors = raw.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else errors
    if not isinstance(first, dict):
        first = {}
    return StatusUpdate(
        wa_message_id=wa_message_id,
        status=status,
        timestamp=_timestamp(raw.get("timestamp")),
        recipient_id=_identifier(raw.get("recipient_id"), "statuses[].recipient_id", MAX_RECIPIENT),
        error_code=_error_code(first.get("code")),
        error_title=_str(first.get("title") or first.get("message")),
        callback_data=_identifier(
            raw.get("biz_opaque_callback_data"), "statuses[].biz_opaque_callback_data", MAX_CALLBACK
        ),
    )


def _error_code(code: Any) -> int | None:
    """Meta's numeric error code, if it is one a database integer holds."""
    if isinstance(code, bool) or not isinstance(code, int | str) or not str(code).isdigit():
        return None
    value = int(code)
    return value if value <= _INT32 else None
